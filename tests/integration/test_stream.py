"""The connection protocol over real TCP and unix sockets, on uvloop and on asyncio's loop."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from sockmapd.config import ServerConfig, parse_config
from sockmapd.lookup import Router
from sockmapd.metrics import Metrics
from sockmapd.protocol.netstring import NetstringDecoder
from sockmapd.server.access import AccessList
from sockmapd.server.connection import SocketmapProtocol
from sockmapd.server.daemon import Generation, build_generation
from tests.integration.conftest import DaemonFactory, make_sqlite, toml_config
from tests.integration.daemon import netstring

# The daemon runs on uvloop when installed, else on asyncio's own loop: both are tested.
LOOPS = [pytest.param({"use_uvloop": True}, id="uvloop"), pytest.param({}, id="asyncio")]


class _Service:
    """The parts of the daemon a connection uses, over a real generation."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.stopping = False
        self.metrics: Metrics | None = None
        self.connections: list[SocketmapProtocol] = []
        self.lost = asyncio.Event()

    @property
    def router(self) -> Router:
        return self.generation.router

    @property
    def settings(self) -> ServerConfig:
        return self.generation.config.server

    @property
    def access(self) -> AccessList:
        return self.generation.access

    def closed(self, connection: SocketmapProtocol) -> None:
        self.lost.set()


def _generation(tmp_path: Path, extra_server: str = "") -> Generation:
    db = make_sqlite(tmp_path / "test.sqlite3")
    text = toml_config(db, ["tcp://127.0.0.1:1"], extra_server)
    return build_generation(parse_config(text, source="test"))


async def _serve_one(kind: str, tmp_path: Path, service: _Service) -> socket.socket:
    """Connect a client and serve its accepted socket with the protocol; return the client."""
    if kind == "tcp":
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname())
    else:
        path = str(tmp_path / "s.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(path)
    accepted, _ = listener.accept()
    listener.close()
    accepted.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: SocketmapProtocol(service), accepted)
    return client


async def _read_all(client: socket.socket) -> bytes:
    client.settimeout(10)
    received = b""
    while True:
        # In a thread: the loop must run to answer.
        chunk = await anyio.to_thread.run_sync(client.recv, 65536)
        if not chunk:
            return received
        received += chunk


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_requests_then_end_of_input_are_all_answered_in_order(
    kind: str, loop: dict[str, bool], tmp_path: Path
) -> None:
    async def main() -> None:
        service = _Service(_generation(tmp_path))
        client = await _serve_one(kind, tmp_path, service)
        # Database lookups and answers known at once (an unknown map) interleaved.
        client.sendall(
            netstring(b"recipient alice@example.com")
            + netstring(b"nosuchmap x")
            + netstring(b"recipient nobody@example.com")
            + netstring(b"nosuchmap y")
        )
        client.shutdown(socket.SHUT_WR)
        received = await _read_all(client)
        client.close()
        replies = NetstringDecoder(10_000).feed(received)
        assert len(replies) == 4
        assert replies[0] == b"OK alice@example.com"
        assert replies[1].startswith(b"TEMP ")
        assert replies[2] == b"NOTFOUND "
        assert replies[3].startswith(b"TEMP ")
        await service.generation.databases.dispose()

    anyio.run(main, backend="asyncio", backend_options=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_split_into_single_bytes_is_answered(
    loop: dict[str, bool], tmp_path: Path
) -> None:
    async def main() -> None:
        service = _Service(_generation(tmp_path))
        client = await _serve_one("tcp", tmp_path, service)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in netstring(b"recipient bob@example.com"):
            client.send(bytes([byte]))
            await anyio.lowlevel.checkpoint()
        client.shutdown(socket.SHUT_WR)
        assert await _read_all(client) == netstring(b"OK bob@example.com")
        client.close()
        await service.generation.databases.dispose()

    anyio.run(main, backend="asyncio", backend_options=loop)


async def _ask(client: socket.socket, payload: bytes) -> bytes:
    """Send one request and return its reply (the client waits, as Postfix does)."""
    client.settimeout(10)
    client.sendall(netstring(payload))
    decoder = NetstringDecoder(10_000)
    while True:
        chunk = await anyio.to_thread.run_sync(client.recv, 65536)
        assert chunk, "the server closed the connection"
        replies = decoder.feed(chunk)
        if replies:
            assert len(replies) == 1
            return replies[0]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_keeps_one_lookup_task_until_it_closes(
    loop: dict[str, bool], tmp_path: Path
) -> None:
    async def main() -> None:
        service = _Service(_generation(tmp_path))
        before = asyncio.all_tasks()
        client = await _serve_one("tcp", tmp_path, service)
        # An answer known at once (an unknown map) needs no task.
        assert (await _ask(client, b"nosuchmap x")).startswith(b"TEMP ")
        assert asyncio.all_tasks() - before == set()
        # The first request that needs the database starts the connection's task.
        assert await _ask(client, b"recipient alice@example.com") == b"OK alice@example.com"
        first = asyncio.all_tasks() - before
        assert len(first) == 1
        # The next lookups run in that same task.
        assert await _ask(client, b"recipient bob@example.com") == b"OK bob@example.com"
        assert await _ask(client, b"recipient nobody@example.com") == b"NOTFOUND "
        assert asyncio.all_tasks() - before == first
        (task,) = first
        assert not task.done()
        client.close()
        with anyio.fail_after(10):
            await service.lost.wait()
        # The connection's end ends its task.
        await asyncio.wait({task}, timeout=10)
        assert task.cancelled()
        await service.generation.databases.dispose()

    anyio.run(main, backend="asyncio", backend_options=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_frame_error_answers_earlier_frames_then_perm_and_releases_the_socket(
    loop: dict[str, bool], tmp_path: Path
) -> None:
    async def main() -> None:
        service = _Service(_generation(tmp_path))
        client = await _serve_one("tcp", tmp_path, service)
        client.sendall(netstring(b"recipient alice@example.com") + b"x:")
        received = await _read_all(client)
        assert received == netstring(b"OK alice@example.com") + netstring(
            b"PERM invalid netstring length header"
        )
        with anyio.fail_after(10):
            await service.lost.wait()
        client.close()
        await service.generation.databases.dispose()

    anyio.run(main, backend="asyncio", backend_options=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_reading_pauses_while_the_client_does_not_read(
    loop: dict[str, bool], tmp_path: Path
) -> None:
    async def main() -> None:
        service = _Service(_generation(tmp_path))
        client = await _serve_one("tcp", tmp_path, service)
        client.setblocking(False)
        # Answers of 20 bytes to 36-byte requests that are never read: the
        # server stops reading once its replies are unread, so the client's
        # sending blocks after a bounded number of bytes.
        request = netstring(b"nosuchmap " + b"k" * 20)
        chunk = request * 2000
        sent = 0
        with anyio.fail_after(60):
            while True:
                try:
                    sent += client.send(chunk)
                except BlockingIOError:
                    await anyio.sleep(0.2)
                    try:
                        sent += client.send(chunk)
                    except BlockingIOError:
                        break
                await anyio.lowlevel.checkpoint()
        # Far less than the 100 MB a server reading without bound would take.
        assert sent < 64 * 1024 * 1024
        client.close()
        await service.generation.databases.dispose()

    anyio.run(main, backend="asyncio", backend_options=loop)


def _socket_fds(pid: int) -> int:
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                count += 1
        except FileNotFoundError:
            continue
    return count


def test_server_decided_close_of_a_non_reading_client_releases_its_socket_at_once(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """The send deadline closes a client that does not read; its descriptor must go with it."""
    with sqlite3.connect(tmp_path / "test.sqlite3") as conn:
        conn.execute("INSERT INTO big VALUES ('large', ?)", ("y" * 60_000,))
    conn.close()
    daemon = start_daemon("request_timeout = 1.0", log_level="debug")
    assert daemon.port is not None
    pid = daemon.process.pid
    baseline = _socket_fds(pid)
    hog = socket.create_connection(("127.0.0.1", daemon.port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setblocking(False)
    try:
        requests = netstring(b"big large") * 200
        sent = 0
        deadline = time.monotonic() + 20
        while sent < len(requests) and time.monotonic() < deadline:
            try:
                sent += hog.send(requests[sent:])
            except BlockingIOError:
                time.sleep(0.05)
        # The client never reads: the server closes it at its send deadline.
        deadline = time.monotonic() + 20
        while "client does not read" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        # Closed means aborted: no descriptor is kept to flush unread replies.
        deadline = time.monotonic() + 5
        while _socket_fds(pid) > baseline:
            assert time.monotonic() < deadline, "the closed connection's socket is still open"
            time.sleep(0.05)
        assert daemon.process.poll() is None
    finally:
        hog.close()
