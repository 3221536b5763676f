"""The WWW-Authenticate parser, on the headers registries really send and on odd ones."""

from __future__ import annotations

import pytest

from containerd_py.remotes.challenge import Challenge, parse, parse_all


def test_docker_hub_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert parse(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull",
            },
        )
    ]


def test_distribution_basic_challenge() -> None:
    [c] = parse('Basic realm="basic-realm"')
    assert c.scheme == "basic"
    assert c.realm == "basic-realm"


def test_insufficient_scope_with_error_and_spaces_around_separators() -> None:
    header = (
        'Bearer realm = "http://127.0.0.1:9/token" , service="svc", '
        'scope="repository:a/b:pull,push", error="insufficient_scope"'
    )
    [c] = parse(header)
    assert c.params == {
        "realm": "http://127.0.0.1:9/token",
        "service": "svc",
        "scope": "repository:a/b:pull,push",
        "error": "insufficient_scope",
    }


def test_several_challenges_in_one_header() -> None:
    cs = parse('Basic realm="x", Bearer realm="y",service="z"')
    assert [(c.scheme, dict(c.params)) for c in cs] == [
        ("basic", {"realm": "x"}),
        ("bearer", {"realm": "y", "service": "z"}),
    ]


def test_several_headers() -> None:
    cs = parse_all(['Basic realm="a"', 'Bearer realm="b"'])
    assert [c.scheme for c in cs] == ["basic", "bearer"]


def test_scheme_and_names_are_case_insensitive_values_are_not() -> None:
    [c] = parse('BEARER Realm="HTTPS://X/Token",SERVICE=Reg')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "HTTPS://X/Token", "service": "Reg"}


def test_quoted_escapes_and_commas_inside_quotes() -> None:
    [c] = parse(r'Bearer realm="a \"quoted\" realm, with comma",scope="x:y:pull,push"')
    assert c.realm == 'a "quoted" realm, with comma'
    assert c.params["scope"] == "x:y:pull,push"


def test_unquoted_token_values() -> None:
    [c] = parse("Bearer realm=https://x/token,service=reg")
    # "/" is not a token character: the value stops there, as RFC 7235 says.
    assert c.params["realm"] == "https"
    [c] = parse("Basic realm=simple")
    assert c.realm == "simple"


def test_token68_and_bare_scheme() -> None:
    [c] = parse("Negotiate YIIBhg+/==")
    assert c.scheme == "negotiate"
    assert c.token68 == "YIIBhg+/=="
    assert parse("Basic") == [Challenge("basic", {})]


@pytest.mark.parametrize("header", ["", "   ", ",,", '"quoted first"', "="])
def test_nothing_usable(header: str) -> None:
    assert parse(header) == []


def test_unterminated_quote_keeps_what_came_before() -> None:
    cs = parse('Basic realm="ok", Bearer realm="never closed')
    assert cs[0] == Challenge("basic", {"realm": "ok"})
    assert cs[1].scheme == "bearer"
    assert "realm" not in cs[1].params
