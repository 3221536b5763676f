"""containerd's filter language, for List/Walk calls.

    selectors := selector ("," selector)*        all must match
    selector  := fieldpath [operator value]       no operator: the field must be present
    fieldpath := field ("." field)*
    field     := quoted | [A-Za-z_][A-Za-z0-9_]*
    operator  := "==" | "!=" | "~="              "~=" is a regular expression search
    value     := quoted | [^\\s,]+
    quoted    := "..." (with backslash escapes) | /.../ (regex, "/" escaped as "\\/")

Several filter strings match when any one matches, as `filters.ParseAll` does. Objects are
seen through an adaptor: a function from a field path to `(value, present)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from containerd_py.errdefs import InvalidArgument

Adaptor = Callable[[Sequence[str]], tuple[str, bool]]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE = re.compile(r"[^\s,]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "/": "/"}


@dataclass(frozen=True, slots=True)
class _Selector:
    fieldpath: tuple[str, ...]
    op: str  # "" (present), "==", "!=", "~="
    value: str
    regex: re.Pattern[str] | None

    def match(self, adaptor: Adaptor) -> bool:
        value, present = adaptor(self.fieldpath)
        if self.op == "":
            return present
        if self.op == "!=":
            return not present or value != self.value
        if not present:
            return False
        if self.op == "==":
            return value == self.value
        assert self.regex is not None
        return self.regex.search(value) is not None


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def fail(self, what: str) -> InvalidArgument:
        return InvalidArgument(f"filter {self.s!r}: {what} at position {self.i}")

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def quoted(self) -> str:
        quote = self.s[self.i]
        self.i += 1
        out = []
        while self.i < len(self.s):
            ch = self.s[self.i]
            self.i += 1
            if ch == quote:
                return "".join(out)
            if ch == "\\" and self.i < len(self.s):
                nxt = self.s[self.i]
                self.i += 1
                if quote == "/" and nxt != "/":
                    out.append("\\" + nxt)  # regex escapes pass through untouched
                else:
                    out.append(_ESCAPES.get(nxt, "\\" + nxt))
                continue
            out.append(ch)
        raise self.fail("unterminated quoted string")

    def field(self) -> str:
        self.skip_ws()
        if self.i < len(self.s) and self.s[self.i] == '"':
            return self.quoted()
        m = _FIELD.match(self.s, self.i)
        if not m:
            raise self.fail("expected a field name")
        self.i = m.end()
        return m.group()

    def selector(self) -> _Selector:
        path = [self.field()]
        while self.i < len(self.s) and self.s[self.i] == ".":
            self.i += 1
            path.append(self.field())
        self.skip_ws()
        op = self.s[self.i : self.i + 2]
        if op not in ("==", "!=", "~="):
            return _Selector(tuple(path), "", "", None)
        self.i += 2
        self.skip_ws()
        if self.i < len(self.s) and self.s[self.i] in '"/':
            value = self.quoted()
        else:
            m = _BARE.match(self.s, self.i)
            if not m:
                raise self.fail("expected a value")
            self.i = m.end()
            value = m.group()
        regex = None
        if op == "~=":
            try:
                regex = re.compile(value)
            except re.error as e:
                raise self.fail(f"bad regular expression {value!r}: {e}") from e
        return _Selector(tuple(path), op, value, regex)

    def parse(self) -> list[_Selector]:
        out = [self.selector()]
        self.skip_ws()
        while self.i < len(self.s):
            if self.s[self.i] != ",":
                raise self.fail("expected ','")
            self.i += 1
            out.append(self.selector())
            self.skip_ws()
        return out


@dataclass(frozen=True, slots=True)
class Filter:
    """Matches when any of its alternatives has all its selectors matching."""

    alternatives: tuple[tuple[_Selector, ...], ...]

    def match(self, adaptor: Adaptor) -> bool:
        if not self.alternatives:
            return True
        return any(all(s.match(adaptor) for s in alt) for alt in self.alternatives)


def parse(*filters: str) -> Filter:
    """Parse filter strings (any may match); none, or only empty ones, match everything."""
    alts = []
    for f in filters:
        if not f or not f.strip():
            return Filter(())
        alts.append(tuple(_Parser(f).parse()))
    return Filter(tuple(alts))


def adapt(fields: Mapping[str, object], labels: Mapping[str, str] | None = None) -> Adaptor:
    """An adaptor over plain fields plus `labels.<key>`; nested fields as dicts.

    A field whose value is None or "" counts as absent, as containerd's adaptors do.
    """

    def get(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "labels" and labels is not None:
            if len(path) < 2:
                return "", False
            key = ".".join(path[1:])
            return (labels[key], True) if key in labels else ("", False)
        value: object = fields
        for part in path:
            if not isinstance(value, Mapping) or part not in value:
                return "", False
            value = value[part]
        if value is None or value == "" or isinstance(value, Mapping):
            return "", False
        return str(value), True

    return get
