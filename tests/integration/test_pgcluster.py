"""The temporary PostgreSQL primary and streaming standby used by failover tests."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests.integration.pgcluster import (
    PgCluster,
    PgClusterError,
    PgClusterUnavailable,
    cluster,
)

__all__ = ["cluster"]  # the fixture


async def _fetch_rows(port: int, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, user="postgres", database="postgres", timeout=5
    )
    try:
        return [tuple(row) for row in await conn.fetch(sql, timeout=5)]
    finally:
        await conn.close(timeout=5)


def fetch_rows(port: int, sql: str) -> list[tuple[object, ...]]:
    """Run a query with asyncpg in a fresh event loop, as sockmapd's driver would."""
    return asyncio.run(_fetch_rows(port, sql))


def test_rows_written_on_the_primary_are_read_from_the_standby(cluster: PgCluster) -> None:
    """A committed row shows up on the standby, which is in recovery and read-only."""
    cluster.execute_primary(
        "CREATE TABLE users (address text NOT NULL);INSERT INTO users VALUES ('alice@example.com')"
    )
    cluster.wait_replayed()
    assert cluster.query_standby("SELECT address FROM users") == "alice@example.com"
    assert fetch_rows(cluster.standby_port, "SELECT address FROM users") == [("alice@example.com",)]
    assert fetch_rows(cluster.standby_port, "SELECT pg_is_in_recovery()") == [(True,)]
    assert fetch_rows(cluster.primary_port, "SELECT pg_is_in_recovery()") == [(False,)]
    with pytest.raises(PgClusterError, match="read-only"):
        cluster.psql(cluster.standby_port, "INSERT INTO users VALUES ('mallory@example.com')")


def test_stopped_standby_refuses_then_catches_up(cluster: PgCluster) -> None:
    """A stopped standby's port refuses; started again it replays what it missed."""
    cluster.execute_primary("CREATE TABLE t (n int)")
    cluster.stop_standby()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", cluster.standby_port), timeout=5).close()
    cluster.execute_primary("INSERT INTO t SELECT generate_series(1, 100)")
    cluster.start_standby()
    cluster.wait_replayed()
    assert cluster.query_standby("SELECT count(*) FROM t") == "100"


def test_standby_serves_reads_without_the_primary(cluster: PgCluster) -> None:
    """With the primary down the standby still answers; stop() leaves no server behind."""
    cluster.execute_primary("CREATE TABLE t AS SELECT 42 AS n")
    cluster.wait_replayed()
    cluster.stop_primary()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", cluster.primary_port), timeout=5).close()
    assert cluster.query_standby("SELECT n FROM t") == "42"
    cluster.stop()
    for port in (cluster.primary_port, cluster.standby_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert not (cluster.primary_dir / "postmaster.pid").exists()
    assert not (cluster.standby_dir / "postmaster.pid").exists()


def test_missing_binaries_are_reported_as_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start() says why it cannot run instead of failing somewhere inside."""
    monkeypatch.setattr("tests.integration.pgcluster.pg_binaries_available", lambda: None)
    with pytest.raises(PgClusterUnavailable, match="binaries not found"):
        PgCluster(tmp_path).start()
