"""The small shared core: data access, checkpoint I/O, training helpers, UI helpers."""
