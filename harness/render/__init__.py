"""Reports and figures, read from records; nothing here trains."""
