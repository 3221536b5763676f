"""Errors across the wire: errdefs → gRPC status in the daemon's interceptor (for every
kind of handler), and status → the same errdefs class in the client that pyctr uses.

An in-process grpc server with the daemon's interceptors and raw-bytes handlers stands in
for the services, so each case picks exactly what the handler raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import grpc
import pytest

from containerd_py import errdefs
from containerd_py.client import Client, ConnectError, DeadlineExceeded, translate
from containerd_py.interceptors import ErrorInterceptor, status_for
from containerd_py.namespaces import NamespaceInterceptor

SERVICE = "test.Probe"

ERRDEFS = [
    (errdefs.NotFound, grpc.StatusCode.NOT_FOUND),
    (errdefs.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errdefs.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errdefs.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errdefs.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errdefs.Internal, grpc.StatusCode.INTERNAL),
    (errdefs.PyContainerdError, grpc.StatusCode.UNKNOWN),
]


class Probe:
    """What the handlers do; each test sets `action`."""

    def __init__(self) -> None:
        self.action: Callable[[grpc.ServicerContext], object] = lambda ctx: None

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.action(context)
        return b"ok"

    def stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"first"
        self.action(context)
        yield b"second"

    def client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        for _ in requests:
            pass
        self.action(context)
        return b"ok"

    def bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from requests
        self.action(context)


@pytest.fixture
def probe(short_tmp) -> Iterator[tuple[Probe, grpc.Channel, str]]:
    p = Probe()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(p.unary),
        "Stream": grpc.unary_stream_rpc_method_handler(p.stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(p.client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(p.bidi),
    }
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(
        ThreadPoolExecutor(max_workers=4),
        interceptors=[ErrorInterceptor(), NamespaceInterceptor()],
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    address = str(short_tmp / "probe.sock")
    server.add_insecure_port("unix:" + address)
    server.start()
    channel = grpc.insecure_channel("unix:" + address)
    try:
        yield p, channel, address
    finally:
        channel.close()
        server.stop(0).wait()


def call_all_kinds(channel: grpc.Channel) -> dict[str, grpc.RpcError]:
    """Each kind of call, the error it ended with."""
    errors = {}
    unary = channel.unary_unary(f"/{SERVICE}/Unary")
    stream = channel.unary_stream(f"/{SERVICE}/Stream")
    client_stream = channel.stream_unary(f"/{SERVICE}/ClientStream")
    bidi = channel.stream_stream(f"/{SERVICE}/Bidi")
    for name, run in [
        ("unary", lambda: unary(b"x", timeout=5)),
        ("stream", lambda: list(stream(b"x", timeout=5))),
        ("client_stream", lambda: client_stream(iter([b"a", b"b"]), timeout=5)),
        ("bidi", lambda: list(bidi(iter([b"a"]), timeout=5))),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            run()
        errors[name] = err.value
    return errors


@pytest.mark.parametrize(("cls", "code"), ERRDEFS)
def test_errdefs_map_to_their_status_for_every_kind_of_handler(probe, cls, code) -> None:
    p, channel, _ = probe

    def fail(ctx):
        raise cls(f"{cls.__name__} happened")

    p.action = fail
    for kind, err in call_all_kinds(channel).items():
        assert err.code() is code, kind
        assert err.details() == f"{cls.__name__} happened", kind


def test_unexpected_exception_is_internal_with_method_and_logged(probe, caplog) -> None:
    p, channel, _ = probe

    def fail(ctx):
        raise ValueError("boom")

    p.action = fail
    with caplog.at_level(logging.ERROR, logger="containerd_py.interceptors"):
        errors = call_all_kinds(channel)
    for kind, err in errors.items():
        assert err.code() is grpc.StatusCode.INTERNAL, kind
        assert "internal error in /test.Probe/" in err.details()
        assert err.details().endswith("ValueError: boom")
    # Logged with the traceback, where the operator can find the bug.
    assert "Traceback" in caplog.text and "raise ValueError" in caplog.text


def test_a_stream_keeps_what_it_sent_before_failing(probe) -> None:
    p, channel, _ = probe

    def fail(ctx):
        raise errdefs.NotFound("gone")

    p.action = fail
    got = []
    with pytest.raises(grpc.RpcError) as err:
        for msg in channel.unary_stream(f"/{SERVICE}/Stream")(b"x", timeout=5):
            got.append(msg)
    assert got == [b"first"]
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


def test_a_status_the_handler_chose_is_kept(probe) -> None:
    p, channel, _ = probe
    p.action = lambda ctx: ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "not you")
    for kind, err in call_all_kinds(channel).items():
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED, kind
        assert err.details() == "not you"


def test_not_implemented_is_unimplemented(probe) -> None:
    p, channel, _ = probe

    def fail(ctx):
        raise NotImplementedError

    p.action = fail
    err = call_all_kinds(channel)["unary"]
    assert err.code() is grpc.StatusCode.UNIMPLEMENTED


def test_status_for_is_pure() -> None:
    assert status_for(errdefs.NotFound("x")) == (grpc.StatusCode.NOT_FOUND, "x")
    assert status_for(errdefs.NotFound()) == (grpc.StatusCode.NOT_FOUND, "NotFound")
    assert status_for(KeyError("k"), "/a/B") == (
        grpc.StatusCode.INTERNAL,
        "internal error in /a/B: KeyError: 'k'",
    )

    class Weird(errdefs.PyContainerdError):
        grpc_code_name = "NOT_A_CODE"

    assert status_for(Weird("w"))[0] is grpc.StatusCode.INTERNAL


# -- the client side: status → errdefs ---------------------------------------------------


@pytest.mark.parametrize(("cls", "code"), ERRDEFS)
def test_client_raises_the_class_the_daemon_raised(probe, cls, code) -> None:
    p, _channel, address = probe

    def fail(ctx):
        raise cls("why")

    p.action = fail
    with Client(address) as client, pytest.raises(errdefs.PyContainerdError) as err:
        client.call(client.channel.unary_unary(f"/{SERVICE}/Unary"), b"x")
    assert type(err.value) is cls
    assert str(err.value) == "why"


def test_client_never_leaks_grpc_errors(probe) -> None:
    p, _, address = probe
    p.action = lambda ctx: ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "not you")
    with Client(address) as client:
        with pytest.raises(errdefs.PyContainerdError, match="not you") as err:
            client.call(client.channel.unary_unary(f"/{SERVICE}/Unary"), b"x")
        assert not isinstance(err.value, grpc.RpcError)
        with pytest.raises(errdefs.PyContainerdError, match="does not implement"):
            client.call(client.channel.unary_unary(f"/{SERVICE}/Missing"), b"x")


def test_client_deadline(probe) -> None:
    p, _, address = probe
    import time

    p.action = lambda ctx: time.sleep(1)
    with (
        Client(address, timeout=0.2) as client,
        pytest.raises(DeadlineExceeded, match="did not answer"),
    ):
        client.call(client.channel.unary_unary(f"/{SERVICE}/Unary"), b"x")


def test_client_connect_errors(short_tmp) -> None:
    missing = str(short_tmp / "none.sock")
    with Client(missing, timeout=2) as client, pytest.raises(ConnectError) as err:
        client.version()
    assert str(err.value) == (
        f"cannot connect to pycontainerd at {missing}: No such file or directory"
    )
    assert isinstance(err.value, errdefs.Unavailable)

    import socket

    stale = str(short_tmp / "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()  # bound, never listening: what a killed daemon leaves
    with Client(stale, timeout=2) as client, pytest.raises(ConnectError, match="refused"):
        client.version()


def test_translate_of_an_unknown_code() -> None:
    class Fake(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.DATA_LOSS

        def details(self):
            return "bits fell out"

    err = translate(Fake(), "/x.sock")
    assert type(err) is errdefs.PyContainerdError
    assert str(err) == "bits fell out"


def test_events_waits_for_the_subscription_only_so_long(short_tmp) -> None:
    """A daemon that never confirms a Subscribe (hung, starved) cannot block the caller."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    def never_confirms(request, context):
        time.sleep(3)
        yield from ()

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "pycontainerd.services.events.v1.Events",
                {"Subscribe": grpc.unary_stream_rpc_method_handler(never_confirms)},
            )
        ]
    )
    address = str(short_tmp / "hung.sock")
    server.add_insecure_port("unix:" + address)
    server.start()
    try:
        started = time.monotonic()
        with (
            Client(address, timeout=0.3) as client,
            pytest.raises(DeadlineExceeded, match="did not confirm the subscription"),
        ):
            client.events()
        assert time.monotonic() - started < 2
    finally:
        server.stop(0).wait()
