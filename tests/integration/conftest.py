"""Fixtures that start real sockmapd processes on real sockets."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, free_port

SCHEMA = """
CREATE TABLE users (address TEXT NOT NULL);
CREATE TABLE blackwhite (name TEXT NOT NULL, status TEXT, reason TEXT);
CREATE TABLE big (k TEXT NOT NULL, v TEXT);
"""

USERS = [
    "alice@example.com",
    "bob@example.com",
    "john doe@example.com",
    '"john doe"@example.com',
    "comma,user@example.com",
    "colon:user@example.com",
    "jürgen@bücher.example",
    "user@[192.0.2.1]",
    "*",
]

BLACKWHITE = [
    ("hello@buydirect4u.co.uk", "REJECT", "Sender identified as spammer"),
    ("friend@example.org", "OK", None),
    ("multi@example.org", "DISCARD", ""),
    ("multi@example.org", "HOLD", "second row"),
    ("nullvalue@example.org", None, "no status"),
]


def make_sqlite(path: Path) -> Path:
    """Create the test database used by the server tests."""
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.executemany("INSERT INTO users VALUES (?)", [(u,) for u in USERS])
        conn.executemany("INSERT INTO blackwhite VALUES (?, ?, ?)", BLACKWHITE)
        conn.execute("INSERT INTO big VALUES ('huge', ?)", ("x" * 150_000,))
    conn.close()
    return path


def toml_config(
    db: Path,
    listen: list[str],
    extra_server: str = "",
    log_level: str = "info",
    *,
    allow_root: bool = True,
) -> str:
    """Return a TOML config serving the test maps from the SQLite file db."""
    listeners = ", ".join(f'"{item}"' for item in listen)
    # The tests run as root: without this the daemon refuses to start.
    root = "allow_root = true" if allow_root else ""
    return f"""
[server]
listen = [{listeners}]
{root}
{extra_server}

[log]
level = "{log_level}"

[databases.main]
url = "sqlite+aiosqlite:///{db}"

[maps.recipient]
database = "main"
table = "users"
key = "address"

[maps.blacklist]
database = "main"
table = "blackwhite"
key = "name"
value = "status"
reason = "reason"

[maps.big]
database = "main"
table = "big"
key = "k"
value = "v"

[maps.broken]
database = "main"
table = "no_such_table"
key = "k"
"""


DaemonFactory = Callable[..., Daemon]


@contextmanager
def _daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    started: list[Daemon] = []
    db = make_sqlite(tmp_path / "test.sqlite3")

    def start(
        extra_server: str = "",
        *,
        unix: bool = False,
        config_text: str | None = None,
        name: str = "sockmapd.toml",
        log_level: str = "info",
    ) -> Daemon:
        port = free_port()
        listen = [f"tcp://127.0.0.1:{port}"]
        unix_path = None
        if unix:
            unix_path = str(tmp_path / f"{name}.sock")
            listen.append(f"unix://{unix_path}")
        text = (
            config_text
            if config_text is not None
            else toml_config(db, listen, extra_server, log_level)
        )
        path = tmp_path / name
        path.write_text(text.replace("@PORT@", str(port)))
        daemon = Daemon(path, port, unix_path)
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Start sockmapd processes on fresh ports; every one is stopped at the end."""
    with _daemon_factory(tmp_path) as factory:
        yield factory


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One running sockmapd with the default test config, shared by a module's read-only tests."""
    with _daemon_factory(tmp_path_factory.mktemp("shared")) as factory:
        yield factory(unix=True)


def postmap_binary() -> str:
    """Return Postfix's postmap; fail under SOCKMAPD_REQUIRE_POSTFIX=1, else skip, if absent."""
    found = shutil.which("postmap") or shutil.which("postmap", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.environ.get("SOCKMAPD_REQUIRE_POSTFIX") == "1":
        pytest.fail("postmap is not installed, and SOCKMAPD_REQUIRE_POSTFIX=1 requires it")
    pytest.skip("postmap is not installed (Debian package postfix)")


def pgbouncer_binary() -> str:
    """Return PgBouncer; fail under SOCKMAPD_REQUIRE_DB=1, else skip, if absent."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.environ.get("SOCKMAPD_REQUIRE_DB") == "1":
        pytest.fail("pgbouncer is not installed, and SOCKMAPD_REQUIRE_DB=1 requires it")
    pytest.skip("pgbouncer is not installed (Debian package pgbouncer)")


@pytest.fixture
def postmap(tmp_path: Path) -> list[str]:
    """Return the postmap command with a private, empty main.cf."""
    config_dir = tmp_path / "postfix"
    config_dir.mkdir()
    (config_dir / "main.cf").write_text("")
    return [postmap_binary(), "-c", str(config_dir)]
