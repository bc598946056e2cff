"""How a key matches depends on the database: MariaDB's _ci collations, PostgreSQL's equality."""

# docs/maps.md ("Keys: how they match on each database") states what these tests show.
# sockmapd sends the key as it is and the database compares it: a MariaDB column with the
# default utf8mb4 collation (case- and accent-insensitive, trailing spaces ignored) finds
# user1@example.com for USER1@EXAMPLE.COM, üser1@exämple.com and "user1@example.com ";
# PostgreSQL finds none of them. Postfix's own mysql: and pgsql: tables answer the same keys
# the same way as the imported maps do.

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.integration.conftest import postmap_binary
from tests.integration.daemon import Daemon, SocketmapClient, free_port
from tests.integration.databases import Database
from tests.integration.postmap import connection_lines

STORED = "user1@example.com"
FOUND = b"OK u1"
NOTFOUND = b"NOTFOUND "
KEYS = {
    "exact": STORED,
    "case": "USER1@EXAMPLE.COM",
    "accents": "üser1@exämple.com",
    "trailing space": "user1@example.com ",
}
QUERY = "SELECT goto FROM kc_default WHERE address = '%s'"


@dataclass(frozen=True)
class Served:
    """The running sockmapd and the Postfix table files its *_postfix maps came from."""

    daemon: Daemon
    cf_files: dict[str, str]


def _table(db: Database, name: str) -> None:
    # MariaDB: utf8mb4 with the database's default collation (utf8mb4_general_ci).
    options = " DEFAULT CHARSET=utf8mb4" if db.name == "mariadb" else ""
    db.execute(
        [
            f"DROP TABLE IF EXISTS {name}",
            f"CREATE TABLE {name} (address VARCHAR(255) NOT NULL, goto TEXT){options}",
        ]
    )
    db.insert(name, ["address", "goto"], [(STORED, "u1")])


def _cf(db: Database) -> str:
    return connection_lines(db) + f"query = {QUERY}\n"


