"""containerd's filter syntax, as List and Walk calls take it."""

from __future__ import annotations

import pytest

from containerd_py.errdefs import InvalidArgument
from containerd_py.filters import adapt, parse

OBJ = adapt(
    {"name": "docker.io/library/busybox:latest", "target": {"digest": "sha256:ab", "size": 3}},
    {"foo": "bar", "io.containerd.x": "y z", "empty": ""},
)


@pytest.mark.parametrize(
    ("flt", "want"),
    [
        ("", True),
        ("name==docker.io/library/busybox:latest", True),
        ("name!=docker.io/library/busybox:latest", False),
        ("name~=busybox", True),
        ("name~=^busybox", False),
        ("name~=/busy(box|cat)/", True),
        ("target.digest==sha256:ab", True),
        ("target.size==3", True),
        ("target", False),  # a nested object is not a value
        ("labels.foo", True),
        ("labels.nope", False),
        ("labels.nope!=x", True),
        ("labels.foo==bar", True),
        ('labels."io.containerd.x"=="y z"', True),
        ("labels.io.containerd.x==y", False),
        ("labels.empty", True),
        ("labels.foo==bar,name~=busy", True),
        ("labels.foo==bar,name~=nginx", False),
        ("labels.foo==bar , labels.foo!=baz", True),
    ],
)
def test_selectors(flt: str, want: bool) -> None:
    assert parse(flt).match(OBJ) is want


def test_several_filters_match_when_any_does() -> None:
    assert parse("name==x", "labels.foo==bar").match(OBJ)
    assert not parse("name==x", "labels.foo==baz").match(OBJ)
    assert parse().match(OBJ)


@pytest.mark.parametrize("bad", ["==x", "name==", "name=x", 'labels."unterminated', "a~=("])
def test_bad_filters_are_invalid_argument(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse(bad)
