"""A small declarative type check for config.json, so every wrong type gets a one-line error
naming the field (`process.args[1]: expected string, got int`).

Unknown fields are allowed, as the runtime spec requires; known fields must have their type.
"""

from __future__ import annotations

from typing import Any


class SpecError(ValueError):
    """config.json is malformed; the message names the field."""


class ListOf:
    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item


class MapOf:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Int:
    """An integer that is not a bool (json true would pass isinstance(int))."""


_NAMES = {str: "string", bool: "boolean", Int: "integer", dict: "object", list: "array"}


def _typename(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def check(value: Any, schema: Any, path: str) -> None:
    if schema is Any:
        return
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise SpecError(f"{path}: expected object, got {_typename(value)}")
        for key, sub in schema.items():
            if key in value and value[key] is not None:
                check(value[key], sub, f"{path}.{key}" if path else key)
        return
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            raise SpecError(f"{path}: expected array, got {_typename(value)}")
        for i, item in enumerate(value):
            check(item, schema.item, f"{path}[{i}]")
        return
    if isinstance(schema, MapOf):
        if not isinstance(value, dict):
            raise SpecError(f"{path}: expected object, got {_typename(value)}")
        for k, item in value.items():
            check(item, schema.value, f"{path}.{k}")
        return
    if schema is Int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif schema is bool:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, schema)
    if not ok:
        raise SpecError(f"{path}: expected {_NAMES.get(schema, schema)}, got {_typename(value)}")


# The lifecycle order of the runtime spec.
HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

_ID_MAPPING = {"containerID": Int, "hostID": Int, "size": Int}
_HOOK = {"path": str, "args": ListOf(str), "env": ListOf(str), "timeout": Int}
_CAPS = {k: ListOf(str) for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}

CONFIG = {
    "ociVersion": str,
    "process": {
        "terminal": bool,
        "consoleSize": {"height": Int, "width": Int},
        "user": {
            "uid": Int,
            "gid": Int,
            "umask": Int,
            "additionalGids": ListOf(Int),
            "username": str,
        },
        "args": ListOf(str),
        "commandLine": str,
        "env": ListOf(str),
        "cwd": str,
        "capabilities": _CAPS,
        "rlimits": ListOf({"type": str, "soft": Int, "hard": Int}),
        "noNewPrivileges": bool,
        "apparmorProfile": str,
        "oomScoreAdj": Int,
        "selinuxLabel": str,
    },
    "root": {"path": str, "readonly": bool},
    "hostname": str,
    "domainname": str,
    "mounts": ListOf(
        {
            "destination": str,
            "source": str,
            "type": str,
            "options": ListOf(str),
            "uidMappings": ListOf(_ID_MAPPING),
            "gidMappings": ListOf(_ID_MAPPING),
        }
    ),
    "hooks": {k: ListOf(_HOOK) for k in HOOK_KINDS},
    "annotations": MapOf(str),
    "linux": {
        "namespaces": ListOf({"type": str, "path": str}),
        "uidMappings": ListOf(_ID_MAPPING),
        "gidMappings": ListOf(_ID_MAPPING),
        "devices": ListOf(
            {
                "type": str,
                "path": str,
                "major": Int,
                "minor": Int,
                "fileMode": Int,
                "uid": Int,
                "gid": Int,
            }
        ),
        "cgroupsPath": str,
        "resources": dict,
        "sysctl": MapOf(str),
        "seccomp": dict,
        "rootfsPropagation": str,
        "maskedPaths": ListOf(str),
        "readonlyPaths": ListOf(str),
        "mountLabel": str,
        "personality": {"domain": str, "flags": ListOf(str)},
    },
}

# What `pyrunc exec --process FILE` reads: a process object alone.
PROCESS = CONFIG["process"]
