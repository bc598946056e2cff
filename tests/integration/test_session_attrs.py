"""target_session_attrs read-write and read-only judge the server's setting, not sockmapd's own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Database, Server, unique_name

_numbers = itertools.count()


@pytest.fixture
def own_database(pg_server: Server) -> Iterator[Database]:
    """A PostgreSQL database of this test alone: its settings can change without harm."""
    name = unique_name(f"attrs{next(_numbers)}")
    database = pg_server.create_database(name)
    try:
        database.execute(
            [
                "CREATE TABLE mailboxes (address TEXT NOT NULL)",
                "INSERT INTO mailboxes VALUES ('alice@example.com')",
                "CREATE SEQUENCE lookups",
                # nextval() writes: it must fail in a read-only session.
                "CREATE VIEW counted AS SELECT address, nextval('lookups')::text AS n "
                "FROM mailboxes",
            ]
        )
        yield database
    finally:
        pg_server.drop_database(name)


def _make_server_read_only(database: Database) -> None:
    """Make the server, not sockmapd, declare new sessions of the database read-only."""
    name = database.url.rsplit("/", 1)[1]
    database.execute([f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'])


def _start(database: Database, attrs: str, tmp_path: Path) -> Daemon:
    port = free_port()
    path = tmp_path / f"{attrs}.toml"
    path.write_text(
        f"""
[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true

[databases.main]
url = "{database.url}"
target_session_attrs = "{attrs}"
connect_timeout = 5.0
query_timeout = 5.0

[maps.mailbox]
database = "main"
table = "mailboxes"
key = "address"

[maps.counted]
database = "main"
table = "counted"
key = "address"
value = "n"
"""
    )
    return Daemon(path, port)


def _ask(database: Database, attrs: str, tmp_path: Path) -> tuple[bytes, str]:
    """Return a fresh daemon's reply to one mailbox lookup, and its log."""
    daemon = _start(database, attrs, tmp_path)
    try:
        reply = daemon.client().ask("mailbox", "alice@example.com")
    finally:
        daemon.stop()
    return reply, daemon.log()


def test_read_write_accepts_a_writable_server_and_refuses_a_read_only_one(
    own_database: Database, tmp_path: Path
) -> None:
    reply, _ = _ask(own_database, "read-write", tmp_path)
    assert reply == b"OK alice@example.com"
    _make_server_read_only(own_database)
    reply, log = _ask(own_database, "read-write", tmp_path)
    assert reply.startswith(b"TEMP "), reply
    assert "not read-write" in log


def test_read_only_refuses_a_writable_server_and_accepts_a_read_only_one(
    own_database: Database, tmp_path: Path
) -> None:
    reply, log = _ask(own_database, "read-only", tmp_path)
    # A refused host is a failure to defer, never a key that does not exist.
    assert reply.startswith(b"TEMP "), reply
    assert "not read-only" in log
    _make_server_read_only(own_database)
    reply, _ = _ask(own_database, "read-only", tmp_path)
    assert reply == b"OK alice@example.com"


def test_a_read_write_server_still_gets_a_read_only_session(
    own_database: Database, tmp_path: Path
) -> None:
    daemon = _start(own_database, "read-write", tmp_path)
    try:
        client = daemon.client()
        # The host is accepted: plain lookups answer...
        assert client.ask("mailbox", "alice@example.com") == b"OK alice@example.com"
        # ...but a lookup that would write is refused by the server.
        reply = client.ask("counted", "alice@example.com")
    finally:
        daemon.stop()
    assert reply.startswith(b"TEMP "), reply
    assert "read-only transaction" in daemon.log()
    # Outside sockmapd the view does write: the sequence moves only here.
    assert own_database.fetch("SELECT n FROM counted") == [("1",)]
