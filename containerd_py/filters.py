"""containerd's filter language: one parser for List/Walk calls and event subscriptions.

    filter    := selector ("," selector)*        every selector must match (AND)
    selector  := fieldpath [operator value]      no operator: the field must be present
    fieldpath := field ("." field)*
    field     := [A-Za-z_][A-Za-z0-9_]* | quoted
    operator  := "==" | "!=" | "~="              "~=" is an unanchored regular expression
    value     := quoted | [^\\s,]+
    quoted    := "..." with backslash escapes; after "~=" also /.../ or |...|

Several filters match when any one of them does (OR), as containerd's `filters.ParseAll`;
no filters match everything. Examples:

    topic=="/tasks/exit"
    topic~="^/tasks/",namespace==pydocker
    event.container_id==web1

Unlike containerd, a bare value may start with "/" after "==" (`topic==/tasks/exit`): the
quotes are easy to lose in a shell, and nothing else could be meant.

Objects are matched through an *adaptor*: a function from a field path to
`(value, present)`, so this module knows nothing about envelopes or protobuf.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from containerd_py.errdefs import InvalidArgument

Adaptor = Callable[[Sequence[str]], tuple[str, bool]]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE = re.compile(r"[^\s,]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}
_OPERATORS = ("==", "!=", "~=")


@dataclass(frozen=True, slots=True)
class Selector:
    fieldpath: tuple[str, ...]
    operator: str  # "" (present), "==", "!=", "~="
    value: str = ""
    regex: re.Pattern[str] | None = None

    def match(self, adaptor: Adaptor) -> bool:
        # containerd's semantics: an absent field reads as "", so `!=` matches it and
        # `~=` is tried against "".
        value, present = adaptor(self.fieldpath)
        if self.operator == "":
            return present
        if self.operator == "==":
            return present and value == self.value
        if self.operator == "!=":
            return value != self.value
        assert self.regex is not None
        return self.regex.search(value) is not None


@dataclass(frozen=True, slots=True)
class Filter:
    """Matches when any alternative has all its selectors matching; empty matches all."""

    alternatives: tuple[tuple[Selector, ...], ...] = ()

    def match(self, adaptor: Adaptor) -> bool:
        if not self.alternatives:
            return True
        return any(all(s.match(adaptor) for s in alt) for alt in self.alternatives)


MATCH_ALL = Filter()


def parse(*filters: str) -> Filter:
    """Parse filter strings (OR); raises InvalidArgument with the position of the error."""
    alternatives = []
    for text in filters:
        if not text.strip():
            # containerd: an empty filter matches everything, so the OR of it does too.
            return MATCH_ALL
        alternatives.append(_Parser(text).filter())
    return Filter(tuple(alternatives))


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def error(self, what: str) -> InvalidArgument:
        return InvalidArgument(f"invalid filter {self.s!r}: {what} at position {self.i}")

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def skip_space(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def filter(self) -> tuple[Selector, ...]:
        selectors = [self.selector()]
        self.skip_space()
        while self.i < len(self.s):
            if self.peek() != ",":
                raise self.error("expected ','")
            self.i += 1
            selectors.append(self.selector())
            self.skip_space()
        return tuple(selectors)

    def selector(self) -> Selector:
        path = [self.field()]
        while self.peek() == ".":
            self.i += 1
            path.append(self.field())
        self.skip_space()
        op = self.peek(2)
        if op not in _OPERATORS:
            if self.i < len(self.s) and self.peek() != ",":
                raise self.error("expected an operator (==, != or ~=)")
            return Selector(tuple(path), "")
        self.i += 2
        self.skip_space()
        value = self.value(regex=op == "~=")
        regex = None
        if op == "~=":
            try:
                regex = re.compile(value)
            except re.error as e:
                raise self.error(f"bad regular expression {value!r} ({e})") from None
        return Selector(tuple(path), op, value, regex)

    def field(self) -> str:
        self.skip_space()
        if self.peek() == '"':
            return self.quoted('"')
        m = _FIELD.match(self.s, self.i)
        if not m:
            raise self.error("expected a field name")
        self.i = m.end()
        return m.group()

    def value(self, *, regex: bool) -> str:
        ch = self.peek()
        if ch == '"':
            return self.quoted('"')
        if regex and ch in "/|":
            # /re/ and |re| delimit a regex only when the closing delimiter ends the value;
            # otherwise (`topic~=/tasks/.*`) the whole word is the regex.
            end = self.closing(ch)
            if end != -1 and (end + 1 == len(self.s) or self.s[end + 1] in ", \t"):
                return self.quoted(ch)
        m = _BARE.match(self.s, self.i)
        if not m:
            raise self.error("expected a value")
        self.i = m.end()
        return m.group()

    def closing(self, quote: str) -> int:
        """Where the quote opened at the current position closes (-1: it does not)."""
        j = self.i + 1
        while j < len(self.s):
            if self.s[j] == "\\":
                j += 2
                continue
            if self.s[j] == quote:
                return j
            j += 1
        return -1

    def quoted(self, quote: str) -> str:
        start = self.i
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
                if quote != '"':
                    # Inside a regex delimiter only the delimiter is escaped; the rest
                    # (\d, \.) belongs to the regex.
                    out.append(nxt if nxt == quote else "\\" + nxt)
                elif nxt in _ESCAPES:
                    out.append(_ESCAPES[nxt])
                else:
                    self.i -= 1
                    raise self.error(f"unknown escape \\{nxt}")
                continue
            out.append(ch)
        self.i = start
        raise self.error("unterminated quoted string")


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
