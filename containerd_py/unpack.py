"""Unpacking an image: its layers, from the content store into a chain of snapshots.

Snapshots are named by chain id (OCI image-spec, "Layer ChainID"):

    chainID(L0) = diffID(L0)
    chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln))

so a committed snapshot stands for a whole stack of layers, and two images that start with
the same layers share those snapshots: a layer already committed under its chain id is
reused, not extracted again.

Each missing layer goes: prepare an active snapshot `extract-<random>-<chainid>` on the
previous chain id → apply the layer tar into it → commit it as the chain id. How the tar
reaches the snapshot depends on its mounts:

| mounts                        | applied into                  | whiteouts (archive.apply_layer) |
|-------------------------------|-------------------------------|---------------------------------|
| one bind (native, overlay     | the bind's source directory   | "delete" (the directory already |
| base layer)                   |                               | holds the parent's files, or    |
|                               |                               | nothing)                        |
| one overlay with upperdir     | the upperdir, lowerdirs as    | "overlay": 0/0 devices and      |
|                               | `parents`, no mount at all    | opaque xattrs, as overlay would |
|                               |                               | write them itself               |
| anything else                 | the mounts, mounted on a      | "delete" (the filesystem makes  |
|                               | temporary directory           | its own whiteouts)              |

The first two need neither root nor a mount, which keeps the daemon from stacking mounts
it would have to clean up after a crash. A layer that fails (corrupt blob, diff id that
does not match the config, hostile tar) removes its active snapshot: nothing half-made
stays behind. Two unpacks of the same layer racing each other are fine: the loser's commit
finds the chain id taken, drops its own snapshot and goes on with the winner's.

When the last layer is committed, the image config blob gets the label
`containerd.io/gc.ref.snapshot.<snapshotter>=<chain id>`: that is both how "is this image
unpacked?" is answered and what keeps the snapshots from the garbage collector while the
image exists (the collector follows the label from the config, which the image reaches).
Until then the snapshots are only safe under a lease: callers run an unpack inside one
(the snapshotter view's `lease`), and layers reused rather than made are added to it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from containerd_py.archive import apply_layer
from containerd_py.archive.apply import WhiteoutMode
from containerd_py.errdefs import AlreadyExists, InvalidArgument, NotFound
from containerd_py.images.errors import BlobNotFoundError, InvalidManifestError
from containerd_py.images.manifest import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Descriptor,
    parse_config,
    resolve_manifest,
)
from containerd_py.images.platforms import Platform
from containerd_py.images.store import ContentStore, read_blob
from containerd_py.snapshots.mount import Mount, MountSyscalls, mount_all, unmount_all
from containerd_py.snapshots.snapshotter import Kind

if TYPE_CHECKING:
    from containerd_py.content.store import ContentStore as DiskContentStore
    from containerd_py.metadata.leases import LeaseStore
    from containerd_py.metadata.snapshots import NamespacedSnapshotter

log = logging.getLogger(__name__)

GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
# Set on the active snapshot of an extraction: which committed snapshot it is meant to
# become (containerd's unpacker sets the same label).
LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain id of every prefix of the layer list, bottom first."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            h = hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
            out.append(f"sha256:{h}")
    return out


def chain_id(diff_ids: Sequence[str]) -> str:
    """The chain id of the whole stack ("" for an image without layers)."""
    ids = chain_ids(diff_ids)
    return ids[-1] if ids else ""


def gc_label(snapshotter: str) -> str:
    """The config label that records an image unpacked into `snapshotter`."""
    return GC_REF_SNAPSHOT + snapshotter


@dataclass(frozen=True, slots=True)
class RootFS:
    """What unpacking needs from an image, resolved for one platform."""

    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    image_config: dict  # the whole config document (its "config" holds Cmd, Env...)

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def chain_id(self) -> str:
        return chain_id(self.diff_ids)


def resolve_rootfs(
    fetch: Callable[[Descriptor], bytes],
    target: Descriptor,
    platform: Platform | str | None = None,
) -> RootFS:
    """The manifest, config and layers of an image for `platform` (the host's when None).

    `fetch` returns a blob's verified bytes: from the content store in the daemon, over
    Content.Read in a client.
    """
    mdesc, manifest = resolve_manifest(fetch, target, platform)
    config = parse_config(fetch(manifest.config))
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidManifestError(
            f"{mdesc.digest}: {len(manifest.layers)} layers but {len(config.diff_ids)}"
            " diff_ids in its config"
        )
    return RootFS(mdesc, manifest.config, manifest.layers, config.diff_ids, dict(config.raw))


def store_fetcher(store: ContentStore) -> Callable[[Descriptor], bytes]:
    def fetch(desc: Descriptor) -> bytes:
        limit = MAX_CONFIG_SIZE if desc.size > MAX_MANIFEST_SIZE else MAX_MANIFEST_SIZE
        return read_blob(store, desc, limit)

    return fetch


@dataclass(frozen=True, slots=True)
class UnpackResult:
    chain_id: str
    config: str  # the config digest, which carries the gc label
    layers: int  # how many layers the image has
    extracted: int  # how many were applied now (the others were already there)


class Unpacker:
    """Unpacks images of one namespace into one snapshotter (both views carry the same
    namespace, and the same lease when the caller holds one)."""

    def __init__(
        self,
        content: DiskContentStore,
        snapshotter: NamespacedSnapshotter,
        *,
        leases: LeaseStore | None = None,
        work_dir: str | None = None,
        syscalls: MountSyscalls | None = None,
    ) -> None:
        self.content = content
        self.snapshotter = snapshotter
        self.leases = leases
        self.work_dir = work_dir
        self.syscalls = syscalls

    @property
    def name(self) -> str:
        return self.snapshotter.name

    def rootfs(self, target: Descriptor, platform: Platform | str | None = None) -> RootFS:
        return resolve_rootfs(store_fetcher(self.content), target, platform)

    def unpack(self, target: Descriptor, platform: Platform | str | None = None) -> UnpackResult:
        rootfs = self.rootfs(target, platform)
        if not rootfs.layers:
            raise InvalidArgument(f"image {target.digest} has no layers to unpack")
        chains = rootfs.chain_ids
        extracted = 0
        parent = ""
        for layer, diff_id, chain in zip(rootfs.layers, rootfs.diff_ids, chains, strict=True):
            # Held before it is looked at: a collection between the two cannot take it.
            self._hold(chain)
            if not self._committed(chain):
                self._extract(layer, diff_id, chain, parent)
                extracted += 1
            parent = chain
        label = gc_label(self.name)
        self.content.update_labels(rootfs.config.digest, {label: chains[-1]}, [f"labels.{label}"])
        log.info(
            "unpacked %s into %s as %s (%d of %d layers extracted)",
            target.digest,
            self.name,
            chains[-1],
            extracted,
            len(chains),
        )
        return UnpackResult(chains[-1], rootfs.config.digest, len(chains), extracted)

    # -- internals ------------------------------------------------------------------

    def _committed(self, key: str) -> bool:
        try:
            return self.snapshotter.stat(key).kind is Kind.COMMITTED
        except NotFound:
            return False

    def _hold(self, key: str) -> None:
        """Put a reused snapshot under the caller's lease, so that a collection before the
        config label is written cannot take it."""
        lease = self.snapshotter.lease
        if lease and self.leases is not None:
            from containerd_py.metadata.leases import SNAPSHOTS_PREFIX, Resource

            self.leases.add_resource(
                self.snapshotter.namespace, lease, Resource(key, SNAPSHOTS_PREFIX + self.name)
            )

    def _extract(self, layer: Descriptor, diff_id: str, chain: str, parent: str) -> None:
        key = f"extract-{secrets.token_hex(6)}-{chain}"
        mounts = self.snapshotter.prepare(key, parent, {LABEL_SNAPSHOT_REF: chain})
        try:
            # Not re-hashed here: the store checked the digest when the blob was committed,
            # and what is applied is checked against the layer's diff id as it unpacks.
            try:
                blob = self.content.open(layer.digest)
            except NotFound:
                raise BlobNotFoundError(
                    f"content {layer.digest} ({layer.media_type}) not found"
                ) from None
            with blob:
                self._apply(mounts, blob, layer, diff_id)
            try:
                self.snapshotter.commit(chain, key)
            except AlreadyExists:
                # Another unpack of the same layer won the race: use its snapshot.
                log.info("snapshot %s was committed meanwhile; dropping %s", chain, key)
                self.snapshotter.remove(key)
                self._hold(chain)
        except BaseException:
            with contextlib.suppress(NotFound):
                self.snapshotter.remove(key)
            raise

    def _apply(
        self, mounts: Sequence[Mount], blob: object, layer: Descriptor, diff_id: str
    ) -> None:
        same_owner = os.geteuid() == 0

        def apply(dest: str, mode: WhiteoutMode, parents: Sequence[str] = ()) -> None:
            apply_layer(
                blob,  # type: ignore[arg-type]
                dest,
                media_type=layer.media_type,
                same_owner=same_owner,
                whiteout_mode=mode,
                parents=parents,
                expected_diff_id=diff_id,
            )

        direct = direct_target(mounts)
        if direct is not None:
            dest, mode, parents = direct
            apply(dest, mode, parents)
            return
        # Generic case: let the kernel assemble the snapshot and write through it.
        target = tempfile.mkdtemp(prefix="unpack-", dir=self.work_dir)
        try:
            mount_all(mounts, target, self.syscalls)
            try:
                apply(target, "delete")
            finally:
                unmount_all(target, syscalls=self.syscalls)
        finally:
            os.rmdir(target)


def direct_target(mounts: Sequence[Mount]) -> tuple[str, WhiteoutMode, tuple[str, ...]] | None:
    """(directory, whiteout mode, lower directories) when a layer can be applied without
    mounting anything; None when the mounts must be mounted."""
    if len(mounts) != 1 or mounts[0].target not in ("", "/"):
        return None
    m = mounts[0]
    if m.type == "bind" and "ro" not in m.options:
        return m.source, "delete", ()
    if m.type == "overlay":
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        upper, lowers = opts.get("upperdir"), opts.get("lowerdir", "")
        if upper and all(os.path.isabs(p) for p in lowers.split(":") if p):
            return upper, "overlay", tuple(p for p in lowers.split(":") if p)
    return None
