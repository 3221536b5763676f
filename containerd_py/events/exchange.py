"""The event exchange: topic pub/sub inside the daemon.

Publishers (services, the task manager, shims through Forward) hand an event to
`publish`/`forward`; the exchange wraps it in an Envelope (timestamp, namespace, topic,
Any) and offers it to every subscriber whose filters match (see `filters`). Delivery is
best effort and never blocks a publisher: each subscriber has a bounded queue, and one that
falls that far behind is dropped (logged; its iterator ends with Unavailable after what it
had queued, so the client knows it missed events and can resubscribe). Events are not
stored: a subscriber sees what is published after it subscribed. Correctness never rests on
delivery (the daemon reconciles with the shims' State/Wait), as DESIGN.md requires.

Envelopes are shared between subscribers: treat them as read-only.

Field paths a filter can use: `topic`, `namespace`, and `event.<field>[.<field>...]` into
the payload when its type is known to protobuf's default pool (every type in
`containerd_py.api.events.v1` is, through `topics`): string fields when non-empty, numbers
and booleans always, map keys as the next path element (`event.labels.team`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from containerd_py import filters as flt
from containerd_py import namespaces
from containerd_py.api.types.v1.event_pb2 import Envelope
from containerd_py.errdefs import InvalidArgument, Unavailable
from containerd_py.events.topics import validate_topic

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1024
DEFAULT_MAX_SUBSCRIBERS = 256
# How often a waiting subscriber re-checks `alive` (the client may vanish without the
# cancellation callback firing, e.g. while the server is stopping).
POLL_INTERVAL = 1.0


class Publisher(Protocol):
    """What a service needs to emit events (the exchange, or a test double)."""

    def publish(self, namespace: str, topic: str, event: Message) -> Envelope: ...


class SlowSubscriber(Unavailable):
    """The subscriber's queue overflowed and it was dropped."""


