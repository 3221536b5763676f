"""Snapshotters: the directory trees containers run on (overlay, native)."""

from containerd_py.snapshots.mount import Mount
from containerd_py.snapshots.snapshotter import Info, Kind, Snapshotter, Usage

__all__ = ["Info", "Kind", "Mount", "Snapshotter", "Usage"]
