"""Every event topic the daemon and its shims publish, and the payload each one carries.

A topic is a path: "/" followed by identifiers joined by "/" (containerd's rule). The
payloads are the messages of `pycontainerd.events.v1`, packed into the envelope's Any.
Importing this module also registers every payload type with protobuf's default pool,
which is what lets subscribers' `event.<field>` filters and `pyctr events` decode them.
"""

from __future__ import annotations

import re

from google.protobuf.message import Message

from containerd_py.api.events.v1 import (
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
    task_pb2,
)
from containerd_py.errdefs import InvalidArgument

TASK_CREATE = "/tasks/create"
TASK_START = "/tasks/start"
TASK_EXIT = "/tasks/exit"
TASK_OOM = "/tasks/oom"
TASK_DELETE = "/tasks/delete"
TASK_PAUSED = "/tasks/paused"
TASK_RESUMED = "/tasks/resumed"
TASK_EXEC_ADDED = "/tasks/exec-added"
TASK_EXEC_STARTED = "/tasks/exec-started"
TASK_CHECKPOINTED = "/tasks/checkpointed"

CONTAINER_CREATE = "/containers/create"
CONTAINER_UPDATE = "/containers/update"
CONTAINER_DELETE = "/containers/delete"

IMAGE_CREATE = "/images/create"
IMAGE_UPDATE = "/images/update"
IMAGE_DELETE = "/images/delete"

CONTENT_CREATE = "/content/create"
CONTENT_DELETE = "/content/delete"

# containerd spells these in the singular; we keep its names so filters carry over.
SNAPSHOT_PREPARE = "/snapshot/prepare"
SNAPSHOT_COMMIT = "/snapshot/commit"
SNAPSHOT_REMOVE = "/snapshot/remove"

NAMESPACE_CREATE = "/namespaces/create"
NAMESPACE_UPDATE = "/namespaces/update"
NAMESPACE_DELETE = "/namespaces/delete"

# The payload type of each topic. The exchange does not enforce it (a client may publish
# its own topics, as with containerd); it documents the pairs and lets tests check them.
PAYLOADS: dict[str, type[Message]] = {
    TASK_CREATE: task_pb2.TaskCreate,
    TASK_START: task_pb2.TaskStart,
    TASK_EXIT: task_pb2.TaskExit,
    TASK_OOM: task_pb2.TaskOOM,
    TASK_DELETE: task_pb2.TaskDelete,
    TASK_PAUSED: task_pb2.TaskPaused,
    TASK_RESUMED: task_pb2.TaskResumed,
    TASK_EXEC_ADDED: task_pb2.TaskExecAdded,
    TASK_EXEC_STARTED: task_pb2.TaskExecStarted,
    TASK_CHECKPOINTED: task_pb2.TaskCheckpointed,
    CONTAINER_CREATE: container_pb2.ContainerCreate,
    CONTAINER_UPDATE: container_pb2.ContainerUpdate,
    CONTAINER_DELETE: container_pb2.ContainerDelete,
    IMAGE_CREATE: image_pb2.ImageCreate,
    IMAGE_UPDATE: image_pb2.ImageUpdate,
    IMAGE_DELETE: image_pb2.ImageDelete,
    CONTENT_CREATE: content_pb2.ContentCreate,
    CONTENT_DELETE: content_pb2.ContentDelete,
    SNAPSHOT_PREPARE: snapshot_pb2.SnapshotPrepare,
    SNAPSHOT_COMMIT: snapshot_pb2.SnapshotCommit,
    SNAPSHOT_REMOVE: snapshot_pb2.SnapshotRemove,
    NAMESPACE_CREATE: namespace_pb2.NamespaceCreate,
    NAMESPACE_UPDATE: namespace_pb2.NamespaceUpdate,
    NAMESPACE_DELETE: namespace_pb2.NamespaceDelete,
}

_COMPONENT = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
MAX_TOPIC = 255


def validate_topic(topic: str) -> str:
    """The topic itself, or InvalidArgument saying what is wrong with it."""
    if not topic:
        raise InvalidArgument("event topic must not be empty")
    if not topic.startswith("/"):
        raise InvalidArgument(f"event topic {topic!r} must start with '/'")
    if len(topic) > MAX_TOPIC:
        raise InvalidArgument(f"event topic {topic[:40]!r}... longer than {MAX_TOPIC} characters")
    for part in topic[1:].split("/"):
        if not _COMPONENT.fullmatch(part):
            raise InvalidArgument(
                f"event topic {topic!r}: each '/' component must be alphanumerics "
                "joined by single '.', '_' or '-'"
            )
    return topic
