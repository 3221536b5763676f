"""Where blobs came from: containerd's `containerd.io/distribution.source.<host>` labels.

A pull labels every blob it stores (or finds stored) with the repositories it was fetched
from, one label per registry host, repositories comma-separated:

    containerd.io/distribution.source.127.0.0.1:5000 = library/busybox,team/app

A push to that host reads the label back: a blob the target repository lacks but another
repository of the same registry has is mounted across (one POST) rather than uploaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from containerd_py import errdefs

if TYPE_CHECKING:
    from containerd_py.content.store import ContentStore

PREFIX = "containerd.io/distribution.source."


def label_key(host: str) -> str:
    return PREFIX + host


def repositories(labels: Mapping[str, str], host: str) -> list[str]:
    """The repositories of `host` a blob is known to be in."""
    value = labels.get(label_key(host), "")
    return [r for r in value.split(",") if r]


def with_repository(labels: Mapping[str, str], host: str, repository: str) -> dict[str, str]:
    """The label (key and value) that adds `repository` to what `labels` record; empty
    when it is already there."""
    known = repositories(labels, host)
    if repository in known:
        return {}
    return {label_key(host): ",".join([*known, repository])}


def record(content: ContentStore, digest: str, host: str, repository: str) -> None:
    """Add `repository` to the stored blob's label for `host`."""
    try:
        extra = with_repository(content.info(digest).labels, host, repository)
        if extra:
            content.update_labels(digest, extra, [f"labels.{k}" for k in extra])
    except errdefs.NotFound:
        pass  # collected meanwhile (not under a lease): there is nothing left to label
