"""Garbage collection over hand-made images: what is reachable stays, the rest goes."""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from containerd_py.content import descriptor as mt
from containerd_py.content.descriptor import Descriptor
from containerd_py.content.digests import from_bytes
from containerd_py.content.store import ContentStore
from containerd_py.metadata.containers import Container, ContainerStore, RuntimeInfo
from containerd_py.metadata.db import MetadataDB
from containerd_py.metadata.gc import collect
from containerd_py.metadata.images import Image, ImageStore
from containerd_py.metadata.leases import LeaseStore, Resource
from containerd_py.metadata.snapshots import NamespacedSnapshotter
from containerd_py.snapshots.native import NativeSnapshotter


@dataclass
class Env:
    db: MetadataDB
    cs: ContentStore
    images: ImageStore
    containers: ContainerStore
    leases: LeaseStore
    backend: NativeSnapshotter
    sn: NamespacedSnapshotter

    def put(
        self, data: bytes | dict, media_type: str = "", ns: str = "default", **labels
    ) -> Descriptor:
        raw = json.dumps(data).encode() if isinstance(data, dict) else data
        d = from_bytes(raw)
        self.cs.with_namespace(ns).ingest(io.BytesIO(raw), d, len(raw), labels=labels or None)
        return Descriptor(media_type, d, len(raw))

    def gc(self, **kw):
        return collect(self.db, self.cs.blobs, {"native": self.backend}, **kw)

    def has(self, d: Descriptor | str, ns: str = "default") -> bool:
        digest = d if isinstance(d, str) else d.digest
        # exists() answers NotFound as False and raises on anything else (a bad digest).
        return self.cs.with_namespace(ns).exists(digest)

    def on_disk(self, d: Descriptor) -> bool:
        return self.cs.blobs.exists(d.digest)


@pytest.fixture
def env(tmp_path: Path):
    db = MetadataDB(tmp_path / "meta.db")
    cs = ContentStore(tmp_path, db)
    backend = NativeSnapshotter(tmp_path / "native")
    try:
        yield Env(
            db,
            cs,
            ImageStore(db),
            ContainerStore(db),
            LeaseStore(db),
            backend,
            NamespacedSnapshotter(db, "native", backend),
        )
    finally:
        backend.close()
        db.close()


def desc_json(d: Descriptor) -> dict:
    return {"mediaType": d.media_type, "digest": d.digest, "size": d.size}


def make_image(env: Env, ns: str = "default") -> dict[str, Descriptor]:
    """An OCI index with an OCI manifest and a Docker manifest sharing a layer."""
    shared = env.put(b"shared layer bytes", mt.OCI_LAYER_GZIP, ns)
    l_amd = env.put(b"amd64 layer", mt.OCI_LAYER_GZIP, ns)
    l_arm = env.put(b"arm64 layer", mt.DOCKER_LAYER_GZIP, ns)
    c_amd = env.put({"architecture": "amd64", "rootfs": {}}, mt.OCI_CONFIG, ns)
    c_arm = env.put({"architecture": "arm64"}, mt.DOCKER_CONFIG, ns)
    m_amd = env.put(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": desc_json(c_amd),
            "layers": [desc_json(shared), desc_json(l_amd)],
        },
        mt.OCI_MANIFEST,
        ns,
    )
    m_arm = env.put(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": desc_json(c_arm),
            "layers": [desc_json(shared), desc_json(l_arm)],
        },
        mt.DOCKER_MANIFEST,
        ns,
    )
    index = env.put(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [desc_json(m_amd), desc_json(m_arm)],
        },
        mt.OCI_INDEX,
        ns,
    )
    return {
        "index": index,
        "m_amd": m_amd,
        "m_arm": m_arm,
        "c_amd": c_amd,
        "c_arm": c_arm,
        "shared": shared,
        "l_amd": l_amd,
        "l_arm": l_arm,
    }


def test_an_image_keeps_everything_under_it(env: Env) -> None:
    blobs = make_image(env)
    env.images.create("default", Image("busybox:latest", blobs["index"]))
    stray = env.put(b"nobody wants me")
    report = env.gc()
    assert all(env.has(d) and env.on_disk(d) for d in blobs.values())
    assert not env.has(stray) and not env.on_disk(stray)
    assert (report.content_deleted, report.content_records_removed) == (1, 1)
    assert report.bytes_freed == stray.size and report.errors == []

    env.images.delete("default", "busybox:latest")
    report = env.gc()
    assert not any(env.on_disk(d) for d in blobs.values())
    assert report.content_deleted == len(blobs)
    assert report.bytes_freed == sum(d.size for d in blobs.values())


