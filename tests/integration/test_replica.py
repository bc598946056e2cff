"""Lookups go to a real streaming standby (target_session_attrs), then fall back to the primary."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.daemon import Daemon, free_port
from tests.integration.pgcluster import PgCluster


def _config(cluster: PgCluster, port: int) -> str:
    return f"""
[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true

[databases.replicated]
driver = "postgresql"
# The primary is listed first: prefer-standby must still pick the standby.
hosts = ["127.0.0.1:{cluster.primary_port}", "127.0.0.1:{cluster.standby_port}"]
name = "postgres"
user = "postgres"
target_session_attrs = "prefer-standby"
connect_timeout = 2.0
query_timeout = 2.0
retry_interval = 1.0

[maps.role]
database = "replicated"
table = "whoami"
key = "k"
value = "role"
"""


def test_prefer_standby_reads_from_the_standby_then_from_the_primary(
    cluster: PgCluster, tmp_path: Path
) -> None:
    # The view is evaluated by whichever server runs the lookup, so the answer
    # tells which one it was.
    cluster.execute_primary(
        "CREATE VIEW whoami AS SELECT 'me'::text AS k, "
        "CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END AS role"
    )
    cluster.wait_replayed()
    port = free_port()
    path = tmp_path / "replica.toml"
    path.write_text(_config(cluster, port))
    daemon = Daemon(path, port)
    try:
        client = daemon.client(timeout=30.0)
        for _ in range(5):
            assert client.ask("role", "me") == b"OK standby"
        cluster.stop_standby()
        stopped = time.monotonic()
        replies = []
        while True:
            reply = client.ask("role", "me")
            replies.append(reply)
            if reply == b"OK primary":
                break
            # While the standby goes away the only other answer allowed is a deferral.
            assert reply.startswith((b"TEMP ", b"TIMEOUT ")), replies
            assert time.monotonic() - stopped < 15.0, replies
            time.sleep(0.1)
        print(f"\nstandby stopped: primary answered after {time.monotonic() - stopped:.2f} s")
        assert client.ask("role", "me") == b"OK primary"
    finally:
        daemon.stop()
