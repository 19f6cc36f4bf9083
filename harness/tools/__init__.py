"""Tools beside the tables: the op benchmark and the device self-check."""
