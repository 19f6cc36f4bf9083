"""The runs folder: records, leases, quarantine and per-image evaluation caches."""
