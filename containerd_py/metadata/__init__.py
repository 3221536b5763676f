"""The metadata database and its per-object stores, all partitioned by namespace."""
