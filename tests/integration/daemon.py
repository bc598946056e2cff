"""Run a real sockmapd process for tests and talk to it over real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 15.0


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def netstring(payload: bytes) -> bytes:
    """Frame payload as a netstring."""
    return str(len(payload)).encode() + b":" + payload + b","


class SocketmapClient:
    """A blocking client on one connection; reads exactly one netstring per reply."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    @classmethod
    def tcp(cls, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> SocketmapClient:
        """Connect over TCP."""
        return cls(socket.create_connection((host, port), timeout=timeout))

    @classmethod
    def unix(cls, path: str, timeout: float = 10.0) -> SocketmapClient:
        """Connect over a unix socket."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        return cls(sock)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.sendall(data)

    def read_reply(self) -> bytes:
        """Return the next reply payload; raise EOFError if the server closed first."""
        while True:
            colon = self._buffer.find(b":")
            if colon > 0:
                length = int(self._buffer[:colon])
                end = colon + 1 + length
                if len(self._buffer) > end:
                    assert self._buffer[end : end + 1] == b",", self._buffer
                    payload = self._buffer[colon + 1 : end]
                    self._buffer = self._buffer[end + 1 :]
                    return payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self._buffer)
            self._buffer += chunk

    def ask(self, map_name: str, key: str | bytes) -> bytes:
        """Send one request and return its reply payload."""
        raw_key = key.encode() if isinstance(key, str) else key
        self.send_raw(netstring(map_name.encode() + b" " + raw_key))
        return self.read_reply()

    def at_eof(self) -> bool:
        """Return True when the server has closed the connection (no more bytes)."""
        return self._buffer == b"" and self.sock.recv(1) == b""

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


class Daemon:
    """A sockmapd process started from a config file."""

    def __init__(self, config_path: Path, port: int | None, unix_path: str | None = None) -> None:
        self.config_path = config_path
        self.port = port
        self.unix_path = unix_path
        self.log_path = config_path.with_suffix(".stderr")
        self._log = self.log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sockmapd", "-c", str(config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sockmapd exited {self.process.returncode}:\n{self.log()}")
            try:
                # Every listener must answer, not just the first one bound.
                clients = []
                if self.port is not None:
                    clients.append(SocketmapClient.tcp(self.port))
                if self.unix_path is not None:
                    clients.append(SocketmapClient.unix(self.unix_path))
            except OSError:
                time.sleep(0.05)
                continue
            for client in clients:
                client.close()
            return
        raise RuntimeError(f"sockmapd did not start listening:\n{self.log()}")

    def client(self, timeout: float = 10.0) -> SocketmapClient:
        """Open a new connection to the daemon's first listener."""
        if self.port is not None:
            return SocketmapClient.tcp(self.port, timeout=timeout)
        assert self.unix_path is not None
        return SocketmapClient.unix(self.unix_path, timeout=timeout)

    def log(self) -> str:
        """Return everything the daemon has written so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Send a signal to the daemon."""
        self.process.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM the daemon and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@dataclass
class CheckingClient:
    """Lookups on one connection in a loop, each answer compared with the exact expected one."""

    port: int
    stop: threading.Event
    users: Sequence[str]
    offset: int = 0
    asked: int = 0
    wrong: list[str] = field(default_factory=list)

    def run(self) -> None:
        """Ask found and missing keys in turn until stopped; record the first wrong answer."""
        expected = [(b"recipient " + u.encode(), b"OK " + u.encode()) for u in self.users]
        expected += [
            (b"recipient absent%d@example.com" % i, b"NOTFOUND ") for i in range(len(self.users))
        ]
        expected.append(
            (b"blacklist hello@buydirect4u.co.uk", b"OK REJECT Sender identified as spammer")
        )
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10.0) as sock:
                buffer = b""
                while not self.stop.is_set() and self.asked < 1_000_000:
                    request, answer = expected[(self.offset + self.asked) % len(expected)]
                    sock.sendall(netstring(request))
                    want = netstring(answer)
                    while len(buffer) < len(want):
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise EOFError(buffer)
                        buffer += chunk
                    got, buffer = buffer[: len(want)], buffer[len(want) :]
                    self.asked += 1
                    if got != want:
                        self.wrong.append(f"{request!r}: {got!r} instead of {want!r}")
                        return
        except Exception as exc:
            self.wrong.append(f"connection failed after {self.asked} lookups: {exc!r}")
