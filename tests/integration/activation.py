"""Start sockmapd as systemd does: sockets on fds 3 and 4 (LISTEN_FDS), NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Activated:
    """A sockmapd started on passed sockets, and what the test needs to talk to it."""

    process: subprocess.Popen[bytes]
    tcp_port: int
    unix_path: str
    notify: socket.socket
    log_path: Path

    def next_notification(self) -> bytes:
        """Return the next sd_notify datagram the daemon sent."""
        return self.notify.recv(100)


@contextmanager
def socket_activated(config: Path, tmp_path: Path, timeout: float) -> Iterator[Activated]:
    """Run sockmapd -c config on a TCP and a unix socket it inherits; kill it if left running."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    unix_path = str(tmp_path / "act.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(unix_path)
    unix.listen()
    notify_path = str(tmp_path / "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(timeout)

    def place_fds() -> None:
        # As systemd does: the passed sockets are fds 3, 4, ... in the new process.
        os.dup2(tcp.fileno(), 3)
        os.dup2(unix.fileno(), 4)

    env = dict(os.environ, LISTEN_FDS="2", NOTIFY_SOCKET=notify_path)
    # LISTEN_PID must be the daemon's own pid: the shell sets it, then becomes the daemon.
    command = f'LISTEN_PID=$$ exec {sys.executable} -m sockmapd -c "{config}"'
    log_path = tmp_path / "act.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["sh", "-c", command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # 3 and 4 stay open for the sockets placed there; the originals are copied from.
            pass_fds=(3, 4, tcp.fileno(), unix.fileno()),
            preexec_fn=place_fds,  # fds must be placed before exec
        )
    try:
        yield Activated(process, tcp.getsockname()[1], unix_path, notify, log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        tcp.close()
        unix.close()
        notify.close()
