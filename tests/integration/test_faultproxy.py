"""The fault-injecting proxy, against a local echo server and the real MariaDB."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

from tests.integration.daemon import free_port
from tests.integration.faultproxy import FaultProxy, Mode

IO_TIMEOUT = 5.0
# Long enough that a forwarded byte would have arrived on loopback; short enough to stay fast.
SILENCE = 1.0


def unavailable(reason: str) -> NoReturn:
    """Fail when the databases are required, skip otherwise."""
    if os.environ.get("SOCKMAPD_REQUIRE_DB") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def wait_until(predicate: Callable[[], bool], timeout: float = IO_TIMEOUT) -> None:
    """Poll predicate until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.01)


def connect(port: int) -> socket.socket:
    """Open a client connection to the proxy on loopback."""
    return socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read size bytes or fail on EOF."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(65536, size - len(data)))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def recv_until_eof(sock: socket.socket) -> bytes:
    """Read until the peer closes."""
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def assert_silent(sock: socket.socket, seconds: float = SILENCE) -> None:
    """Assert that nothing (not even EOF) arrives for a while."""
    sock.settimeout(seconds)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(IO_TIMEOUT)


def assert_reset(sock: socket.socket) -> None:
    """Assert that the connection was torn down under the client."""
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return
    assert data == b""


class _EchoHandler(socketserver.BaseRequestHandler):
    server: _EchoServer

    def handle(self) -> None:
        self.request.settimeout(IO_TIMEOUT * 2)
        try:
            while chunk := self.request.recv(65536):
                self.server.arrivals.append(time.monotonic())
                self.request.sendall(chunk)
            self.request.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.arrivals: list[float] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def echo() -> Iterator[_EchoServer]:
    """A threaded echo server on loopback that half-closes when the client does."""
    server = _EchoServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(IO_TIMEOUT)


@pytest.fixture
def echo_proxy(echo: _EchoServer) -> Iterator[FaultProxy]:
    """A proxy in front of the echo server."""
    with FaultProxy("127.0.0.1", echo.port) as proxy:
        yield proxy


def _mariadb_address() -> tuple[str, int]:
    url = os.environ.get("SOCKMAPD_TEST_MYSQL_URL")
    if url:
        parts = urlsplit(url)
        return parts.hostname or "127.0.0.1", parts.port or 3306
    return "127.0.0.1", 3306


@pytest.fixture(scope="module")
def mariadb() -> tuple[str, int]:
    """Host and port of a MariaDB that sends its greeting."""
    host, port = _mariadb_address()
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(2)
            greeting = sock.recv(4096)
    except OSError as exc:
        unavailable(f"MariaDB not reachable on {host}:{port}: {exc}")
    if not greeting:
        unavailable(f"MariaDB on {host}:{port} closed without a greeting")
    return host, port


@pytest.fixture
def db_proxy(mariadb: tuple[str, int]) -> Iterator[FaultProxy]:
    """A proxy in front of the real MariaDB."""
    with FaultProxy(*mariadb) as proxy:
        yield proxy


def read_greeting(sock: socket.socket) -> bytes:
    """Read one MariaDB packet: a 3-byte length, a sequence byte and the payload."""
    header = recv_exactly(sock, 4)
    payload = recv_exactly(sock, int.from_bytes(header[:3], "little"))
    # Protocol version 10 is the handshake; 0xff would be an error packet.
    assert payload[0] == 10, payload[:64]
    return payload


# -- against the real MariaDB --------------------------------------------------


def test_pass_forwards_the_mariadb_greeting(db_proxy: FaultProxy) -> None:
    """In PASS mode the server greeting arrives through the proxy."""
    with connect(db_proxy.port) as sock:
        assert b"mariadb" in read_greeting(sock).lower()
    assert db_proxy.connections_total == 1
    wait_until(lambda: db_proxy.active_connections == 0)


def test_blackhole_accepts_but_never_answers_then_heals(db_proxy: FaultProxy) -> None:
    """BLACKHOLE: connect succeeds, nothing arrives; back to PASS the greeting follows."""
    db_proxy.set_mode(Mode.BLACKHOLE)
    with connect(db_proxy.port) as sock:
        assert_silent(sock)
        db_proxy.set_mode(Mode.PASS)
        read_greeting(sock)


def test_refuse_closes_the_port_and_rebinds_the_same_one(db_proxy: FaultProxy) -> None:
    """REFUSE: connects are refused and open connections end; PASS listens on the same port."""
    port = db_proxy.port
    existing = connect(port)
    read_greeting(existing)
    db_proxy.set_mode(Mode.REFUSE)
    with existing:
        existing.settimeout(IO_TIMEOUT)
        assert_reset(existing)
    with pytest.raises(ConnectionRefusedError):
        connect(port).close()
    db_proxy.set_mode(Mode.PASS)
    assert db_proxy.port == port
    with connect(port) as sock:
        read_greeting(sock)


def test_delay_holds_back_the_greeting(db_proxy: FaultProxy) -> None:
    """DELAY: the greeting arrives after about the delay, not at once."""
    delay = 0.5
    db_proxy.set_mode(Mode.DELAY, delay=delay)
    with connect(db_proxy.port) as sock:
        started = time.monotonic()
        read_greeting(sock)
        elapsed = time.monotonic() - started
    assert delay * 0.9 <= elapsed < delay + 2.0, elapsed


def test_cut_resets_open_connections_and_passes_new_ones(db_proxy: FaultProxy) -> None:
    """CUT: an open connection is reset; a new one gets its greeting."""
    with connect(db_proxy.port) as sock:
        read_greeting(sock)
        db_proxy.set_mode(Mode.CUT)
        assert_reset(sock)
    with connect(db_proxy.port) as sock:
        read_greeting(sock)
    assert db_proxy.mode is Mode.CUT


# -- against a local echo server ----------------------------------------------


def test_pass_forwards_large_payloads_both_ways(echo_proxy: FaultProxy) -> None:
    """Bytes arrive intact and in order in both directions, with back-pressure."""
    payload = os.urandom(4 * 1024 * 1024)
    with connect(echo_proxy.port) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(sock, len(payload)) == payload
        sender.join(IO_TIMEOUT)


def test_half_close_is_forwarded(echo_proxy: FaultProxy) -> None:
    """A client's shutdown(SHUT_WR) reaches the server, and the server's EOF comes back."""
    with connect(echo_proxy.port) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == b"last words"


def test_delay_applies_only_to_the_upstream_to_client_direction(
    echo: _EchoServer, echo_proxy: FaultProxy
) -> None:
    """Client bytes reach the server at once; the answer waits for the delay."""
    delay = 0.5
    echo_proxy.set_mode(Mode.DELAY, delay=delay)
    with connect(echo_proxy.port) as sock:
        sent = time.monotonic()
        sock.sendall(b"ping")
        assert recv_exactly(sock, 4) == b"ping"
        answered = time.monotonic()
    assert echo.arrivals[0] - sent < delay / 2
    assert delay * 0.9 <= answered - sent < delay + 2.0


def test_delay_keeps_order_and_returning_to_pass_releases_queued_bytes(
    echo_proxy: FaultProxy,
) -> None:
    """Delayed chunks stay in order; leaving DELAY delivers what is queued without waiting."""
    echo_proxy.set_mode(Mode.DELAY, delay=30.0)
    with connect(echo_proxy.port) as sock:
        for index in range(20):
            sock.sendall(b"%02d" % index)
        assert_silent(sock, 0.3)
        echo_proxy.set_mode(Mode.PASS)
        expected = b"".join(b"%02d" % index for index in range(20))
        assert recv_exactly(sock, len(expected)) == expected


def test_blackhole_stalls_an_open_connection_in_both_directions(
    echo: _EchoServer, echo_proxy: FaultProxy
) -> None:
    """An open connection stops forwarding but stays open; PASS resumes it without loss."""
    with connect(echo_proxy.port) as sock:
        sock.sendall(b"a")
        assert recv_exactly(sock, 1) == b"a"
        echo_proxy.set_mode(Mode.BLACKHOLE)
        sock.sendall(b"b")
        assert_silent(sock)
        assert len(echo.arrivals) == 1
        assert echo_proxy.active_connections == 1
        echo_proxy.set_mode(Mode.PASS)
        assert recv_exactly(sock, 1) == b"b"


def test_cut_all_keeps_the_mode(echo_proxy: FaultProxy) -> None:
    """cut_all resets every connection and leaves the mode alone."""
    socks = [connect(echo_proxy.port) for _ in range(3)]
    try:
        for sock in socks:
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x"
        assert echo_proxy.active_connections == 3
        echo_proxy.cut_all()
        for sock in socks:
            assert_reset(sock)
    finally:
        for sock in socks:
            sock.close()
    assert echo_proxy.mode is Mode.PASS
    wait_until(lambda: echo_proxy.active_connections == 0)
    assert echo_proxy.connections_total == 3
    with connect(echo_proxy.port) as sock:
        sock.sendall(b"y")
        assert recv_exactly(sock, 1) == b"y"


def test_upstream_connect_failure_closes_the_client() -> None:
    """With nothing listening upstream the client sees its connection end."""
    with FaultProxy("127.0.0.1", free_port()) as proxy, connect(proxy.port) as sock:
        assert_reset(sock)
        wait_until(lambda: proxy.active_connections == 0)


def test_stop_closes_everything(echo: _EchoServer) -> None:
    """stop() ends open connections and the listener, and can be called twice."""
    proxy = FaultProxy("127.0.0.1", echo.port).start()
    port = proxy.port
    with connect(port) as sock:
        sock.sendall(b"z")
        assert recv_exactly(sock, 1) == b"z"
        proxy.stop()
        assert_reset(sock)
    with pytest.raises(ConnectionRefusedError):
        connect(port).close()
    proxy.stop()