def _import(files: dict[str, tuple[str, Path]]) -> dict[str, Any]:
    arguments = [
        argument
        for name, (kind, path) in files.items()
        for argument in ("--name", name, f"{kind}:{path}")
    ]
    command = [sys.executable, "-m", "sockmapd", "config", "import-postfix", "--show-secrets"]
    result = subprocess.run(
        [*command, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tomllib.loads(result.stdout)


@pytest.fixture(scope="module")
def served(
    mysql_database: Database, pg_database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("collation")
    sqlite_path = directory / "keys.sqlite3"
    with sqlite3.connect(sqlite_path) as connection:
        connection.execute("CREATE TABLE kc_default (address TEXT NOT NULL, goto TEXT)")
        connection.execute("INSERT INTO kc_default VALUES (?, 'u1')", (STORED,))
    connection.close()
    for db in (mysql_database, pg_database):
        _table(db, "kc_default")
    for name, collation in (("kc_bin", "utf8mb4_bin"), ("kc_nopad_bin", "utf8mb4_nopad_bin")):
        _table(mysql_database, name)
        mysql_database.execute(
            [f"ALTER TABLE {name} MODIFY address VARCHAR(255) NOT NULL COLLATE {collation}"]
        )
    cf_files = {"maria_postfix": directory / "mysql.cf", "pg_postfix": directory / "pgsql.cf"}
    cf_files["maria_postfix"].write_text(_cf(mysql_database))
    cf_files["pg_postfix"].write_text(_cf(pg_database))
    imported = _import(
        {
            "maria_postfix": ("mysql", cf_files["maria_postfix"]),
            "pg_postfix": ("pgsql", cf_files["pg_postfix"]),
        }
    )

    def table(database: str, name: str, **options: Any) -> dict[str, Any]:
        return {"database": database, "table": name, "key": "address", "value": "goto", **options}

    port = free_port()
    config: dict[str, Any] = {
        "server": {"listen": [f"tcp://127.0.0.1:{port}"], "allow_root": True},
        "databases": {
            "maria": {"url": mysql_database.url},
            "pg": {"url": pg_database.url},
            "lite": {"url": f"sqlite+aiosqlite:///{sqlite_path}"},
            **imported["databases"],
        },
        "maps": {
            "maria_default": table("maria", "kc_default"),
            "maria_bin": table("maria", "kc_bin"),
            "maria_nopad_bin": table("maria", "kc_nopad_bin"),
            "maria_collate": {
                "database": "maria",
                "query": f"{QUERY} COLLATE utf8mb4_nopad_bin",
            },
            "pg_default": table("pg", "kc_default"),
            "pg_lowercase": table("pg", "kc_default", key_transform=["lowercase"]),
            "pg_trim": table("pg", "kc_default", key_transform=["trim"]),
            "sqlite_default": table("lite", "kc_default"),
            **imported["maps"],
        },
    }
    path = directory / "sockmapd.toml"
    path.write_text(tomli_w.dumps(config))
    daemon = Daemon(path, port)
    try:
        kinds = {"maria_postfix": "mysql", "pg_postfix": "pgsql"}
        yield Served(daemon, {name: f"{kinds[name]}:{file}" for name, file in cf_files.items()})
    finally:
        daemon.stop()


def _answers(served: Served, map_name: str) -> dict[str, bytes]:
    client = SocketmapClient.tcp(served.daemon.port)
    try:
        return {what: client.ask(map_name, key) for what, key in KEYS.items()}
    finally:
        client.sock.close()


def _found(*found: str) -> dict[str, bytes]:
    return {what: FOUND if what in found else NOTFOUND for what in KEYS}


def test_mariadb_default_collation_ignores_case_accents_and_trailing_spaces(
    served: Served,
) -> None:
    assert _answers(served, "maria_default") == _found(*KEYS)


def test_postgresql_and_sqlite_compare_exactly(served: Served) -> None:
    assert _answers(served, "pg_default") == _found("exact")
    assert _answers(served, "sqlite_default") == _found("exact")
    # key_transform changes the key sent, not the comparison: lowercase finds the
    # upper-case key (the table holds lower-case addresses), trim the one with a space.
    assert _answers(served, "pg_lowercase") == _found("exact", "case")
    assert _answers(served, "pg_trim") == _found("exact", "trailing space")


def test_mariadb_binary_collations(served: Served) -> None:
    # utf8mb4_bin compares case and accents, but still pads: a trailing space matches.
    assert _answers(served, "maria_bin") == _found("exact", "trailing space")
    # utf8mb4_nopad_bin, on the column or on the comparison, matches only the exact key.
    assert _answers(served, "maria_nopad_bin") == _found("exact")
    assert _answers(served, "maria_collate") == _found("exact")


@pytest.mark.postfix
def test_postfix_tables_match_keys_as_the_imported_maps_do(served: Served, tmp_path: Path) -> None:
    config_dir = tmp_path / "postfix"
    config_dir.mkdir()
    (config_dir / "main.cf").write_text("")
    postmap = [postmap_binary(), "-c", str(config_dir), "-q"]
    expected = {"maria_postfix": _found(*KEYS), "pg_postfix": _found("exact", "case")}
    for name, table in served.cf_files.items():
        assert _answers(served, name) == expected[name], name
        socketmap = f"socketmap:inet:127.0.0.1:{served.daemon.port}:{name}"
        for key in KEYS.values():
            direct = subprocess.run(
                [*postmap, key, table], capture_output=True, text=True, timeout=60, check=False
            )
            through = subprocess.run(
                [*postmap, key, socketmap], capture_output=True, text=True, timeout=60, check=False
            )
            assert "fatal" not in direct.stderr + through.stderr, (direct.stderr, through.stderr)
            assert (direct.returncode, direct.stdout) == (through.returncode, through.stdout), (
                name,
                key,
            )
