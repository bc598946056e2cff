"""The Go sockmapd's JSON config, pointed at a real MariaDB, gives the legacy answers."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, SocketmapClient, free_port, netstring
from tests.integration.databases import Server, unique_name

# The sample from the legacy reference, verbatim.
LEGACY_SAMPLE: dict[str, Any] = {
    "database": {
        "host": ["dbnode1.example.org", "dbnode2.example.org"],
        "port": "3306",
        "username": "postmap",
        "password": "secret",
    },
    "sysconfig": {
        "run_as_user": "nobody",
        "run_as_group": "nogroup",
        "port": "2224",
        "logfile": "/var/log/sockmapd.log",
    },
    "postmaps": [
        {
            "service": "blacklist",
            "database": "postfix",
            "table": "blackwhite",
            "key": "name",
            "value": "status",
            "reason": "reason",
        },
        {"service": "recipient", "database": "dbmail", "table": "dbmail_aliases", "key": "alias"},
    ],
}

BLACKWHITE = [
    ("hello@buydirect4u.co.uk", "REJECT", "Sender identified as spammer"),
    ("friend@example.org", "OK", None),
    # Values other than OK and REJECT: the Go daemon sent them as the whole reply.
    ("uid@example.org", "u7", None),
    ("discard@example.org", "DISCARD", "reason"),
]
ALIASES = ["someone@somewhere.com", "postmaster@somewhere.com"]


def _local_config(port: int, databases: dict[str, str]) -> dict[str, Any]:
    """Return the sample with only what must point at the local test server changed."""
    config = copy.deepcopy(LEGACY_SAMPLE)
    host = config["database"]
    host["host"] = ["127.0.0.1"]
    host["port"] = "3306"
    host["username"] = "root"
    host["password"] = ""  # empty: connect without a password, as the Go daemon did
    sysconfig = config["sysconfig"]
    sysconfig["port"] = str(port)
    # The tests run as root and read the daemon's stderr: dropping privileges to nobody
    # is not under test here, and a log file under /var/log would hide the request log.
    for option in ("run_as_user", "run_as_group", "logfile"):
        del sysconfig[option]
    # The database names must not collide with other runs: each run uses its own.
    for postmap in config["postmaps"]:
        postmap["database"] = databases[postmap["database"]]
    return config


@pytest.fixture(scope="module")
def legacy_databases(mysql_server: Server) -> Iterator[dict[str, str]]:
    """This run's own copies of the sample's postfix and dbmail databases, with rows."""
    names = {"postfix": unique_name("postfix"), "dbmail": unique_name("dbmail")}
    try:
        postfix = mysql_server.create_database(names["postfix"])
        postfix.create_text_table("blackwhite", ["name", "status", "reason"])
        postfix.insert("blackwhite", ["name", "status", "reason"], BLACKWHITE)
        dbmail = mysql_server.create_database(names["dbmail"])
        dbmail.create_text_table("dbmail_aliases", ["alias"])
        dbmail.insert("dbmail_aliases", ["alias"], [(alias,) for alias in ALIASES])
        yield names
    finally:
        for name in names.values():
            mysql_server.drop_database(name)


@pytest.fixture(scope="module")
def legacy_daemon(
    legacy_databases: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    """A sockmapd started with the legacy JSON file."""
    port = free_port()
    path: Path = tmp_path_factory.mktemp("legacy") / "sockmapd.json"
    path.write_text(json.dumps(_local_config(port, legacy_databases), indent=2))
    daemon = Daemon(path, port)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def client(legacy_daemon: Daemon) -> Iterator[SocketmapClient]:
    """A fresh connection to the legacy-configured sockmapd."""
    connection = legacy_daemon.client()
    try:
        yield connection
    finally:
        connection.close()


def test_key_without_value_column_answers_the_key(client: SocketmapClient) -> None:
    assert client.ask("recipient", "someone@somewhere.com") == b"OK someone@somewhere.com"


def test_value_and_reason_are_joined_by_one_space(client: SocketmapClient) -> None:
    reply = client.ask("blacklist", "hello@buydirect4u.co.uk")
    assert reply == b"OK REJECT Sender identified as spammer"
    assert client.ask("blacklist", "friend@example.org") == b"OK OK"


def test_every_value_is_an_ok_answer(client: SocketmapClient) -> None:
    # The Go daemon answered "u7" and "DISCARD reason", which Postfix takes for an
    # unknown reply (a lookup error); docs/migrating.md lists the difference.
    assert client.ask("blacklist", "uid@example.org") == b"OK u7"
    assert client.ask("blacklist", "discard@example.org") == b"OK DISCARD reason"


def test_missing_key_answers_notfound_with_trailing_space(client: SocketmapClient) -> None:
    client.send_raw(netstring(b"recipient nobody@somewhere.com"))
    assert client.sock.recv(100) == b"9:NOTFOUND ,"


def test_unknown_map_answers_temp(client: SocketmapClient) -> None:
    reply = client.ask("no_such_map", "someone@somewhere.com")
    assert reply.startswith(b"TEMP "), reply


def test_keepalive_is_answered_but_not_logged(
    legacy_daemon: Daemon, client: SocketmapClient
) -> None:
    assert client.ask("recipient", "KEEPALIVE") == b"NOTFOUND "
    marker = "postmaster@somewhere.com"
    assert client.ask("recipient", marker) == b"OK " + marker.encode()
    # The request after KEEPALIVE is logged, so the log has caught up with both.
    deadline = time.monotonic() + 5
    while marker not in legacy_daemon.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = legacy_daemon.log()
    assert marker in log
    assert "KEEPALIVE" not in log


def test_injection_key_is_not_found(client: SocketmapClient) -> None:
    assert client.ask("recipient", "x'OR'1'='1") == b"NOTFOUND "
    assert client.ask("blacklist", "x'OR'1'='1") == b"NOTFOUND "
