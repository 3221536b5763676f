from containerd_py.api.types.v1 import descriptor_pb2 as _descriptor_pb2
from containerd_py.api.types.v1 import platform_pb2 as _platform_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BlobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLOB_KIND_UNSPECIFIED: _ClassVar[BlobKind]
    BLOB_KIND_INDEX: _ClassVar[BlobKind]
    BLOB_KIND_MANIFEST: _ClassVar[BlobKind]
    BLOB_KIND_CONFIG: _ClassVar[BlobKind]
    BLOB_KIND_LAYER: _ClassVar[BlobKind]

class BlobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLOB_STATUS_UNSPECIFIED: _ClassVar[BlobStatus]
    BLOB_STATUS_WAITING: _ClassVar[BlobStatus]
    BLOB_STATUS_TRANSFERRING: _ClassVar[BlobStatus]
    BLOB_STATUS_DONE: _ClassVar[BlobStatus]
    BLOB_STATUS_EXISTS: _ClassVar[BlobStatus]
    BLOB_STATUS_MOUNTED: _ClassVar[BlobStatus]
    BLOB_STATUS_FAILED: _ClassVar[BlobStatus]
BLOB_KIND_UNSPECIFIED: BlobKind
BLOB_KIND_INDEX: BlobKind
BLOB_KIND_MANIFEST: BlobKind
BLOB_KIND_CONFIG: BlobKind
BLOB_KIND_LAYER: BlobKind
BLOB_STATUS_UNSPECIFIED: BlobStatus
BLOB_STATUS_WAITING: BlobStatus
BLOB_STATUS_TRANSFERRING: BlobStatus
BLOB_STATUS_DONE: BlobStatus
BLOB_STATUS_EXISTS: BlobStatus
BLOB_STATUS_MOUNTED: BlobStatus
BLOB_STATUS_FAILED: BlobStatus

class RegistryAuth(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class RegistryOptions(_message.Message):
    __slots__ = ("auth", "plain_http", "skip_verify")
    AUTH_FIELD_NUMBER: _ClassVar[int]
    PLAIN_HTTP_FIELD_NUMBER: _ClassVar[int]
    SKIP_VERIFY_FIELD_NUMBER: _ClassVar[int]
    auth: RegistryAuth
    plain_http: bool
    skip_verify: bool
    def __init__(self, auth: _Optional[_Union[RegistryAuth, _Mapping]] = ..., plain_http: _Optional[bool] = ..., skip_verify: _Optional[bool] = ...) -> None: ...

class BlobProgress(_message.Message):
    __slots__ = ("descriptor", "kind", "status", "offset")
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    descriptor: _descriptor_pb2.Descriptor
    kind: BlobKind
    status: BlobStatus
    offset: int
    def __init__(self, descriptor: _Optional[_Union[_descriptor_pb2.Descriptor, _Mapping]] = ..., kind: _Optional[_Union[BlobKind, str]] = ..., status: _Optional[_Union[BlobStatus, str]] = ..., offset: _Optional[int] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("ref", "platforms", "all_platforms", "unpack", "snapshotter", "registry", "labels", "max_concurrent_downloads")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    ALL_PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    UNPACK_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTTER_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    platforms: _containers.RepeatedCompositeFieldContainer[_platform_pb2.Platform]
    all_platforms: bool
    unpack: bool
    snapshotter: str
    registry: RegistryOptions
    labels: _containers.ScalarMap[str, str]
    max_concurrent_downloads: int
    def __init__(self, ref: _Optional[str] = ..., platforms: _Optional[_Iterable[_Union[_platform_pb2.Platform, _Mapping]]] = ..., all_platforms: _Optional[bool] = ..., unpack: _Optional[bool] = ..., snapshotter: _Optional[str] = ..., registry: _Optional[_Union[RegistryOptions, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., max_concurrent_downloads: _Optional[int] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("ref", "status", "blobs", "done", "name", "target")
    REF_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ref: str
    status: str
    blobs: _containers.RepeatedCompositeFieldContainer[BlobProgress]
    done: bool
    name: str
    target: _descriptor_pb2.Descriptor
    def __init__(self, ref: _Optional[str] = ..., status: _Optional[str] = ..., blobs: _Optional[_Iterable[_Union[BlobProgress, _Mapping]]] = ..., done: _Optional[bool] = ..., name: _Optional[str] = ..., target: _Optional[_Union[_descriptor_pb2.Descriptor, _Mapping]] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("ref", "remote_ref", "platform", "registry", "chunk_size", "max_concurrent_uploads")
    REF_FIELD_NUMBER: _ClassVar[int]
    REMOTE_REF_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_UPLOADS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    remote_ref: str
    platform: _platform_pb2.Platform
    registry: RegistryOptions
    chunk_size: int
    max_concurrent_uploads: int
    def __init__(self, ref: _Optional[str] = ..., remote_ref: _Optional[str] = ..., platform: _Optional[_Union[_platform_pb2.Platform, _Mapping]] = ..., registry: _Optional[_Union[RegistryOptions, _Mapping]] = ..., chunk_size: _Optional[int] = ..., max_concurrent_uploads: _Optional[int] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("ref", "status", "blobs", "done", "target")
    REF_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ref: str
    status: str
    blobs: _containers.RepeatedCompositeFieldContainer[BlobProgress]
    done: bool
    target: _descriptor_pb2.Descriptor
    def __init__(self, ref: _Optional[str] = ..., status: _Optional[str] = ..., blobs: _Optional[_Iterable[_Union[BlobProgress, _Mapping]]] = ..., done: _Optional[bool] = ..., target: _Optional[_Union[_descriptor_pb2.Descriptor, _Mapping]] = ...) -> None: ...
