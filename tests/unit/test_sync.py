"""The parent/child protocol framing."""

from __future__ import annotations

import pytest

from oci_runtime.sync import Channel, Msg, SyncError, pipes


def pair() -> tuple[Channel, Channel]:
    return pipes()


def test_messages_keep_order_and_payload() -> None:
    a, b = pair()
    a.send(Msg.INIT_PID, pid=42)
    a.send(Msg.GO, state={"id": "x"})
    assert b.recv() == (Msg.INIT_PID, {"pid": 42})
    assert b.expect(Msg.GO) == {"state": {"id": "x"}}
    a.close()
    b.close()


def test_error_message_is_raised() -> None:
    a, b = pair()
    a.send(Msg.ERROR, message="mount proc on /proc: Permission denied")
    with pytest.raises(SyncError, match="Permission denied"):
        b.expect(Msg.READY)


def test_unexpected_message() -> None:
    a, b = pair()
    a.send(Msg.HOOKS)
    with pytest.raises(SyncError, match="expected ready, got hooks"):
        b.expect(Msg.READY)


def test_peer_gone() -> None:
    a, b = pair()
    a.close()
    # b's own copy of the write end of the pipe it reads is a's; once a closed it, EOF.
    with pytest.raises(SyncError, match="exited"):
        b.recv()


def test_large_message() -> None:
    a, b = pair()
    big = "x" * 200_000
    import threading

    t = threading.Thread(target=lambda: a.send(Msg.GO, state={"blob": big}))
    t.start()
    assert b.expect(Msg.GO)["state"]["blob"] == big
    t.join()
    a.close()
    b.close()
