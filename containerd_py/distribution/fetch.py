"""Fetching an image's content from a registry into the content store.

From the root descriptor down: an index is read and the manifests for the wanted platforms
chosen (every one with all_platforms), each manifest is read, and its config and layers
go to a pool of threads. Manifests and indexes are small and fetched in the walking
thread; the blobs of the first manifest are already downloading while the next is read.

Every blob is written through a content-store writer named `fetch-<digest>`:

- a blob the store already has is not fetched (the writer says AlreadyExists, after
  putting it under the caller's lease, so a collection cannot take it meanwhile);
- an ingest left by an interrupted fetch is resumed: the registry is asked for the rest
  with a Range request, and the writer's hash goes on from the bytes on disk;
- the writer checks size and digest at commit: a blob that does not match is dropped,
  never committed; one that ends early is kept for the next attempt to resume.

Each stored blob is labelled with the repository it came from (`sources`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from containerd_py import errdefs
from containerd_py.content import digests
from containerd_py.content.store import ContentStore, Writer
from containerd_py.distribution import sources
from containerd_py.distribution.progress import BlobStatus, Progress
from containerd_py.distribution.remote import RemoteRepository
from containerd_py.distribution.workers import DigestMismatch, Workers, check_cancel
from containerd_py.images import mediatypes as mt
from containerd_py.images.errors import InvalidManifestError, UnsupportedMediaTypeError
from containerd_py.images.manifest import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    parse_index,
    parse_manifest,
    select_platform,
)
from containerd_py.images.platforms import PlatformMatcher
from containerd_py.images.store import read_blob
from containerd_py.remotes.errors import BodyCutShort

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_CONCURRENCY = 3
# How often a fetch waiting for another writer of the same blob looks again.
LOCK_RETRY = 0.1


class Fetcher:
    """Fetches one image from one repository into one (namespaced, leased) store view."""

    def __init__(
        self,
        content: ContentStore,
        repo: RemoteRepository,
        progress: Progress,
        cancel: threading.Event,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        on_stored: Callable[[str], None] | None = None,
    ) -> None:
        self.content = content
        self.repo = repo
        self.progress = progress
        self.cancel = cancel
        self.concurrency = max(1, concurrency)
        # Told each digest once it is in the store (fetched or found): an unpack running
        # beside the fetch waits on it.
        self.on_stored = on_stored

    def fetch(
        self, root: Descriptor, platforms: Sequence[PlatformMatcher] | None
    ) -> list[Descriptor]:
        """Fetch everything under `root` for `platforms` (None: all of them); returns the
        manifests fetched. Raises the first error after stopping the other workers."""
        manifests: list[Descriptor] = []
        scheduled: set[str] = set()
        with Workers(self.concurrency, self.cancel, "fetch") as workers:
            stack = [root]
            while stack:
                check_cancel(self.cancel)
                desc = stack.pop(0)
                data = self._fetch_document(desc)
                if mt.is_index(desc.media_type):
                    index = parse_index(data, desc.media_type)
                    stack.extend(self._choose(index.manifests, platforms))
                    continue
                manifest = parse_manifest(data, desc.media_type)
                manifests.append(desc)
                for blob in (manifest.config, *manifest.layers):
                    if blob.digest not in scheduled:
                        scheduled.add(blob.digest)
                        self.progress.add(blob)
                        workers.submit(self._fetch_blob, blob)
            workers.join()
        return manifests

    # -- documents ------------------------------------------------------------------

    def _choose(
        self, entries: Sequence[Descriptor], platforms: Sequence[PlatformMatcher] | None
    ) -> list[Descriptor]:
        usable = [d for d in entries if mt.is_manifest(d.media_type) or mt.is_index(d.media_type)]
        if platforms is None:
            return usable
        chosen: dict[str, Descriptor] = {}
        for matcher in platforms:
            d = select_platform(entries, matcher)
            chosen.setdefault(d.digest, d)
        return list(chosen.values())

    def _fetch_document(self, desc: Descriptor) -> bytes:
        """An index or manifest: from the store when there, else from the registry,
        verified and stored."""
        if mt.base(desc.media_type) in mt.SCHEMA1:
            raise UnsupportedMediaTypeError(
                f"{self.repo.host}/{self.repo.name}: Docker schema 1 manifests are not supported"
            )
        if desc.size > MAX_MANIFEST_SIZE:
            raise InvalidManifestError(
                f"manifest {desc.digest} is {desc.size} bytes, over the {MAX_MANIFEST_SIZE} limit"
            )
        self.progress.add(desc)
        writer = self._writer(desc)
        if writer is None:
            self._label(desc)
            self._stored(desc, BlobStatus.EXISTS)
            return read_blob(self.content, desc, MAX_MANIFEST_SIZE)
        with writer:
            self.progress.update(desc.digest, BlobStatus.TRANSFERRING)
            try:
                data = self.repo.fetch_manifest(desc)
            except errdefs.Unavailable:
                self.progress.update(desc.digest, BlobStatus.FAILED)
                raise
            actual = digests.from_bytes(data)
            if actual != desc.digest or len(data) != desc.size:
                writer.abort()
                raise DigestMismatch(
                    f"{self._where(desc)}: the registry sent {len(data)} bytes with digest"
                    f" {actual}, expected {desc.size} bytes with digest {desc.digest}"
                )
            if writer.offset:
                writer.truncate(0)
            writer.write(data)
            self._commit(writer, desc)
        return data

    # -- blobs ----------------------------------------------------------------------

    def _fetch_blob(self, desc: Descriptor) -> None:
        check_cancel(self.cancel)
        writer = self._writer(desc)
        if writer is None:
            self._label(desc)
            self._stored(desc, BlobStatus.EXISTS)
            return
        with writer:
            offset = writer.offset
            if offset > desc.size:
                writer.truncate(0)
                offset = 0
            self.progress.update(desc.digest, BlobStatus.TRANSFERRING, offset)
            if offset < desc.size:
                if offset:
                    log.info("fetch: resuming %s at %d of %d bytes", desc.digest, offset, desc.size)
                self._copy(desc, writer, offset)
            self._commit(writer, desc)

    def _copy(self, desc: Descriptor, writer: Writer, offset: int) -> None:
        try:
            stream = self.repo.open_blob(desc, offset)
            buf = memoryview(bytearray(CHUNK))  # one buffer for the whole blob
            with contextlib.closing(stream):
                while True:
                    check_cancel(self.cancel)
                    n = stream.readinto(buf)
                    if not n:
                        break
                    writer.write(buf[:n])
                    self.progress.update(desc.digest, offset=writer.offset)
                    if writer.offset > desc.size:
                        break  # the commit says what is wrong
        except BodyCutShort:
            # What came is kept for the retry to resume from.
            self.progress.update(desc.digest, BlobStatus.FAILED)
            raise errdefs.Unavailable(
                f"{self._where(desc)}: connection to the registry lost at {writer.offset}"
                f" of {desc.size} bytes (a retry resumes from there)"
            ) from None
        except errdefs.FailedPrecondition:
            # The bytes are wrong (digest or size over): never to be resumed from.
            self.progress.update(desc.digest, BlobStatus.FAILED)
            writer.abort()
            raise
        except errdefs.Unavailable:
            self.progress.update(desc.digest, BlobStatus.FAILED)
            raise

    # -- helpers --------------------------------------------------------------------

    def _writer(self, desc: Descriptor) -> Writer | None:
        """The writer for a blob, or None when the store has it (now under our lease).
        Waits while another transfer writes the same blob."""
        ref = f"fetch-{desc.digest}"
        while True:
            try:
                return self.content.writer(ref, desc.digest, desc.size)
            except errdefs.AlreadyExists:
                return None
            except errdefs.Unavailable:
                # Another pull holds this ingest: it either commits (we then find the blob)
                # or gives up (we then take over its bytes).
                check_cancel(self.cancel)
                time.sleep(LOCK_RETRY)

    def _commit(self, writer: Writer, desc: Descriptor) -> None:
        labels = {sources.label_key(self.repo.host): self.repo.name}
        try:
            writer.commit(desc.digest, desc.size, labels)
        except errdefs.AlreadyExists:
            self._label(desc)
            self._stored(desc, BlobStatus.EXISTS)
            return
        except errdefs.FailedPrecondition:
            # Fewer bytes than the descriptor says: the registry ended the body early. The
            # ingest stays, for the next attempt to resume.
            raise errdefs.Unavailable(
                f"{self._where(desc)}: the registry ended the blob at {writer.offset} of"
                f" {desc.size} bytes (a retry resumes from there)"
            ) from None
        except errdefs.InvalidArgument as e:
            self.progress.update(desc.digest, BlobStatus.FAILED)
            raise DigestMismatch(
                f"{self._where(desc)}: digest mismatch: {_after_colon(str(e))}"
            ) from None
        self._stored(desc, BlobStatus.DONE)

    def _stored(self, desc: Descriptor, status: BlobStatus) -> None:
        self.progress.finish(desc.digest, status)
        if self.on_stored is not None:
            self.on_stored(desc.digest)

    def _label(self, desc: Descriptor) -> None:
        sources.record(self.content, desc.digest, self.repo.host, self.repo.name)

    def _where(self, desc: Descriptor) -> str:
        return f"{self.repo.host}/{self.repo.name}: blob {desc.digest}"


def _after_colon(message: str) -> str:
    """The content store's "ingest 'ref': <what>" without the ref (ours is internal)."""
    head, sep, tail = message.partition("': ")
    return tail if sep and head.startswith("ingest '") else message
