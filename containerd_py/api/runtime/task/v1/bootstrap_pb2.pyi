from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class BootstrapParams(_message.Message):
    __slots__ = ("id", "namespace", "bundle", "socket_dir", "daemon_address", "daemon_version", "log_level")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    SOCKET_DIR_FIELD_NUMBER: _ClassVar[int]
    DAEMON_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DAEMON_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    id: str
    namespace: str
    bundle: str
    socket_dir: str
    daemon_address: str
    daemon_version: str
    log_level: str
    def __init__(self, id: _Optional[str] = ..., namespace: _Optional[str] = ..., bundle: _Optional[str] = ..., socket_dir: _Optional[str] = ..., daemon_address: _Optional[str] = ..., daemon_version: _Optional[str] = ..., log_level: _Optional[str] = ...) -> None: ...

class BootstrapResult(_message.Message):
    __slots__ = ("version", "address", "protocol", "shim_pid")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    SHIM_PID_FIELD_NUMBER: _ClassVar[int]
    version: int
    address: str
    protocol: str
    shim_pid: int
    def __init__(self, version: _Optional[int] = ..., address: _Optional[str] = ..., protocol: _Optional[str] = ..., shim_pid: _Optional[int] = ...) -> None: ...
