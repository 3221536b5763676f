"""The daemon's one exception hierarchy.

Core code raises these; a single gRPC interceptor maps them to status codes by
`grpc_code_name` (the `grpc.StatusCode` member name), so nothing here imports grpc. The
client side maps codes back with `from_code_name`, so an error keeps its class across the
wire, as containerd's errdefs/errgrpc pair does.
"""

from __future__ import annotations

from typing import ClassVar


class PyContainerdError(Exception):
    """Base class; the message is what the caller sees."""

    grpc_code_name: ClassVar[str] = "UNKNOWN"


class NotFound(PyContainerdError):
    grpc_code_name = "NOT_FOUND"


class AlreadyExists(PyContainerdError):
    grpc_code_name = "ALREADY_EXISTS"


class InvalidArgument(PyContainerdError):
    grpc_code_name = "INVALID_ARGUMENT"


class FailedPrecondition(PyContainerdError):
    grpc_code_name = "FAILED_PRECONDITION"


class Unavailable(PyContainerdError):
    grpc_code_name = "UNAVAILABLE"


class Internal(PyContainerdError):
    grpc_code_name = "INTERNAL"


class Unauthenticated(PyContainerdError):
    """No valid credentials: a registry wants some, or refused those it was given."""

    grpc_code_name = "UNAUTHENTICATED"


class PermissionDenied(PyContainerdError):
    """Authenticated, but not allowed (a registry token without the push action)."""

    grpc_code_name = "PERMISSION_DENIED"


_BY_CODE: dict[str, type[PyContainerdError]] = {
    cls.grpc_code_name: cls
    for cls in (
        NotFound,
        AlreadyExists,
        InvalidArgument,
        FailedPrecondition,
        Unavailable,
        Internal,
        Unauthenticated,
        PermissionDenied,
    )
}


def from_code_name(code_name: str, message: str) -> PyContainerdError:
    """The exception for a status code name received from the wire (UNKNOWN for others)."""
    return _BY_CODE.get(code_name, PyContainerdError)(message)
