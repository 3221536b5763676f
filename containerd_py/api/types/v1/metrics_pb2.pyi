import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Metric(_message.Message):
    __slots__ = ("timestamp", "id", "data")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    id: str
    data: _any_pb2.Any
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., id: _Optional[str] = ..., data: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("cpu", "memory", "pids", "blkio")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    BLKIO_FIELD_NUMBER: _ClassVar[int]
    cpu: CpuStats
    memory: MemoryStats
    pids: PidsStats
    blkio: BlkioStats
    def __init__(self, cpu: _Optional[_Union[CpuStats, _Mapping]] = ..., memory: _Optional[_Union[MemoryStats, _Mapping]] = ..., pids: _Optional[_Union[PidsStats, _Mapping]] = ..., blkio: _Optional[_Union[BlkioStats, _Mapping]] = ...) -> None: ...

class CpuStats(_message.Message):
    __slots__ = ("usage_total_ns", "usage_user_ns", "usage_kernel_ns", "usage_per_cpu_ns", "periods", "throttled_periods", "throttled_time_ns")
    USAGE_TOTAL_NS_FIELD_NUMBER: _ClassVar[int]
    USAGE_USER_NS_FIELD_NUMBER: _ClassVar[int]
    USAGE_KERNEL_NS_FIELD_NUMBER: _ClassVar[int]
    USAGE_PER_CPU_NS_FIELD_NUMBER: _ClassVar[int]
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_PERIODS_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    usage_total_ns: int
    usage_user_ns: int
    usage_kernel_ns: int
    usage_per_cpu_ns: _containers.RepeatedScalarFieldContainer[int]
    periods: int
    throttled_periods: int
    throttled_time_ns: int
    def __init__(self, usage_total_ns: _Optional[int] = ..., usage_user_ns: _Optional[int] = ..., usage_kernel_ns: _Optional[int] = ..., usage_per_cpu_ns: _Optional[_Iterable[int]] = ..., periods: _Optional[int] = ..., throttled_periods: _Optional[int] = ..., throttled_time_ns: _Optional[int] = ...) -> None: ...

class MemoryStats(_message.Message):
    __slots__ = ("usage", "max_usage", "limit", "cache", "rss", "swap", "oom_kills", "raw")
    class RawEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MAX_USAGE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    RSS_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLS_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    usage: int
    max_usage: int
    limit: int
    cache: int
    rss: int
    swap: int
    oom_kills: int
    raw: _containers.ScalarMap[str, int]
    def __init__(self, usage: _Optional[int] = ..., max_usage: _Optional[int] = ..., limit: _Optional[int] = ..., cache: _Optional[int] = ..., rss: _Optional[int] = ..., swap: _Optional[int] = ..., oom_kills: _Optional[int] = ..., raw: _Optional[_Mapping[str, int]] = ...) -> None: ...

class PidsStats(_message.Message):
    __slots__ = ("current", "limit")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    current: int
    limit: int
    def __init__(self, current: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class BlkioStats(_message.Message):
    __slots__ = ("read_bytes", "write_bytes", "read_ops", "write_ops")
    READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRITE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_OPS_FIELD_NUMBER: _ClassVar[int]
    WRITE_OPS_FIELD_NUMBER: _ClassVar[int]
    read_bytes: int
    write_bytes: int
    read_ops: int
    write_ops: int
    def __init__(self, read_bytes: _Optional[int] = ..., write_bytes: _Optional[int] = ..., read_ops: _Optional[int] = ..., write_ops: _Optional[int] = ...) -> None: ...
