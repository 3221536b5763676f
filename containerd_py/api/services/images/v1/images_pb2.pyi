import datetime

from containerd_py.api.types.v1 import descriptor_pb2 as _descriptor_pb2
from containerd_py.api.types.v1 import platform_pb2 as _platform_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LayerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAYER_STATUS_UNSPECIFIED: _ClassVar[LayerStatus]
    LAYER_STATUS_WAITING: _ClassVar[LayerStatus]
    LAYER_STATUS_DOWNLOADING: _ClassVar[LayerStatus]
    LAYER_STATUS_UPLOADING: _ClassVar[LayerStatus]
    LAYER_STATUS_VERIFYING: _ClassVar[LayerStatus]
    LAYER_STATUS_DOWNLOADED: _ClassVar[LayerStatus]
    LAYER_STATUS_EXTRACTING: _ClassVar[LayerStatus]
    LAYER_STATUS_DONE: _ClassVar[LayerStatus]
    LAYER_STATUS_EXISTS: _ClassVar[LayerStatus]
    LAYER_STATUS_FAILED: _ClassVar[LayerStatus]
LAYER_STATUS_UNSPECIFIED: LayerStatus
LAYER_STATUS_WAITING: LayerStatus
LAYER_STATUS_DOWNLOADING: LayerStatus
LAYER_STATUS_UPLOADING: LayerStatus
LAYER_STATUS_VERIFYING: LayerStatus
LAYER_STATUS_DOWNLOADED: LayerStatus
LAYER_STATUS_EXTRACTING: LayerStatus
LAYER_STATUS_DONE: LayerStatus
LAYER_STATUS_EXISTS: LayerStatus
LAYER_STATUS_FAILED: LayerStatus

class Image(_message.Message):
    __slots__ = ("name", "labels", "target", "created_at", "updated_at")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    target: _descriptor_pb2.Descriptor
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., target: _Optional[_Union[_descriptor_pb2.Descriptor, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: Image
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, filters: _Optional[_Iterable[str]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class CreateRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: Image
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class CreateResponse(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: Image
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("image", "update_mask")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    image: Image
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateResponse(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: Image
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("name", "sync", "target_digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    TARGET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    sync: bool
    target_digest: str
    def __init__(self, name: _Optional[str] = ..., sync: _Optional[bool] = ..., target_digest: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegistryAuth(_message.Message):
    __slots__ = ("username", "password", "identity_token", "registry_token")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    identity_token: str
    registry_token: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., identity_token: _Optional[str] = ..., registry_token: _Optional[str] = ...) -> None: ...

class LayerProgress(_message.Message):
    __slots__ = ("digest", "media_type", "total", "offset", "status")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    digest: str
    media_type: str
    total: int
    offset: int
    status: LayerStatus
    def __init__(self, digest: _Optional[str] = ..., media_type: _Optional[str] = ..., total: _Optional[int] = ..., offset: _Optional[int] = ..., status: _Optional[_Union[LayerStatus, str]] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("ref", "platform", "unpack", "snapshotter", "auth", "plain_http", "skip_verify", "all_platforms", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    UNPACK_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTTER_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    PLAIN_HTTP_FIELD_NUMBER: _ClassVar[int]
    SKIP_VERIFY_FIELD_NUMBER: _ClassVar[int]
    ALL_PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    platform: _platform_pb2.Platform
    unpack: bool
    snapshotter: str
    auth: RegistryAuth
    plain_http: bool
    skip_verify: bool
    all_platforms: bool
    labels: _containers.ScalarMap[str, str]
    def __init__(self, ref: _Optional[str] = ..., platform: _Optional[_Union[_platform_pb2.Platform, _Mapping]] = ..., unpack: _Optional[bool] = ..., snapshotter: _Optional[str] = ..., auth: _Optional[_Union[RegistryAuth, _Mapping]] = ..., plain_http: _Optional[bool] = ..., skip_verify: _Optional[bool] = ..., all_platforms: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PullProgress(_message.Message):
    __slots__ = ("ref", "status", "layers", "done", "image")
    REF_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    status: str
    layers: _containers.RepeatedCompositeFieldContainer[LayerProgress]
    done: bool
    image: Image
    def __init__(self, ref: _Optional[str] = ..., status: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[LayerProgress, _Mapping]]] = ..., done: _Optional[bool] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("ref", "remote_ref", "platform", "auth", "plain_http", "skip_verify")
    REF_FIELD_NUMBER: _ClassVar[int]
    REMOTE_REF_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    PLAIN_HTTP_FIELD_NUMBER: _ClassVar[int]
    SKIP_VERIFY_FIELD_NUMBER: _ClassVar[int]
    ref: str
    remote_ref: str
    platform: _platform_pb2.Platform
    auth: RegistryAuth
    plain_http: bool
    skip_verify: bool
    def __init__(self, ref: _Optional[str] = ..., remote_ref: _Optional[str] = ..., platform: _Optional[_Union[_platform_pb2.Platform, _Mapping]] = ..., auth: _Optional[_Union[RegistryAuth, _Mapping]] = ..., plain_http: _Optional[bool] = ..., skip_verify: _Optional[bool] = ...) -> None: ...

class PushProgress(_message.Message):
    __slots__ = ("ref", "status", "layers", "done", "target")
    REF_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ref: str
    status: str
    layers: _containers.RepeatedCompositeFieldContainer[LayerProgress]
    done: bool
    target: _descriptor_pb2.Descriptor
    def __init__(self, ref: _Optional[str] = ..., status: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[LayerProgress, _Mapping]]] = ..., done: _Optional[bool] = ..., target: _Optional[_Union[_descriptor_pb2.Descriptor, _Mapping]] = ...) -> None: ...

class ImportOptions(_message.Message):
    __slots__ = ("path", "platform", "all_platforms", "unpack", "snapshotter", "base_name", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PATH_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    ALL_PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    UNPACK_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTTER_FIELD_NUMBER: _ClassVar[int]
    BASE_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    path: str
    platform: _platform_pb2.Platform
    all_platforms: bool
    unpack: bool
    snapshotter: str
    base_name: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, path: _Optional[str] = ..., platform: _Optional[_Union[_platform_pb2.Platform, _Mapping]] = ..., all_platforms: _Optional[bool] = ..., unpack: _Optional[bool] = ..., snapshotter: _Optional[str] = ..., base_name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ImportRequest(_message.Message):
    __slots__ = ("options", "data")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    options: ImportOptions
    data: bytes
    def __init__(self, options: _Optional[_Union[ImportOptions, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("names", "platform", "all_platforms", "path", "format")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    ALL_PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    platform: _platform_pb2.Platform
    all_platforms: bool
    path: str
    format: str
    def __init__(self, names: _Optional[_Iterable[str]] = ..., platform: _Optional[_Union[_platform_pb2.Platform, _Mapping]] = ..., all_platforms: _Optional[bool] = ..., path: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("data", "size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    size: int
    def __init__(self, data: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...
