"""Tasks: bundles on disk, the shims that run them, and the daemon's view of them."""