class Subscription:
    """An iterator over matching envelopes; ends on `close()` and raises Unavailable when
    dropped or when the exchange closes. Use it as a context manager so it unsubscribes."""

    def __init__(
        self,
        exchange: Exchange,
        filter_: flt.Filter,
        filters: Sequence[str],
        queue_size: int,
        alive: Callable[[], bool] | None,
        poll_interval: float,
    ) -> None:
        self._exchange = exchange
        self.filter = filter_
        self.filters = tuple(filters)
        self._queue: deque[Envelope] = deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._closed = False
        self._error: Exception | None = None
        self._alive = alive
        self._poll = poll_interval

    # -- publisher side (never blocks beyond a short lock) ------------------------------

    def _offer(self, envelope: Envelope) -> bool:
        """Queue an envelope; False when the queue was full and the subscriber dropped."""
        with self._cond:
            if self._closed or self._error is not None:
                return True
            if len(self._queue) >= self._queue_size:
                self._error = SlowSubscriber(
                    f"event subscriber dropped: it fell {self._queue_size} events behind"
                )
                self._cond.notify_all()
                return False
            self._queue.append(envelope)
            self._cond.notify()
            return True

    def _fail(self, error: Exception) -> None:
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    # -- subscriber side ---------------------------------------------------------------

    def __iter__(self) -> Iterator[Envelope]:
        return self

    def __next__(self) -> Envelope:
        with self._cond:
            while True:
                if self._queue:
                    return self._queue.popleft()
                if self._closed:
                    raise StopIteration
                if self._error is not None:
                    error, self._closed = self._error, True
                    self._exchange._remove(self)
                    raise error
                if self._alive is not None and not self._alive():
                    self._closed = True
                    self._exchange._remove(self)
                    raise StopIteration
                self._cond.wait(self._poll)

    def get(self, timeout: float | None = None) -> Envelope | None:
        """The next envelope, or None after `timeout` seconds or at the end (for tests
        and in-process consumers that must not block forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue and not self._closed and self._error is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
        try:
            return next(self)
        except StopIteration:
            return None

    @property
    def dropped(self) -> bool:
        return isinstance(self._error, SlowSubscriber)

    def close(self) -> None:
        """Unsubscribe; a blocked iteration ends. Safe from any thread, more than once
        (grpc calls it from its own thread when the client goes away)."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        self._exchange._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Exchange:
    def __init__(
        self,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
        clock: Callable[[], int] = time.time_ns,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self._clock = clock
        self._poll = poll_interval
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._closed: Exception | None = None

    def publish(self, namespace: str, topic: str, event: Message) -> Envelope:
        """Stamp, wrap and deliver an event (an Any is taken as already packed)."""
        if isinstance(event, any_pb2.Any):
            packed = event
        else:
            packed = any_pb2.Any()
            packed.Pack(event)
        envelope = Envelope(namespace=namespace, topic=topic, event=packed)
        envelope.timestamp.FromNanoseconds(self._clock())
        self.forward(envelope)
        return envelope

    def forward(self, envelope: Envelope) -> None:
        """Deliver an envelope as it is (a shim's, with its own namespace and time)."""
        try:
            namespaces.validate(envelope.namespace)
        except InvalidArgument as e:
            raise InvalidArgument(f"event envelope: {e}") from None
        validate_topic(envelope.topic)
        if not envelope.HasField("event") or not envelope.event.type_url:
            raise InvalidArgument(f"event envelope for {envelope.topic} carries no event")
        if not envelope.HasField("timestamp"):
            # Lenient: a shim that forgot the time still gets its event through.
            envelope.timestamp.FromNanoseconds(self._clock())
        with self._lock:
            subscribers = list(self._subscribers)
        if not subscribers:
            return
        adaptor = envelope_adaptor(envelope)
        for sub in subscribers:
            try:
                matches = sub.filter.match(adaptor)
            except Exception:
                # A filter must never break delivery to the others.
                log.exception("event filter %s failed on %s", sub.filters, envelope.topic)
                continue
            if matches and not sub._offer(envelope):
                log.warning(
                    "dropping slow event subscriber (filters %s): %d events queued",
                    list(sub.filters) or "none",
                    self.queue_size,
                )
                self._remove(sub)

    def subscribe(
        self,
        filters: Iterable[str] = (),
        *,
        alive: Callable[[], bool] | None = None,
    ) -> Subscription:
        """A new subscription to the envelopes matching any of `filters` (all if none).

        `alive` is polled while waiting (a gRPC handler passes `context.is_active`) so an
        iteration ends when its client is gone even if nobody calls `close()`.
        """
        filters = list(filters)
        parsed = flt.parse(*filters)
        sub = Subscription(self, parsed, filters, self.queue_size, alive, self._poll)
        with self._lock:
            if self._closed is not None:
                raise Unavailable(str(self._closed))
            if len(self._subscribers) >= self.max_subscribers:
                # Each remote subscriber holds a server thread: refuse before starving
                # every other call.
                raise Unavailable(f"too many event subscribers (limit {self.max_subscribers})")
            self._subscribers.append(sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def close(self, reason: str = "pycontainerd is shutting down") -> None:
        """End every subscription with Unavailable(reason) and refuse new ones."""
        with self._lock:
            self._closed = Unavailable(reason)
            subscribers, self._subscribers = self._subscribers, []
        for sub in subscribers:
            sub._fail(Unavailable(reason))

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)


# -- filter adaptor over an envelope ----------------------------------------------------


def envelope_adaptor(envelope: Envelope) -> flt.Adaptor:
    """The fields a filter sees on an envelope; the payload is decoded at most once."""
    decoded: list[Message | None] = []

    def payload() -> Message | None:
        if not decoded:
            decoded.append(unpack(envelope.event))
        return decoded[0]

    def field(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        head = path[0]
        if head == "topic" and len(path) == 1:
            return envelope.topic, bool(envelope.topic)
        if head == "namespace" and len(path) == 1:
            return envelope.namespace, bool(envelope.namespace)
        if head == "event" and len(path) > 1:
            msg = payload()
            return ("", False) if msg is None else message_field(msg, path[1:])
        return "", False

    return field


def unpack(packed: any_pb2.Any) -> Message | None:
    """The payload of an Any when its type is registered, else None."""
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
    except KeyError:
        return None
    msg = message_factory.GetMessageClass(desc)()
    try:
        packed.Unpack(msg)
    except DecodeError:
        return None
    return msg


def message_field(msg: Message, path: Sequence[str]) -> tuple[str, bool]:
    """A field of a protobuf message by path, as a filter sees it."""
    fd = msg.DESCRIPTOR.fields_by_name.get(path[0])
    if fd is None:
        return "", False
    value = getattr(msg, path[0])
    rest = path[1:]
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        if len(rest) != 1:
            return "", False
        key = rest[0]
        return (str(value[key]), True) if key in value else ("", False)
    if fd.is_repeated:
        return "", False
    if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        if not rest or not msg.HasField(path[0]):
            return "", False
        return message_field(value, rest)
    if rest:
        return "", False
    if fd.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        text = value if isinstance(value, str) else value.hex()
        return text, bool(text)
    if fd.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return ("true" if value else "false"), True
    if fd.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        enum_value = fd.enum_type.values_by_number.get(value)
        return (enum_value.name if enum_value else str(value)), True
    return str(value), True
