"""The per-map answer cache in a real sockmapd process on SQLite."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

from tests.integration.conftest import DaemonFactory
from tests.integration.daemon import Daemon

SHORT_TTL = 1.0


def cache_config(db: Path) -> str:
    """Return a config whose maps cache, over the test database and extra tables."""
    return f"""
[server]
listen = ["tcp://127.0.0.1:@PORT@"]
allow_root = true

[databases.main]
url = "sqlite+aiosqlite:///{db}"

[maps.short]
database = "main"
table = "users"
key = "address"
cache_ttl = {SHORT_TTL}

[maps.long]
database = "main"
table = "users"
key = "address"
cache_ttl = 300

[maps.late]
database = "main"
table = "late"
key = "k"
cache_ttl = 300
negative_cache_ttl = 300

[maps.stale]
database = "main"
table = "fragile"
key = "k"
cache_ttl = 0.2
negative_cache_ttl = 0.2
stale_ttl = 300

[maps.nostale]
database = "main"
table = "fragile"
key = "k"
cache_ttl = 0.2
"""


def execute(db: Path, *statements: str) -> None:
    with sqlite3.connect(db) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def start(start_daemon: DaemonFactory, tmp_path: Path) -> tuple[Daemon, Path]:
    db = tmp_path / "test.sqlite3"
    execute(db, "CREATE TABLE fragile (k TEXT NOT NULL)", "INSERT INTO fragile VALUES ('here')")
    return start_daemon(config_text=cache_config(db)), db


def wait_for_log(daemon: Daemon, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)


def test_deleted_row_is_found_until_cache_ttl_passes(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon, db = start(start_daemon, tmp_path)
    client = daemon.client()
    assert client.ask("short", "alice@example.com") == b"OK alice@example.com"
    stored = time.monotonic()
    execute(db, "DELETE FROM users WHERE address = 'alice@example.com'")
    assert client.ask("short", "alice@example.com") == b"OK alice@example.com"
    assert time.monotonic() - stored < SHORT_TTL, "too slow to see the cached answer"
    time.sleep(SHORT_TTL + 0.2)
    assert client.ask("short", "alice@example.com") == b"NOTFOUND "


def test_sigusr2_clears_the_cache_at_once(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    daemon, db = start(start_daemon, tmp_path)
    client = daemon.client()
    assert client.ask("long", "bob@example.com") == b"OK bob@example.com"
    execute(db, "DELETE FROM users WHERE address = 'bob@example.com'")
    assert client.ask("long", "bob@example.com") == b"OK bob@example.com"
    daemon.signal(signal.SIGUSR2)
    wait_for_log(daemon, "SIGUSR2: cleared 1 cached answers")
    assert client.ask("long", "bob@example.com") == b"NOTFOUND "
    # Still serving, still caching.
    assert client.ask("long", "alice@example.com") == b"OK alice@example.com"


def test_temp_is_not_cached(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    daemon, db = start(start_daemon, tmp_path)
    client = daemon.client()
    assert client.ask("late", "x").startswith(b"TEMP ")
    execute(db, "CREATE TABLE late (k TEXT NOT NULL)", "INSERT INTO late VALUES ('x')")
    assert client.ask("late", "x") == b"OK x"


def test_stale_serves_found_answers_but_never_notfound_when_the_database_fails(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon, db = start(start_daemon, tmp_path)
    client = daemon.client()
    assert client.ask("stale", "here") == b"OK here"
    assert client.ask("stale", "gone") == b"NOTFOUND "
    assert client.ask("nostale", "here") == b"OK here"
    # Every query now fails ("no such table"), as on a database outage.
    execute(db, "ALTER TABLE fragile RENAME TO fragile_away")
    time.sleep(0.3)
    assert client.ask("stale", "here") == b"OK here"
    assert client.ask("stale", "gone").startswith(b"TEMP ")
    assert client.ask("stale", "never-asked").startswith(b"TEMP ")
    assert client.ask("nostale", "here").startswith(b"TEMP ")
    assert "map stale: database failed, serving a cached answer" in daemon.log()