def test_an_image_pointing_at_a_manifest_and_a_docker_manifest_list(env: Env) -> None:
    blobs = make_image(env)
    lst = env.put(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST_LIST,
            "manifests": [desc_json(blobs["m_arm"])],
        },
        mt.DOCKER_MANIFEST_LIST,
    )
    env.images.create("default", Image("arm", lst))
    env.images.create("default", Image("amd", blobs["m_amd"]))
    env.gc()
    assert not env.has(blobs["index"])
    for k in ("m_amd", "m_arm", "c_amd", "c_arm", "shared", "l_amd", "l_arm"):
        assert env.has(blobs[k]), k


def test_a_partial_pull_does_not_stop_the_collector(env: Env) -> None:
    missing = Descriptor(mt.OCI_LAYER_GZIP, from_bytes(b"never fetched"), 13)
    cfg = env.put({"a": 1}, mt.OCI_CONFIG)
    m = env.put(
        {"config": desc_json(cfg), "layers": [desc_json(missing), {"digest": "sha256:bad"}]},
        mt.OCI_MANIFEST,
    )
    broken = env.put(b"{not json", mt.OCI_MANIFEST)
    env.images.create("default", Image("partial", m))
    env.images.create("default", Image("broken", broken))
    env.images.create("default", Image("absent", Descriptor(mt.OCI_INDEX, from_bytes(b"?"), 1)))
    report = env.gc()
    assert env.has(m) and env.has(cfg) and env.has(broken) and report.errors == []


def test_gc_ref_labels_reference_children(env: Env) -> None:
    a = env.put(b"child a")
    b = env.put(b"child b")
    c = env.put(b"child c")
    parent = env.put(
        b"opaque parent",
        **{
            "containerd.io/gc.ref.content.m.0": a.digest,
            "containerd.io/gc.ref.content/b": b.digest,
            "containerd.io/gc.ref.contentious": c.digest,  # not a ref label
            "containerd.io/gc.ref.content.bad": "sha256:not-a-digest",
        },
    )
    env.images.create(
        "default", Image("labels", Descriptor("application/x-custom", parent.digest, parent.size))
    )
    env.gc()
    assert env.has(parent) and env.has(a) and env.has(b) and not env.has(c)


def test_leases_hold_content_until_they_expire(env: Env) -> None:
    blobs = make_image(env)
    env.leases.create("default", "pull", expire_at=datetime.now(UTC) + timedelta(hours=1))
    env.leases.add_resource("default", "pull", Resource(blobs["index"].digest, "content"))
    env.gc()
    assert all(env.has(d) for d in blobs.values())  # a lease holds the tree, not just the root

    env.leases.create("default", "old", expire_at=datetime.now(UTC) - timedelta(seconds=1))
    stale = env.put(b"held by an expired lease")
    env.leases.add_resource("default", "old", Resource(stale.digest, "content"))
    env.leases.delete("default", "pull")
    report = env.gc()
    assert report.leases_expired == 1 and [x.id for x in env.leases.list("default")] == []
    assert not env.has(stale) and not any(env.has(d) for d in blobs.values())


def test_a_flat_lease_holds_only_what_it_lists(env: Env) -> None:
    blobs = make_image(env)
    env.leases.create("default", "flat", {"containerd.io/gc.flat": "true"})
    env.leases.add_resource("default", "flat", Resource(blobs["index"].digest, "content"))
    env.gc()
    assert env.has(blobs["index"]) and not env.has(blobs["m_amd"])


def test_root_and_expire_labels(env: Env) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    root = env.put(b"root", **{"containerd.io/gc.root": "2024-01-01T00:00:00Z"})
    fresh = env.put(b"fresh", **{"containerd.io/gc.expire": future})
    old = env.put(b"old", **{"containerd.io/gc.expire": past})
    env.gc()
    assert env.has(root) and env.has(fresh) and not env.has(old)


def test_a_lease_on_a_manifest_without_media_type_is_sniffed(env: Env) -> None:
    cfg = env.put({"c": 1})
    layer = env.put(b"layer")
    manifest = env.put({"schemaVersion": 2, "config": desc_json(cfg), "layers": [desc_json(layer)]})
    env.leases.create("default", "l")
    env.leases.add_resource("default", "l", Resource(manifest.digest, "content"))
    env.gc()
    assert env.has(cfg) and env.has(layer)


def test_namespaces_are_collected_separately_but_share_bytes(env: Env) -> None:
    blobs = make_image(env, "a")
    make_image(env, "b")  # same bytes, adopted by b, referenced by nothing there
    env.images.create("a", Image("img", blobs["index"]))
    report = env.gc()
    assert all(env.has(d, "a") and env.on_disk(d) for d in blobs.values())
    assert not any(env.has(d, "b") for d in blobs.values())
    assert report.content_records_removed == len(blobs) and report.content_deleted == 0


