"""Every lookup behaviour gives the same answer on SQLite, MariaDB and PostgreSQL."""

# One real sockmapd per backend serves the same tables and rows. The only differences are
# MariaDB's: its default collation (utf8mb4_general_ci) ignores case, accents and trailing
# spaces, so the recipient map (table lk_users) finds ALICE@EXAMPLE.COM,
# jurgen@bucher.example and "alice@example.com " there; the tests
# test_*_is_significant_except_in_mariadb_default_collation assert exactly that. The
# recipient_exact map (table lk_users_exact, utf8mb4_nopad_bin on MariaDB) answers as the
# other backends do everywhere.

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from tests.integration.daemon import Daemon, SocketmapClient, free_port, netstring
from tests.integration.databases import Database

FAST = 2.0  # seconds: a lookup that does not wait on a sleeping query answers well within this

USERS = [
    "alice@example.com",
    "bob@example.com",
    "o'brien@example.com",
    '"john doe"@example.com',
    "john doe@example.com",
    "back\\slash@example.com",
    "100%@example.com",
    "a_c@example.com",
    "comma,user@example.com",
    "colon:user@example.com",
    "jürgen@bücher.example",
    "emoji😀@example.com",
]

ACCESS = [
    ("hello@buydirect4u.co.uk", "REJECT", "Sender identified as spammer"),
    ("friend@example.org", "OK", None),
    ("empty-reason@example.org", "DISCARD", ""),
    ("multi@example.org", "DISCARD", ""),
    ("multi@example.org", "HOLD", "second row"),
    ("nullvalue@example.org", None, "no status"),
]

ALIASES = [
    ("postmaster@example.com", "root@example.com"),
    ("team@example.com", "a@example.com"),
    ("team@example.com", "b@example.com"),
    ("team@example.com", "c@example.com"),
    ("partly@example.com", None),
    ("partly@example.com", ""),
    ("partly@example.com", "kept@example.com"),
    ("nothing@example.com", None),
    ("nothing@example.com", ""),
    ("x_y@example.com", "underscore"),
    ("xzy@example.com", "letter"),
    ("50%@example.com", "percent"),
    ("50x@example.com", "letter"),
]

INJECTIONS = [
    "x'OR'1'='1",
    "'; DROP TABLE lk_users; --",
    "'; DROP TABLE users; --",
    "\\' OR 1=1 #",
    "' UNION SELECT password FROM secrets --",
    "1; SELECT pg_sleep(5)",
    "1' AND SLEEP(5) AND '1'='1",
    "x' OR '1'='1' --",
    '" OR ""="',
    "%",
    "_",
    "%@example.com",
    "_lice@example.com",
]

TABLE_ROWS = {"lk_users": len(USERS), "lk_users_exact": len(USERS), "lk_access": len(ACCESS)}
TABLE_ROWS["lk_aliases"] = len(ALIASES)

MAPS = {
    "recipient": {"table": "lk_users", "key": "address"},
    "recipient_exact": {"table": "lk_users_exact", "key": "address"},
    "access": {"table": "lk_access", "key": "name", "value": "status", "reason": "reason"},
    "aliases": {"table": "lk_aliases", "key": "alias", "value": "target"},
    "late": {"table": "lk_late", "key": "k", "value": "v"},
}


def _setup(db: Database) -> None:
    db.create_text_table("lk_users", ["address"])
    db.insert("lk_users", ["address"], [(u,) for u in USERS])
    db.create_text_table("lk_users_exact", ["address"], exact=True)
    db.insert("lk_users_exact", ["address"], [(u,) for u in USERS])
    db.create_text_table("lk_access", ["name", "status", "reason"])
    db.insert("lk_access", ["name", "status", "reason"], ACCESS)
    db.create_text_table("lk_aliases", ["alias", "target"])
    db.insert("lk_aliases", ["alias", "target"], ALIASES)
    db.execute(["DROP TABLE IF EXISTS lk_late"])


