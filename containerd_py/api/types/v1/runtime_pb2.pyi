from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RuntimeOptions(_message.Message):
    __slots__ = ("binary_name", "root", "systemd_cgroup", "extra_args")
    BINARY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    SYSTEMD_CGROUP_FIELD_NUMBER: _ClassVar[int]
    EXTRA_ARGS_FIELD_NUMBER: _ClassVar[int]
    binary_name: str
    root: str
    systemd_cgroup: bool
    extra_args: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, binary_name: _Optional[str] = ..., root: _Optional[str] = ..., systemd_cgroup: _Optional[bool] = ..., extra_args: _Optional[_Iterable[str]] = ...) -> None: ...
