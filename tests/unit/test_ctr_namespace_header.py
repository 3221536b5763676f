"""The namespace of a call: name validation, and the `containerd-namespace` header read
into a per-call ContextVar even though grpc reuses its threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from containerd_py import namespaces
from containerd_py.errdefs import InvalidArgument
from containerd_py.interceptors import ErrorInterceptor
from containerd_py.namespaces import METADATA_KEY, NamespaceInterceptor

VALID = ["default", "pydocker", "k8s.io", "a", "A1", "my-ns_1.x", "0", "a" * 76]
INVALID = ["", "-a", "a-", ".a", "a..b", "a--b", "a_-b", "a/b", "a b", "ü", "a" * 77, "a:b"]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(name: str) -> None:
    assert namespaces.validate(name) == name


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        namespaces.validate(name)


def test_current_requires_a_namespace() -> None:
    assert namespaces.get() is None
    with pytest.raises(InvalidArgument, match="namespace is required"):
        namespaces.current()
    with namespaces.using("web"):
        assert namespaces.current() == "web"
        with namespaces.using(""):
            assert namespaces.get() is None  # empty is what an unset client sends
    with namespaces.using("bad/ns"), pytest.raises(InvalidArgument, match="invalid namespace"):
        namespaces.current()


def test_from_metadata() -> None:
    assert namespaces.from_metadata([("x", "1"), (METADATA_KEY, "web")]) == "web"
    assert namespaces.from_metadata([(METADATA_KEY, b"web")]) == "web"
    assert namespaces.from_metadata(None) is None


# -- through a real grpc server ----------------------------------------------------------


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    # Long enough that concurrent calls overlap on the pool's few threads.
    first = namespaces.current()
    time.sleep(0.01)
    return f"{first}:{namespaces.current()}".encode()


def _stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for _ in range(3):
        yield namespaces.current().encode()
        time.sleep(0.005)


@pytest.fixture
def channel(short_tmp) -> Iterator[grpc.Channel]:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=3),
        interceptors=[ErrorInterceptor(), NamespaceInterceptor()],
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Ns",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(_unary),
                    "Stream": grpc.unary_stream_rpc_method_handler(_stream),
                },
            )
        ]
    )
    address = "unix:" + str(short_tmp / "ns.sock")
    server.add_insecure_port(address)
    server.start()
    ch = grpc.insecure_channel(address)
    try:
        yield ch
    finally:
        ch.close()
        server.stop(0).wait()


def test_handlers_see_the_callers_namespace(channel: grpc.Channel) -> None:
    unary = channel.unary_unary("/test.Ns/Unary")
    assert unary(b"", metadata=[(METADATA_KEY, "web")], timeout=5) == b"web:web"
    stream = channel.unary_stream("/test.Ns/Stream")
    assert list(stream(b"", metadata=[(METADATA_KEY, "k8s.io")], timeout=5)) == [b"k8s.io"] * 3


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([], "namespace is required"),
        ([(METADATA_KEY, "")], "namespace is required"),
        ([(METADATA_KEY, "bad/ns")], "invalid namespace name 'bad/ns'"),
    ],
)
def test_missing_or_invalid_namespace_is_invalid_argument(channel, metadata, message) -> None:
    for call in (
        lambda: channel.unary_unary("/test.Ns/Unary")(b"", metadata=metadata, timeout=5),
        lambda: list(channel.unary_stream("/test.Ns/Stream")(b"", metadata=metadata, timeout=5)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()


def test_concurrent_calls_never_see_each_others_namespace(channel: grpc.Channel) -> None:
    """Many more calls than pool threads, with and without the header: a value leaking
    from one call to the next on a reused thread would show up as a mismatch."""
    unary = channel.unary_unary("/test.Ns/Unary")
    stream = channel.unary_stream("/test.Ns/Stream")
    mismatches: list[str] = []

    def one(i: int) -> None:
        if i % 5 == 0:
            try:
                unary(b"", timeout=10)
                mismatches.append(f"{i}: no namespace, but the call succeeded")
            except grpc.RpcError as e:
                if e.code() is not grpc.StatusCode.INVALID_ARGUMENT:
                    mismatches.append(f"{i}: {e.code()}")
            return
        ns = f"ns{i}"
        md = [(METADATA_KEY, ns)]
        if i % 2:
            got = unary(b"", metadata=md, timeout=10)
            if got != f"{ns}:{ns}".encode():
                mismatches.append(f"{i}: {got!r}")
        else:
            got_stream = list(stream(b"", metadata=md, timeout=10))
            if got_stream != [ns.encode()] * 3:
                mismatches.append(f"{i}: {got_stream!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []
