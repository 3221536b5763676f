"""Docker reference parsing and normalization, as `docker pull` and containerd's CRI see
names."""

from __future__ import annotations

import pytest

from containerd_py.images.errors import InvalidReferenceError
from containerd_py.images.reference import normalize, parse_docker_ref, parse_normalized

HEX = "a" * 64

NORMALIZED = [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
    ("user/app", "docker.io/user/app:latest"),
    ("user/sub/app:tag", "docker.io/user/sub/app:tag"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app:dev", "localhost:5000/app:dev"),
    ("host:5000/a/b:tag", "host:5000/a/b:tag"),
    ("registry.example.com/team/app", "registry.example.com/team/app:latest"),
    ("[::1]:5000/app:x", "[::1]:5000/app:x"),
    ("Host.Example/app", "Host.Example/app:latest"),
    ("a/b__c---d.e_f", "docker.io/a/b__c---d.e_f:latest"),
    ("app_x.y-z", "docker.io/library/app_x.y-z:latest"),
    (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}"),
    (f"busybox:1@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}"),
    (f"host:5000/a@sha256:{HEX}", f"host:5000/a@sha256:{HEX}"),
    ("busybox:Tag_With.Upper-1", "docker.io/library/busybox:Tag_With.Upper-1"),
]


@pytest.mark.parametrize(("written", "normalized"), NORMALIZED)
def test_normalization(written: str, normalized: str) -> None:
    assert normalize(written) == normalized
    # Normalizing is idempotent: a stored name parses back to itself.
    assert normalize(normalized) == normalized


INVALID = [
    "",
    "Busybox",  # uppercase repository
    "busybox:",  # empty tag
    "busybox:-tag",  # a tag cannot start with '-'
    "busybox:" + "t" * 129,
    "bad//path",
    "-busybox",
    "busybox-",
    "a..b/c",
    "host:port/app",  # port must be digits
    "busybox@sha256:abc",  # too short
    f"busybox@sha256:{'A' * 64}",  # sha256 must be lowercase
    f"busybox@md5:{HEX}:x",
    HEX,  # a bare image ID is not a name
    "docker.io/" + "a" * 250,
    "busybox@",
    "app name",
    "a_b.example/f",  # a dot makes it a registry, and registries have no '_'
]


@pytest.mark.parametrize("written", INVALID)
def test_invalid_references(written: str) -> None:
    with pytest.raises(InvalidReferenceError):
        normalize(written)


def test_parts_and_familiar_forms() -> None:
    ref = parse_docker_ref("busybox")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (
        "docker.io",
        "library/busybox",
        "latest",
        None,
    )
    assert ref.name == "docker.io/library/busybox"
    assert ref.familiar == "busybox:latest"
    assert parse_docker_ref("user/app:1").familiar == "user/app:1"
    assert parse_docker_ref("docker.io/library/a/b").familiar == "library/a/b:latest"
    assert parse_docker_ref("host:5000/a:b").familiar == "host:5000/a:b"
    # parse_normalized keeps "no tag" distinct from ":latest"
    assert parse_normalized("busybox").tag is None
    assert parse_normalized("busybox").with_tag("1").familiar == "busybox:1"
