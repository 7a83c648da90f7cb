"""Mass actions: a bulk job expands into per-lead commands with stable ids, sent in waves and tracked to one report."""
