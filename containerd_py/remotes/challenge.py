"""`WWW-Authenticate` challenges (RFC 7235), as registries send them.

    Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"
    Basic realm="Registry Realm"
    Basic realm="x", Bearer realm="y",service="z"     (several challenges in one header)

Scheme names are case-insensitive and returned lower-case, as are parameter names; values
may be tokens or quoted strings with backslash escapes. A header that cannot be parsed
yields the challenges read before the fault: a registry's odd header must not hide a usable
challenge in front of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SPACE = re.compile(r"[ \t]*")


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic", "bearer", ...
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str = ""

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def space(self) -> None:
        self.pos = _SPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def token(self) -> str | None:
        m = _TOKEN.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return m.group()

    def quoted(self) -> str | None:
        if self.peek() != '"':
            return None
        out = []
        i = self.pos + 1
        while i < len(self.text):
            c = self.text[i]
            if c == "\\" and i + 1 < len(self.text):
                out.append(self.text[i + 1])
                i += 2
            elif c == '"':
                self.pos = i + 1
                return "".join(out)
            else:
                out.append(c)
                i += 1
        return None  # unterminated

    def param_ahead(self) -> bool:
        """Whether a `name =` comes next (else a new challenge does, or the end)."""
        m = _TOKEN.match(self.text, self.pos)
        if not m:
            return False
        rest = _SPACE.match(self.text, m.end()).end()  # type: ignore[union-attr]
        return self.text[rest : rest + 1] == "=" and self.text[rest : rest + 2] != "=="


def parse(header: str) -> list[Challenge]:
    """Every challenge in one header value."""
    s = _Scanner(header)
    out: list[Challenge] = []
    while True:
        s.space()
        while s.peek() == ",":
            s.pos += 1
            s.space()
        if not s.peek():
            return out
        scheme = s.token()
        if scheme is None:
            return out
        params: dict[str, str] = {}
        token68 = ""
        s.space()
        if s.peek() and not s.param_ahead():
            m = _TOKEN68.match(s.text, s.pos)
            if m and s.peek() != ",":
                token68 = m.group()
                s.pos = m.end()
        while s.param_ahead():
            name = s.token()
            assert name is not None
            s.space()
            s.pos += 1  # "="
            s.space()
            value = s.quoted() if s.peek() == '"' else s.token()
            if value is None:
                out.append(Challenge(scheme.lower(), params, token68))
                return out
            params[name.lower()] = value
            s.space()
            if s.peek() != ",":
                break
            s.pos += 1
            s.space()
        out.append(Challenge(scheme.lower(), params, token68))


def parse_all(headers: Iterable[str]) -> list[Challenge]:
    """The challenges of every WWW-Authenticate header of a response."""
    return [c for h in headers for c in parse(h)]
