"""Pushing an image from the content store to a registry repository.

What goes, in which order (a registry refuses a manifest whose blobs it lacks, and an index
whose manifests it lacks):

1. configs and layers, concurrently: each one the repository has already (HEAD) is
   skipped; one that another repository of the same registry has, as the blob's
   `distribution.source` label says, is mounted across (one POST, no bytes); the rest
   are uploaded, in one request or in chunks;
2. the manifests, by digest;
3. the index, if the image is one; last of all, the root under the reference's tag.

An index is pushed whole, or not at all: with a platform chosen, only that platform's
manifest is pushed, and the tag names it. An index whose other platforms were never
pulled cannot be pushed whole: the error says so and nothing is sent.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from containerd_py import errdefs
from containerd_py.content.store import ContentStore
from containerd_py.distribution import sources
from containerd_py.distribution.fetch import DEFAULT_CONCURRENCY
from containerd_py.distribution.progress import BlobStatus, Progress
from containerd_py.distribution.remote import RemoteRepository
from containerd_py.distribution.workers import Workers, check_cancel
from containerd_py.images import mediatypes as mt
from containerd_py.images.manifest import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    parse_index,
    parse_manifest,
    select_platform,
)
from containerd_py.images.platforms import Platform
from containerd_py.images.store import open_blob, read_blob

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PushOptions:
    platform: Platform | None = None  # None: the whole image
    chunk_size: int = 0  # 0: each blob in one request
    concurrency: int = DEFAULT_CONCURRENCY


@dataclass(frozen=True, slots=True)
class Plan:
    """What a push sends: `documents` children first, the root last."""

    root: Descriptor
    blobs: tuple[Descriptor, ...]
    documents: tuple[tuple[Descriptor, bytes], ...]


class Pusher:
    def __init__(self, content: ContentStore) -> None:
        self.content = content

    def plan(self, target: Descriptor, platform: Platform | None) -> Plan:
        """The blobs and documents of an image; FailedPrecondition when the store lacks
        some of them."""
        if platform is not None and mt.is_index(target.media_type):
            target = self._select(target, platform)
        blobs: dict[str, Descriptor] = {}
        documents: list[tuple[Descriptor, bytes]] = []

        def visit(desc: Descriptor, parent: str) -> None:
            data = self._read(desc, parent)
            if mt.is_index(desc.media_type):
                for child in parse_index(data, desc.media_type).manifests:
                    if mt.is_index(child.media_type) or mt.is_manifest(child.media_type):
                        visit(child, desc.digest)
            elif mt.is_manifest(desc.media_type):
                manifest = parse_manifest(data, desc.media_type)
                for blob in (manifest.config, *manifest.layers):
                    if not self.content.exists(blob.digest):
                        raise errdefs.FailedPrecondition(
                            f"cannot push: blob {blob.digest} of manifest {desc.digest} is not"
                            " in the content store"
                        )
                    blobs.setdefault(blob.digest, blob)
            else:
                raise errdefs.InvalidArgument(
                    f"cannot push {desc.digest}: {desc.media_type} is not a manifest or index"
                )
            documents.append((desc, data))

        visit(target, "")
        return Plan(target, tuple(blobs.values()), tuple(documents))

    def push(
        self,
        plan: Plan,
        reference: str,
        repo: RemoteRepository,
        options: PushOptions,
        progress: Progress,
        cancel: threading.Event,
    ) -> Descriptor:
        """Send `plan` to `repo`; the root goes under `reference` (a tag or its digest)."""
        if reference.startswith("sha256:") and reference != plan.root.digest:
            raise errdefs.InvalidArgument(
                f"cannot push {plan.root.digest} as {reference}: the digests differ"
            )
        for desc, _ in plan.documents:
            progress.add(desc)
        for blob in plan.blobs:
            progress.add(blob)
        progress.set_status(f"pushing to {repo.host}/{repo.name}")
        self._push_blobs(plan.blobs, repo, options, progress, cancel)
        for desc, data in plan.documents:
            check_cancel(cancel)
            is_root = desc.digest == plan.root.digest
            progress.update(desc.digest, BlobStatus.TRANSFERRING)
            try:
                digest = repo.put_manifest(
                    reference if is_root else desc.digest, data, desc.media_type
                )
            except BaseException:
                progress.update(desc.digest, BlobStatus.FAILED)
                raise
            if digest and digest != desc.digest:
                raise errdefs.Internal(
                    f"{repo.host}/{repo.name} stored manifest {desc.digest} as {digest}"
                )
            self._label(desc, repo)
            progress.finish(desc.digest, BlobStatus.DONE)
        progress.set_status(f"pushed {plan.root.digest}")
        return plan.root

    # -- blobs ----------------------------------------------------------------------

    def _push_blobs(
        self,
        blobs: Sequence[Descriptor],
        repo: RemoteRepository,
        options: PushOptions,
        progress: Progress,
        cancel: threading.Event,
    ) -> None:
        with Workers(options.concurrency, cancel, "push") as workers:
            for blob in blobs:
                workers.submit(self._push_blob, blob, repo, options, progress, cancel)
            workers.join()

    def _push_blob(
        self,
        desc: Descriptor,
        repo: RemoteRepository,
        options: PushOptions,
        progress: Progress,
        cancel: threading.Event,
    ) -> None:
        check_cancel(cancel)
        try:
            if repo.blob_exists(desc):
                self._label(desc, repo)
                progress.finish(desc.digest, BlobStatus.EXISTS)
                return
            labels = self.content.info(desc.digest).labels
            for source in sources.repositories(labels, repo.host):
                if source != repo.name and repo.mount_blob(desc, source):
                    self._label(desc, repo)
                    progress.finish(desc.digest, BlobStatus.MOUNTED)
                    return
            progress.update(desc.digest, BlobStatus.TRANSFERRING, 0)

            def sent(n: int) -> None:
                check_cancel(cancel)
                progress.update(desc.digest, offset=n)

            # Verified on the way out: a blob corrupted on disk fails here, not at the
            # registry's digest check after the whole upload.
            with contextlib.closing(open_blob(self.content, desc)) as stream:
                repo.upload_blob(desc, stream, chunk_size=options.chunk_size, progress=sent)
        except BaseException:
            progress.update(desc.digest, BlobStatus.FAILED)
            raise
        self._label(desc, repo)
        progress.finish(desc.digest, BlobStatus.DONE)

    # -- helpers --------------------------------------------------------------------

    def _select(self, index: Descriptor, platform: Platform) -> Descriptor:
        data = self._read(index, "")
        return select_platform(parse_index(data, index.media_type).manifests, platform)

    def _read(self, desc: Descriptor, parent: str) -> bytes:
        if not self.content.exists(desc.digest):
            if parent:
                where = f" ({desc.platform})" if desc.platform is not None else ""
                raise errdefs.FailedPrecondition(
                    f"cannot push the whole index {parent}: manifest {desc.digest}{where} is not"
                    " in the content store (push one platform with --platform, or pull with"
                    " --all-platforms first)"
                )
            raise errdefs.FailedPrecondition(
                f"cannot push: {desc.digest} is not in the content store"
            )
        return read_blob(self.content, desc, MAX_MANIFEST_SIZE)

    def _label(self, desc: Descriptor, repo: RemoteRepository) -> None:
        """Record that the repository now has the blob: a later push to another repository
        of that registry mounts it from there."""
        sources.record(self.content, desc.digest, repo.host, repo.name)
