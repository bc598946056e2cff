"""Real Postfix (postmap -q) looks keys up through sockmapd in MariaDB and PostgreSQL."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
import tomli_w

from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Database

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.parametrize("backend", ["mariadb", "postgresql"], indirect=True),
]

USERS = ["alice@example.com", "bob@example.com", "o'brien@example.com", "jürgen@bücher.example"]
ACCESS = [("hello@buydirect4u.co.uk", "REJECT", "Sender identified as spammer")]


@pytest.fixture(scope="module")
def sockmapd(backend: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A sockmapd serving recipient and access maps from the backend."""
    backend.create_text_table("pf_users", ["address"])
    backend.insert("pf_users", ["address"], [(u,) for u in USERS])
    backend.create_text_table("pf_access", ["name", "status", "reason"])
    backend.insert("pf_access", ["name", "status", "reason"], ACCESS)
    port = free_port()
    config = {
        "server": {"listen": [f"tcp://127.0.0.1:{port}"], "allow_root": True},
        "databases": {"main": {"url": backend.url}},
        "maps": {
            "recipient": {"database": "main", "table": "pf_users", "key": "address"},
            "access": {
                "database": "main",
                "table": "pf_access",
                "key": "name",
                "value": "status",
                "reason": "reason",
            },
        },
    }
    path = tmp_path_factory.mktemp(f"postfix-{backend.name}") / "sockmapd.toml"
    path.write_text(tomli_w.dumps(config))
    daemon = Daemon(path, port)
    try:
        yield daemon
    finally:
        daemon.stop()


def _table(daemon: Daemon, map_name: str) -> str:
    return f"socketmap:inet:127.0.0.1:{daemon.port}:{map_name}"


def _run(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)


def test_postmap_found_key_prints_the_value(sockmapd: Daemon, postmap: list[str]) -> None:
    result = _run([*postmap, "-q", "alice@example.com", _table(sockmapd, "recipient")])
    assert (result.returncode, result.stdout) == (0, "alice@example.com\n"), result.stderr
    result = _run([*postmap, "-q", "hello@buydirect4u.co.uk", _table(sockmapd, "access")])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "REJECT Sender identified as spammer\n"


def test_postmap_missing_key_exits_1_without_error(sockmapd: Daemon, postmap: list[str]) -> None:
    result = _run([*postmap, "-q", "nobody@example.com", _table(sockmapd, "recipient")])
    assert result.returncode == 1
    assert result.stdout == ""
    # Not found is silent; an error would say so on stderr.
    assert result.stderr == ""


def test_postmap_several_keys_over_one_connection(sockmapd: Daemon, postmap: list[str]) -> None:
    keys = [
        "alice@example.com",
        "nobody@example.com",
        "o'brien@example.com",
        "x'OR'1'='1",
        "jürgen@bücher.example",
        "bob@example.com",
    ]
    before = len(sockmapd.log().splitlines())
    result = _run(
        [*postmap, "-q", "-", _table(sockmapd, "recipient")],
        stdin="".join(f"{key}\n" for key in keys),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "alice@example.com\talice@example.com",
        "o'brien@example.com\to'brien@example.com",
        "jürgen@bücher.example\tjürgen@bücher.example",
        "bob@example.com\tbob@example.com",
    ]
    lines = [line for line in sockmapd.log().splitlines()[before:] if "map=recipient" in line]
    assert len(lines) == len(keys), lines
    # Every lookup came from the same client address and port: one connection.
    clients = set(re.findall(r"client=(\S+)", "\n".join(lines)))
    assert len(clients) == 1, clients
