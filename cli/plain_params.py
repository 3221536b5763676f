"""Plain coercion for the parameter types pyctr uses, so that parsing needs no pydantic.

typer 0.29 converts every parameter value through a pydantic TypeAdapter, built the first
time the parameter is processed (even for a value of None, as the help flag's is):
importing pydantic and building the adapters of one command line costs ~70 ms, more than
the rest of a `pyctr version`. pyctr's parameters are str, bool, float and lists of str,
which need no validation library. `install()` has typer use, for those types, a coercer
that does what its adapter does (bytes decoded, booleans and numbers parsed from their
words, lists element by element); any other type (paths, enums, files, a custom parser,
bounded numbers) keeps typer's own.

This replaces one method of typer's parameter class, `get_runtime_param` (it builds and
caches the coercion in `_runtime_param`), and only in the pyctr process (`cli.ctr.main`
installs it). A typer without that method, as the releases before 0.29 which coerced
through click's types, is left as it is. tests/unit/test_ctr_startup.py checks that the
hot commands import no pydantic and that the values are those typer's own coercion gives.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args, get_origin

import typer
import typer.core

_NAMES = {bool: "boolean", int: "integer", float: "float"}
# pydantic's words for a boolean, as typer's adapter accepts them (after strip; "" is False).
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"", "0", "off", "f", "false", "n", "no"}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        # As typer: the argv encoding first, the file system's next, then replacement.
        for encoding in (sys.getfilesystemencoding(), "utf-8"):
            try:
                return value.decode(encoding)
            except UnicodeError:
                continue
        return value.decode("utf-8", "replace")
    return str(value)


def _number(kind: type) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, kind) and not isinstance(value, bool):
            return value
        try:
            return kind(_text(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a valid {_NAMES[kind]}.") from None

    return convert


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = _text(value).strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError(f"{value!r} is not a valid boolean.")


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {
    str: _text,
    bool: _bool,
    int: _number(int),
    float: _number(float),
}


@dataclass(frozen=True, slots=True)
class PlainCoercion:
    """What typer's RuntimeParam offers process_value: coerce(value, param=, ctx=)."""

    convert: Callable[[Any], Any]
    many: bool

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        if multi and isinstance(value, str):
            raise typer.BadParameter("Value must be an iterable.", ctx=ctx, param=param)
        try:
            if self.many:
                items = value if isinstance(value, list | tuple) else [value]
                return [self.convert(v) for v in items]
            return self.convert(value)
        except ValueError as e:
            raise typer.BadParameter(str(e), ctx=ctx, param=param) from None


def plain_coercion(annotation: Any, parameter_info: Any) -> PlainCoercion | None:
    """The plain coercer for a parameter of this annotation and typer ParameterInfo, or
    None when typer's own must do."""
    custom = (
        getattr(parameter_info, name, None)
        for name in ("parser", "min", "max", "formats", "path_type")
    )
    if any(v is not None for v in custom) or getattr(parameter_info, "clamp", False):
        return None
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (None,)
        convert = _CONVERTERS.get(item)
        return None if convert is None else PlainCoercion(convert, many=True)
    convert = _CONVERTERS.get(annotation)
    return None if convert is None else PlainCoercion(convert, many=False)


def install() -> bool:
    """Have typer try plain coercion first for every parameter it processes from now on
    (the help option too, which typer makes only while parsing). Returns False, changing
    nothing, when this typer has no such hook."""
    cls = getattr(typer.core, "_TyperParameter", None)
    original = getattr(cls, "get_runtime_param", None)
    if cls is None or original is None:
        return False
    if getattr(original, "plain_first", False):
        return True

    def get_runtime_param(self: Any) -> Any:
        desc = self.type_descriptor
        if self._runtime_param is None and desc.file_annotation is None:
            self._runtime_param = plain_coercion(desc.annotation, desc.parameter_info)
        return self._runtime_param or original(self)

    get_runtime_param.plain_first = True  # type: ignore[attr-defined]
    cls.get_runtime_param = get_runtime_param
    return True
