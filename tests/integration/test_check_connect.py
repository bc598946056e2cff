"""``sockmapd --check-config --connect`` against real MariaDB and PostgreSQL servers."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from sqlalchemy.engine import make_url

from tests.integration.databases import Database, Server, unique_name

pytestmark = pytest.mark.parametrize("backend", ["mariadb", "postgresql"], indirect=True)

TABLE = "cc_mailboxes"


@pytest.fixture(scope="module")
def mailboxes(backend: Database) -> Database:
    """The backend with a table that the valid maps read."""
    backend.create_text_table(TABLE, ["address", "maildir", "reason"])
    backend.insert(TABLE, ["address", "maildir", "reason"], [("a@example.com", "a/", None)])
    return backend


@pytest.fixture(scope="module")
def unreachable_url(backend: Database, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL to the backend's server that the server refuses to connect."""
    # MariaDB: a dedicated user given the wrong password. The test PostgreSQL trusts every
    # local connection (pg_hba.conf "trust") and would accept a wrong password, so there
    # the URL names a database that does not exist instead.
    if backend.name == "postgresql":
        yield (
            make_url(backend.url)
            .set(database=unique_name("missing"))
            .render_as_string(hide_password=False)
        )
        return
    server: Server = request.getfixturevalue("mysql_server")
    user = f"sockmapd_t_{secrets.token_hex(4)}"
    admin = server.admin()
    admin.execute([f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right'"])
    try:
        url = make_url(backend.url).set(username=user, password="wrong")
        yield url.render_as_string(hide_password=False)
    finally:
        admin.execute([f"DROP USER IF EXISTS '{user}'@'%'"])


def _check(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "sockmapd.toml"
    path.write_text(tomli_w.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "sockmapd", "--check-config", "--connect", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _map(database: str, table: str = TABLE, **columns: str) -> dict[str, str]:
    return {"database": database, "table": table, "key": "address", **columns}


def test_valid_config_with_existing_tables_exits_0(mailboxes: Database, tmp_path: Path) -> None:
    config = {
        "databases": {"main": {"url": mailboxes.url}},
        "maps": {
            "recipient": _map("main"),
            "maildir": _map("main", value="maildir", reason="reason"),
        },
    }
    result = _check(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "OK" in result.stdout


def test_three_problems_are_reported_one_line_each(
    mailboxes: Database, unreachable_url: str, tmp_path: Path
) -> None:
    config = {
        "databases": {"main": {"url": mailboxes.url}, "locked": {"url": unreachable_url}},
        "maps": {
            "fine": _map("main", value="maildir"),
            "denied": _map("locked"),
            "notable": _map("main", table="cc_no_such_table"),
            "nocolumn": _map("main", value="no_such_column"),
        },
    }
    result = _check(tmp_path, config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    for field in ("databases.locked", "maps.notable.table", "maps.nocolumn.value"):
        matching = [line for line in lines if f": {field}: " in line]
        assert len(matching) == 1, (field, result.stderr)
    # A password in the URL must not be echoed.
    assert ":wrong@" not in result.stderr


def test_a_server_that_stops_answering_is_reported_not_waited_for(
    mailboxes: Database, tmp_path: Path
) -> None:
    # The query sleeps far longer than query_timeout: the check must give up on
    # the database and say so, not wait for the server (the subprocess limit is 60 s).
    sleep = "(SELECT SLEEP(50)) = 1" if mailboxes.name == "mariadb" else "pg_sleep(50) IS NOT NULL"
    config = {
        "databases": {"main": {"url": mailboxes.url, "connect_timeout": 2.0, "query_timeout": 1.0}},
        "maps": {
            "slow": {
                "database": "main",
                "query": f"SELECT maildir FROM {TABLE} WHERE address = '%s' OR {sleep}",
            }
        },
    }
    result = _check(tmp_path, config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert ": databases.main: no answer within" in result.stderr, result.stderr


def test_a_server_that_reads_literals_otherwise_is_reported(
    mailboxes: Database, tmp_path: Path
) -> None:
    # Read at load with the server's defaults: on MySQL 'a\\b' holds one backslash, on
    # PostgreSQL (standard_conforming_strings = on) two. Both servers agree by default.
    query = f"SELECT maildir FROM {TABLE} WHERE address = '%s' AND maildir <> 'a\\\\b'"
    config = {
        "databases": {"main": {"url": mailboxes.url}},
        "maps": {"q": {"database": "main", "query": query}},
    }
    result = _check(tmp_path, config)
    assert result.returncode == 0, result.stderr
    if mailboxes.name != "postgresql":
        return  # MariaDB's sql_mode has no per-database default to change here
    name = make_url(mailboxes.url).database
    mailboxes.execute([f'ALTER DATABASE "{name}" SET standard_conforming_strings = off'])
    try:
        result = _check(tmp_path, config)
    finally:
        mailboxes.execute([f'ALTER DATABASE "{name}" RESET standard_conforming_strings'])
    assert result.returncode == 1, result.stdout
    assert "databases.main: standard_conforming_strings is off" in result.stderr
    assert "queries of q were read with it on" in result.stderr
