"""Lookups run in read-only sessions: even a view that writes cannot write through sockmapd."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Database

WRITING_VIEW = {
    "postgresql": [
        "DROP VIEW IF EXISTS ro_view",
        "DROP SEQUENCE IF EXISTS ro_seq",
        "CREATE SEQUENCE ro_seq",
        # nextval() writes: it must fail in a read-only session.
        "CREATE VIEW ro_view AS SELECT 'k'::text AS k, nextval('ro_seq')::text AS v",
    ],
    "mariadb": [
        "DROP VIEW IF EXISTS ro_view",
        "DROP FUNCTION IF EXISTS ro_write",
        "DROP TABLE IF EXISTS ro_log",
        "CREATE TABLE ro_log (n INT)",
        "CREATE FUNCTION ro_write() RETURNS INT MODIFIES SQL DATA "
        "BEGIN INSERT INTO ro_log VALUES (1); RETURN 1; END",
        "CREATE VIEW ro_view AS SELECT 'k' AS k, ro_write() AS v",
    ],
}


@pytest.mark.parametrize("kind", ["mariadb", "postgresql"])
def test_a_view_that_writes_answers_temp_and_writes_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    database: Database = request.getfixturevalue(
        "mysql_database" if kind == "mariadb" else "pg_database"
    )
    database.execute(WRITING_VIEW[kind])
    port = free_port()
    path = tmp_path / "ro.toml"
    path.write_text(
        f"""
[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true
[databases.main]
url = "{database.url}"
[maps.writer]
database = "main"
table = "ro_view"
key = "k"
value = "v"
"""
    )
    daemon = Daemon(path, port)
    try:
        reply = daemon.client().ask("writer", "k")
    finally:
        daemon.stop()
    assert reply.startswith(b"TEMP "), reply
    assert "read-only" in daemon.log().lower() or "read only" in daemon.log().lower()
    if kind == "mariadb":
        assert database.count("ro_log") == 0
    else:
        # Outside sockmapd the view does write: the sequence moves only here.
        assert database.fetch("SELECT v FROM ro_view") == [("1",)]
