"""systemd-style start: sockets passed through LISTEN_FDS, readiness through NOTIFY_SOCKET."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import make_sqlite, toml_config
from tests.integration.daemon import SocketmapClient, free_port


def test_inherited_sockets_are_served_and_readiness_is_notified(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "act.sqlite3")
    unused_port = free_port()
    config = tmp_path / "act.toml"
    # The configured listener must NOT be bound: the inherited sockets replace it.
    config.write_text(toml_config(db, [f"tcp://127.0.0.1:{unused_port}"]))
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
    notify.settimeout(20)

    def place_fds() -> None:
        # As systemd does: the passed sockets are fds 3, 4, ... in the new process.
        os.dup2(tcp.fileno(), 3)
        os.dup2(unix.fileno(), 4)

    env = dict(os.environ, LISTEN_FDS="2", NOTIFY_SOCKET=notify_path)
    # LISTEN_PID must be the daemon's own pid: the shell sets it, then becomes the daemon.
    command = f'LISTEN_PID=$$ exec {sys.executable} -m sockmapd -c "{config}"'
    log = (tmp_path / "act.log").open("wb")
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
        assert notify.recv(100) == b"READY=1"
        over_tcp = SocketmapClient.tcp(tcp.getsockname()[1])
        assert over_tcp.ask("recipient", "alice@example.com") == b"OK alice@example.com"
        over_unix = SocketmapClient.unix(unix_path)
        assert over_unix.ask("recipient", "bob@example.com") == b"OK bob@example.com"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", unused_port)) != 0
        process.send_signal(signal.SIGTERM)
        assert notify.recv(100) == b"STOPPING=1"
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        tcp.close()
        unix.close()
        notify.close()
    text = (tmp_path / "act.log").read_text()
    assert "sockets passed by systemd" in text
    # The socket file belongs to systemd: sockmapd must not remove it.
    assert Path(unix_path).exists()
