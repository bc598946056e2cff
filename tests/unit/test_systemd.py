"""sd_notify datagrams and sockets inherited through LISTEN_FDS."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sockmapd.server import systemd


def test_notify_sends_a_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        systemd.notify("READY=1")
        assert receiver.recv(100) == b"READY=1"


def test_notify_without_socket_or_with_a_dead_one_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    systemd.notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    systemd.notify("STOPPING=1")


def test_no_inherited_sockets_for_another_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert systemd.inherited_sockets() == []


def test_inherited_sockets_start_at_fd_3(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        saved: int | None = os.dup(3)
    except OSError:
        saved = None
    try:
        os.dup2(listener.fileno(), 3)
        monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
        monkeypatch.setenv("LISTEN_FDS", "1")
        sockets = systemd.inherited_sockets()
        assert [s.getsockname() for s in sockets] == [listener.getsockname()]
        assert "LISTEN_FDS" not in os.environ
        for sock in sockets:
            sock.detach()
    finally:
        if saved is None:
            os.close(3)
        else:
            os.dup2(saved, 3)
            os.close(saved)
        listener.close()
