"""The event exchange: envelopes, fan-out, filters, slow subscribers, closing."""

from __future__ import annotations

import threading
import time

import pytest
from google.protobuf import any_pb2

from containerd_py.api.events.v1 import namespace_pb2, task_pb2
from containerd_py.api.types.v1.event_pb2 import Envelope
from containerd_py.errdefs import InvalidArgument, Unavailable
from containerd_py.events import topics
from containerd_py.events.exchange import (
    Exchange,
    SlowSubscriber,
    envelope_adaptor,
    unpack,
)

T0 = 1_700_000_000_123_456_789


def exit_event(cid: str = "web", status: int = 137) -> task_pb2.TaskExit:
    return task_pb2.TaskExit(container_id=cid, id=cid, pid=42, exit_status=status)


@pytest.fixture
def exchange() -> Exchange:
    ex = Exchange(queue_size=8, clock=lambda: T0, poll_interval=0.05)
    yield ex
    ex.close()


def drain(sub, n: int) -> list[Envelope]:
    out = []
    for _ in range(n):
        env = sub.get(timeout=2)
        assert env is not None, f"got {len(out)} of {n} events"
        out.append(env)
    return out


def test_publish_wraps_the_event_in_an_envelope(exchange: Exchange) -> None:
    with exchange.subscribe() as sub:
        env = exchange.publish("pydocker", topics.TASK_EXIT, exit_event())
        (got,) = drain(sub, 1)
    assert got is env
    assert got.namespace == "pydocker"
    assert got.topic == "/tasks/exit"
    assert got.timestamp.ToNanoseconds() == T0
    assert got.event.type_url.endswith("pycontainerd.events.v1.TaskExit")
    assert unpack(got.event) == exit_event()


def test_every_subscriber_gets_every_matching_event(exchange: Exchange) -> None:
    subs = [exchange.subscribe() for _ in range(3)]
    for i in range(5):
        exchange.publish("default", topics.TASK_START, task_pb2.TaskStart(container_id=f"c{i}"))
    for sub in subs:
        got = [unpack(e.event).container_id for e in drain(sub, 5)]
        assert got == [f"c{i}" for i in range(5)]  # in publish order
        sub.close()
    assert exchange.subscriber_count == 0


def test_filters_select_by_topic_namespace_and_event_fields(exchange: Exchange) -> None:
    exits = exchange.subscribe(['topic=="/tasks/exit"'])
    tasks_in_ns = exchange.subscribe(['topic~="^/tasks/",namespace==pydocker'])
    web_or_ns = exchange.subscribe(["event.container_id==web", 'topic=="/namespaces/create"'])
    labelled = exchange.subscribe(["event.labels.team==a"])

    exchange.publish("pydocker", topics.TASK_EXIT, exit_event("web"))
    exchange.publish("default", topics.TASK_EXIT, exit_event("db"))
    exchange.publish("pydocker", topics.TASK_START, task_pb2.TaskStart(container_id="db"))
    exchange.publish(
        "x", topics.NAMESPACE_CREATE, namespace_pb2.NamespaceCreate(name="x", labels={"team": "a"})
    )

    def seen(sub):
        out = []
        while (env := sub.get(timeout=0.2)) is not None:
            out.append((env.namespace, env.topic))
        return out

    assert seen(exits) == [("pydocker", "/tasks/exit"), ("default", "/tasks/exit")]
    assert seen(tasks_in_ns) == [("pydocker", "/tasks/exit"), ("pydocker", "/tasks/start")]
    assert seen(web_or_ns) == [("pydocker", "/tasks/exit"), ("x", "/namespaces/create")]
    assert seen(labelled) == [("x", "/namespaces/create")]


def test_envelope_adaptor_reads_payload_fields() -> None:
    env = Envelope(namespace="n", topic="/tasks/exit")
    env.event.Pack(exit_event("web", 3))
    get = envelope_adaptor(env)
    assert get(("topic",)) == ("/tasks/exit", True)
    assert get(("namespace",)) == ("n", True)
    assert get(("event", "container_id")) == ("web", True)
    assert get(("event", "exit_status")) == ("3", True)
    assert get(("event", "nope")) == ("", False)
    assert get(("event", "exited_at", "seconds")) == ("", False)  # unset message field
    assert get(("other",)) == ("", False)


def test_unknown_payload_types_match_on_envelope_fields_only(exchange: Exchange) -> None:
    packed = any_pb2.Any(type_url="example.com/not.Registered", value=b"\x01\x02")
    with exchange.subscribe(["event.id==x", 'topic=="/custom/thing"']) as sub:
        exchange.publish("default", "/custom/thing", packed)
        (env,) = drain(sub, 1)
    assert env.event == packed
    assert unpack(env.event) is None