def test_expired_images_go_unless_a_container_uses_them(env: Env) -> None:
    blobs = make_image(env)
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    env.images.create("default", Image("gone", blobs["index"], {"containerd.io/gc.expire": past}))
    env.images.create("default", Image("used", blobs["m_amd"], {"containerd.io/gc.expire": past}))
    env.containers.create("default", Container("c", RuntimeInfo("rt"), spec=b"{}", image="used"))
    report = env.gc()
    assert report.images_expired == 1
    assert [i.name for i in env.images.list("default")] == ["used"]
    assert env.has(blobs["m_amd"]) and env.has(blobs["l_amd"]) and not env.has(blobs["index"])


def test_snapshots_reachable_from_containers_labels_and_leases(env: Env) -> None:
    sn, backend = env.sn, env.backend
    sn.prepare("x1")
    sn.commit("layer1", "x1")
    sn.prepare("x2", "layer1")
    sn.commit("layer2", "x2")
    sn.prepare("ctr-rootfs", "layer2")
    env.containers.create(
        "default",
        Container(
            "c", RuntimeInfo("rt"), spec=b"{}", snapshotter="native", snapshot_key="ctr-rootfs"
        ),
    )
    # A chain nothing references, three deep: must go children first.
    sn.prepare("j1")
    sn.commit("junk1", "j1")
    sn.prepare("j2", "junk1")
    sn.commit("junk2", "j2")
    sn.view("junk-view", "junk2")
    # Kept by a content label (as unpacked layers are) and by a lease.
    sn.prepare("u")
    sn.commit("unpacked", "u")
    env.put(
        b"layer blob",
        **{"containerd.io/gc.ref.snapshot.native": "unpacked", "containerd.io/gc.root": "x"},
    )
    env.leases.create("default", "work")
    sn.with_namespace("default", lease="work").prepare("leased")
    # A snapshot labelled with a content ref keeps that blob.
    cfg = env.put(b"referenced from a snapshot")
    sn.prepare(
        "refs",
        labels={"containerd.io/gc.ref.content.config": cfg.digest, "containerd.io/gc.root": ""},
    )
    # A backend snapshot no namespace owns: what a crash between backend and DB leaves.
    backend.prepare("default/999/orphan")
    report = env.gc()
    names = sorted(i.name for i in sn.walk())
    assert names == ["ctr-rootfs", "layer1", "layer2", "leased", "refs", "unpacked"]
    assert report.snapshots_removed == 3 and report.orphan_snapshots_removed == 1
    assert report.errors == []
    assert env.has(cfg)
    assert sorted(i.name.split("/")[-1] for i in backend.walk()) == names

    env.containers.delete("default", "c")
    env.gc()
    assert "layer1" not in [i.name for i in sn.walk()]


def test_stale_ingests_go_only_when_unleased_and_idle(env: Env) -> None:
    cs = env.cs
    old = cs.writer("old")
    old.write(b"abandoned")
    old.close()
    env.leases.create("default", "pull")
    kept = cs.with_namespace("default", lease="pull").writer("leased")
    kept.write(b"in use")
    kept.close()
    busy = cs.writer("busy")
    busy.write(b"writing right now")
    time.sleep(0.01)
    assert env.gc().ingests_removed == 0  # no max age: ingests are left alone
    report = env.gc(ingest_max_age=timedelta(0))
    assert report.ingests_removed == 1
    assert sorted(s.ref for s in cs.statuses()) == ["busy", "leased"]
    busy.close()


def test_corrupt_rows_do_not_stop_the_collector(env: Env) -> None:
    blobs = make_image(env)
    env.images.create("default", Image("ok", blobs["index"]))
    with env.db.transaction() as c:
        c.execute("UPDATE content SET labels='garbage' WHERE digest=?", (blobs["l_arm"].digest,))
        c.execute(
            "INSERT INTO images VALUES"
            " ('default', 'bad', 'not json', 'x', '../../x', 1, '{}', 1, 1)"
        )
        c.execute("INSERT INTO leases VALUES ('default', 'bad', '[]', 1, NULL)")
    report = env.gc()
    # The row with corrupt labels is still reachable from the image, so it stays.
    assert env.on_disk(blobs["l_arm"]) and report.errors == []
    assert all(env.has(d) for k, d in blobs.items() if k != "l_arm")


def test_gc_waits_for_a_transaction_in_progress(env: Env) -> None:
    import threading

    order = []
    inside = threading.Event()

    def mutate() -> None:
        with env.db.transaction():
            inside.set()
            time.sleep(0.1)
            order.append("mutation")

    t = threading.Thread(target=mutate)
    t.start()
    inside.wait()
    env.gc()
    order.append("gc")
    t.join()
    assert order == ["mutation", "gc"]
    assert os.path.exists(env.db.path)
