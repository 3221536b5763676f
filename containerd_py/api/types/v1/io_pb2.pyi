from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class StdioStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STDIO_STREAM_UNSPECIFIED: _ClassVar[StdioStream]
    STDIO_STREAM_STDIN: _ClassVar[StdioStream]
    STDIO_STREAM_STDOUT: _ClassVar[StdioStream]
    STDIO_STREAM_STDERR: _ClassVar[StdioStream]
STDIO_STREAM_UNSPECIFIED: StdioStream
STDIO_STREAM_STDIN: StdioStream
STDIO_STREAM_STDOUT: StdioStream
STDIO_STREAM_STDERR: StdioStream

class ConsoleSize(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class LogConfig(_message.Message):
    __slots__ = ("path", "max_size", "max_files")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_FILES_FIELD_NUMBER: _ClassVar[int]
    path: str
    max_size: int
    max_files: int
    def __init__(self, path: _Optional[str] = ..., max_size: _Optional[int] = ..., max_files: _Optional[int] = ...) -> None: ...
