"""Credentials from a docker config.json, matched the way the docker CLI writes keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from containerd_py.errdefs import InvalidArgument
from containerd_py.remotes.credentials import (
    Credentials,
    CredentialStore,
    DockerConfig,
    default_config_path,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def config(auths: dict[str, object]) -> DockerConfig:
    return DockerConfig.parse(json.dumps({"auths": auths}))


def test_auth_field_is_base64_user_colon_password() -> None:
    c = config({"reg.example:5000": {"auth": b64("alice:pa:ss")}})
    assert c.lookup("reg.example:5000") == Credentials("alice", "pa:ss")


def test_username_password_fields_and_identity_token() -> None:
    c = config({"r.example": {"username": "u", "password": "p", "identitytoken": "tok"}})
    assert c.lookup("r.example") == Credentials("u", "p", "tok")


@pytest.mark.parametrize(
    "key",
    [
        "127.0.0.1:5000",
        "https://127.0.0.1:5000",
        "http://127.0.0.1:5000",
        "https://127.0.0.1:5000/v2/",
    ],
)
def test_host_port_key_forms(key: str) -> None:
    c = config({key: {"auth": b64("a:b")}})
    assert c.lookup("127.0.0.1:5000") == Credentials("a", "b")


def test_port_matters() -> None:
    c = config({"127.0.0.1:5000": {"auth": b64("a:b")}})
    assert c.lookup("127.0.0.1:5001") is None
    assert c.lookup("127.0.0.1") is None


@pytest.mark.parametrize(
    "key", ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
)
def test_docker_hub_keys(key: str) -> None:
    c = config({key: {"auth": b64("hub:pw")}})
    assert c.lookup("docker.io") == Credentials("hub", "pw")


def test_exact_key_preferred_over_a_url_of_the_same_host() -> None:
    c = config(
        {"https://reg.example/v1/": {"auth": b64("old:1")}, "reg.example": {"auth": b64("new:2")}}
    )
    assert c.lookup("reg.example") == Credentials("new", "2")


def test_caller_credentials_win_over_the_file() -> None:
    store = CredentialStore(
        config({"r.example": {"auth": b64("file:1")}}), {"r.example": Credentials("caller", "2")}
    )
    assert store.for_registry("r.example") == Credentials("caller", "2")
    assert CredentialStore(config({"r.example": {"auth": b64("file:1")}})).for_registry(
        "r.example"
    ) == Credentials("file", "1")
    assert store.for_registry("other.example") is None


def test_missing_file_is_empty_and_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    assert DockerConfig.load(tmp_path / "absent.json").lookup("x.example") is None
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgument, match=r"config.json: not JSON"):
        DockerConfig.load(bad)
    for doc, match in [
        ({"auths": []}, "auths must be an object"),
        ({"auths": {"h": {"auth": "!!!"}}}, "not base64"),
        ({"auths": {"h": {"auth": b64("nocolon")}}}, "not base64 of user:password"),
        ({"auths": {"h": {"username": 1}}}, "are strings"),
    ]:
        bad.write_text(json.dumps(doc))
        with pytest.raises(InvalidArgument, match=match) as err:
            DockerConfig.load(bad)
        assert "\n" not in str(err.value)


def test_basic_header() -> None:
    assert Credentials("a", "b").basic() == "Basic " + b64("a:b")
    assert Credentials("a", "").basic() is None
    assert Credentials(identity_token="t").basic() is None
    assert "pw" not in repr(Credentials("a", "pw"))


def test_default_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert default_config_path() == tmp_path / "config.json"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_config_path() == tmp_path / ".docker" / "config.json"
