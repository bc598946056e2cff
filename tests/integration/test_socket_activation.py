"""systemd-style start: sockets passed through LISTEN_FDS, readiness through NOTIFY_SOCKET."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.integration.activation import socket_activated
from tests.integration.conftest import make_sqlite, toml_config
from tests.integration.daemon import SocketmapClient, free_port


def test_inherited_sockets_are_served_and_readiness_is_notified(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "act.sqlite3")
    unused_port = free_port()
    config = tmp_path / "act.toml"
    # The configured listener must NOT be bound: the inherited sockets replace it.
    config.write_text(toml_config(db, [f"tcp://127.0.0.1:{unused_port}"]))
    with socket_activated(config, tmp_path, timeout=20) as daemon:
        assert daemon.next_notification() == b"READY=1"
        over_tcp = SocketmapClient.tcp(daemon.tcp_port)
        assert over_tcp.ask("recipient", "alice@example.com") == b"OK alice@example.com"
        over_unix = SocketmapClient.unix(daemon.unix_path)
        assert over_unix.ask("recipient", "bob@example.com") == b"OK bob@example.com"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", unused_port)) != 0
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.next_notification() == b"STOPPING=1"
        assert daemon.process.wait(20) == 0
    text = daemon.log_path.read_text()
    assert "sockets passed by systemd" in text
    # The socket file belongs to systemd: sockmapd must not remove it.
    assert Path(daemon.unix_path).exists()