@pytest.fixture(scope="module")
def sockmapd(backend: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A sockmapd serving the lookup tables from the backend."""
    _setup(backend)
    port = free_port()
    config = {
        "server": {"listen": [f"tcp://127.0.0.1:{port}"], "allow_root": True},
        "databases": {"main": {"url": backend.url}},
        "maps": {name: {"database": "main", **spec} for name, spec in MAPS.items()},
    }
    path: Path = tmp_path_factory.mktemp(f"sockmapd-{backend.name}") / "sockmapd.toml"
    path.write_text(tomli_w.dumps(config))
    daemon = Daemon(path, port)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def client(sockmapd: Daemon) -> Iterator[SocketmapClient]:
    """A fresh connection to the backend's sockmapd."""
    connection = sockmapd.client()
    try:
        yield connection
    finally:
        connection.close()


def _items(reply: bytes) -> set[str]:
    assert reply.startswith(b"OK "), reply
    return set(reply[3:].decode().split(","))


@pytest.mark.parametrize("key", USERS)
def test_found_key_without_value_answers_the_key_as_stored(
    client: SocketmapClient, key: str
) -> None:
    expected = b"OK " + key.encode()
    assert client.ask("recipient", key) == expected
    assert client.ask("recipient_exact", key) == expected


def test_missing_key_answers_notfound_with_trailing_space(client: SocketmapClient) -> None:
    client.send_raw(netstring(b"recipient nobody@example.com"))
    assert client.read_reply() == b"NOTFOUND "
    client.send_raw(netstring(b"aliases nobody@example.com"))
    assert client.sock.recv(100) == b"9:NOTFOUND ,"


def test_value_column_is_the_answer(client: SocketmapClient) -> None:
    assert client.ask("aliases", "postmaster@example.com") == b"OK root@example.com"


def test_value_and_reason_are_joined_by_one_space(client: SocketmapClient) -> None:
    reply = client.ask("access", "hello@buydirect4u.co.uk")
    assert reply == b"OK REJECT Sender identified as spammer"


@pytest.mark.parametrize(
    ("key", "expected"),
    [("friend@example.org", b"OK OK"), ("empty-reason@example.org", b"OK DISCARD")],
    ids=["null", "empty"],
)
def test_null_or_empty_reason_answers_the_value_only(
    client: SocketmapClient, key: str, expected: bytes
) -> None:
    assert client.ask("access", key) == expected


def test_several_rows_are_joined_with_commas(client: SocketmapClient) -> None:
    assert _items(client.ask("aliases", "team@example.com")) == {
        "a@example.com",
        "b@example.com",
        "c@example.com",
    }
    assert _items(client.ask("access", "multi@example.org")) == {"DISCARD", "HOLD second row"}


def test_null_and_empty_values_are_skipped(client: SocketmapClient) -> None:
    assert client.ask("aliases", "partly@example.com") == b"OK kept@example.com"


def test_only_null_or_empty_values_answer_notfound(client: SocketmapClient) -> None:
    assert client.ask("aliases", "nothing@example.com") == b"NOTFOUND "
    # A reason without a value is not an answer either.
    assert client.ask("access", "nullvalue@example.org") == b"NOTFOUND "


@pytest.mark.parametrize(
    "key",
    ["abc@example.com", "a%c@example.com", "1000@example.com", "100x@example.com", "%", "_"],
)
def test_percent_and_underscore_are_not_like_wildcards(client: SocketmapClient, key: str) -> None:
    assert client.ask("recipient", key) == b"NOTFOUND "
    assert client.ask("recipient_exact", key) == b"NOTFOUND "


def test_wildcard_characters_match_only_themselves(client: SocketmapClient) -> None:
    assert client.ask("recipient", "a_c@example.com") == b"OK a_c@example.com"
    assert client.ask("aliases", "x_y@example.com") == b"OK underscore"
    assert client.ask("aliases", "50%@example.com") == b"OK percent"


@pytest.mark.parametrize("key", INJECTIONS)
def test_injection_keys_are_not_found_quickly_and_tables_survive(
    backend: Database, client: SocketmapClient, key: str
) -> None:
    for map_name in ("recipient", "recipient_exact", "access", "aliases"):
        started = time.monotonic()
        assert client.ask(map_name, key) == b"NOTFOUND ", map_name
        assert time.monotonic() - started < FAST, map_name
    for table, rows in TABLE_ROWS.items():
        assert backend.count(table) == rows, table
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"


def test_case_is_significant_except_in_mariadb_default_collation(
    backend: Database, client: SocketmapClient
) -> None:
    assert client.ask("recipient_exact", "ALICE@EXAMPLE.COM") == b"NOTFOUND "
    expected = b"OK alice@example.com" if backend.name == "mariadb" else b"NOTFOUND "
    assert client.ask("recipient", "ALICE@EXAMPLE.COM") == expected


def test_trailing_space_is_significant_except_in_mariadb_default_collation(
    backend: Database, client: SocketmapClient
) -> None:
    assert client.ask("recipient_exact", "alice@example.com ") == b"NOTFOUND "
    expected = b"OK alice@example.com" if backend.name == "mariadb" else b"NOTFOUND "
    assert client.ask("recipient", "alice@example.com ") == expected


def test_accents_are_significant_except_in_mariadb_default_collation(
    backend: Database, client: SocketmapClient
) -> None:
    assert client.ask("recipient_exact", "jurgen@bucher.example") == b"NOTFOUND "
    expected = "OK jürgen@bücher.example" if backend.name == "mariadb" else "NOTFOUND "
    assert client.ask("recipient", "jurgen@bucher.example") == expected.encode()


def test_missing_table_answers_temp_until_it_is_created(
    backend: Database, client: SocketmapClient
) -> None:
    for _ in range(2):
        reply = client.ask("late", "later@example.com")
        assert reply.startswith(b"TEMP "), reply
    # The connection stays usable after a database error.
    assert client.ask("recipient", "bob@example.com") == b"OK bob@example.com"
    backend.create_text_table("lk_late", ["k", "v"])
    backend.insert("lk_late", ["k", "v"], [("later@example.com", "arrived")])
    assert client.ask("late", "later@example.com") == b"OK arrived"
    assert client.ask("late", "other@example.com") == b"NOTFOUND "
