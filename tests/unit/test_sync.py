"""The parent/child protocol framing."""

from __future__ import annotations

import socket

import pytest

from oci_runtime.sync import Channel, Msg, SyncError


def pair() -> tuple[Channel, Channel]:
    a, b = socket.socketpair()
    return Channel(a), Channel(b)


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
    with pytest.raises(SyncError, match="exited"):
        b.recv()