def test_slow_subscriber_is_dropped_and_never_blocks_publishers(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    slow = exchange.subscribe()
    fast = exchange.subscribe()
    received = []

    def consume():
        for env in fast:
            received.append(env)
            if len(received) == 20:
                return

    t = threading.Thread(target=consume)
    t.start()
    started = time.monotonic()
    for i in range(20):
        exchange.publish("default", topics.TASK_START, task_pb2.TaskStart(container_id=f"c{i}"))
        time.sleep(0.002)  # lets the fast consumer keep up with a queue of 8
    assert time.monotonic() - started < 5
    t.join(5)
    assert len(received) == 20
    assert slow.dropped
    assert "dropping slow event subscriber" in caplog.text
    # What it had queued is still delivered, then the stream ends with the reason.
    assert len(drain(slow, 8)) == 8
    with pytest.raises(SlowSubscriber, match="fell 8 events behind"):
        next(slow)
    assert isinstance(SlowSubscriber("x"), Unavailable)
    assert exchange.subscriber_count == 1
    fast.close()


def test_close_of_a_subscription_wakes_a_blocked_reader(exchange: Exchange) -> None:
    sub = exchange.subscribe()
    result = []
    t = threading.Thread(target=lambda: result.append(list(sub)))
    t.start()
    time.sleep(0.1)
    sub.close()
    t.join(2)
    assert not t.is_alive()
    assert result == [[]]
    assert exchange.subscriber_count == 0


def test_iteration_ends_when_alive_turns_false(exchange: Exchange) -> None:
    alive = threading.Event()
    alive.set()
    sub = exchange.subscribe(alive=alive.is_set)
    t = threading.Thread(target=lambda: list(sub))
    t.start()
    alive.clear()
    t.join(2)
    assert not t.is_alive()
    assert exchange.subscriber_count == 0


def test_closing_the_exchange_ends_subscriptions_with_unavailable() -> None:
    ex = Exchange()
    sub = ex.subscribe()
    ex.close("going away")
    with pytest.raises(Unavailable, match="going away"):
        next(sub)
    with pytest.raises(Unavailable, match="going away"):
        ex.subscribe()


def test_subscriber_limit() -> None:
    ex = Exchange(max_subscribers=2)
    a, _b = ex.subscribe(), ex.subscribe()
    with pytest.raises(Unavailable, match="too many event subscribers"):
        ex.subscribe()
    a.close()
    ex.subscribe().close()


def test_a_bad_filter_is_invalid_argument_and_subscribes_nothing(exchange: Exchange) -> None:
    with pytest.raises(InvalidArgument, match="invalid filter"):
        exchange.subscribe(["topic=="])
    assert exchange.subscriber_count == 0


@pytest.mark.parametrize(
    ("namespace", "topic", "message"),
    [
        ("", "/tasks/exit", "namespace name must not be empty"),
        ("bad/ns", "/tasks/exit", "invalid namespace name"),
        ("default", "tasks/exit", "must start with '/'"),
        ("default", "/tasks//exit", "each '/' component"),
        ("default", "/", "each '/' component"),
        ("default", "", "must not be empty"),
    ],
)
def test_publish_validates_namespace_and_topic(
    exchange: Exchange, namespace: str, topic: str, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        exchange.publish(namespace, topic, exit_event())


def test_forward_keeps_namespace_and_time_and_needs_an_event(exchange: Exchange) -> None:
    env = Envelope(namespace="k8s.io", topic=topics.TASK_OOM)
    env.timestamp.FromNanoseconds(5)
    env.event.Pack(task_pb2.TaskOOM(container_id="c"))
    with exchange.subscribe() as sub:
        exchange.forward(env)
        (got,) = drain(sub, 1)
    assert (got.namespace, got.timestamp.ToNanoseconds()) == ("k8s.io", 5)
    with pytest.raises(InvalidArgument, match="carries no event"):
        exchange.forward(Envelope(namespace="k8s.io", topic=topics.TASK_OOM))


def test_forward_stamps_an_envelope_without_time(exchange: Exchange) -> None:
    env = Envelope(namespace="default", topic=topics.TASK_OOM)
    env.event.Pack(task_pb2.TaskOOM(container_id="c"))
    exchange.forward(env)
    assert env.timestamp.ToNanoseconds() == T0


def test_a_failing_filter_does_not_stop_delivery_to_others(exchange: Exchange) -> None:
    broken = exchange.subscribe()
    object.__setattr__(broken, "filter", None)  # .match raises AttributeError
    with exchange.subscribe() as good:
        exchange.publish("default", topics.TASK_START, task_pb2.TaskStart())
        assert good.get(timeout=1) is not None
    broken.close()


def test_concurrent_publishers_and_subscribers() -> None:
    ex = Exchange(queue_size=10_000)
    subs = [ex.subscribe() for _ in range(4)]

    def publish(n: int) -> None:
        for i in range(250):
            ex.publish("default", topics.TASK_START, task_pb2.TaskStart(container_id=f"{n}-{i}"))

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sub in subs:
        got = [unpack(e.event).container_id for e in drain(sub, 1000)]
        assert len(set(got)) == 1000
        for n in range(4):  # each publisher's events stay in its order
            mine = [g for g in got if g.startswith(f"{n}-")]
            assert mine == [f"{n}-{i}" for i in range(250)]
    ex.close()


def test_every_topic_has_a_valid_name_and_a_payload_type() -> None:
    names = [v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)]
    for topic in names:
        if topic.startswith("/"):
            assert topics.validate_topic(topic) == topic
            assert topic in topics.PAYLOADS, topic
