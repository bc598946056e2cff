"""Failover and faults against real MariaDB and PostgreSQL, through a fault-injecting proxy.

Two proxies stand for two hosts of one database cluster; both forward to the same real
server. The tests check what each fault answers and print the measured times (run with
-s to see them); the bounds asserted here are far above the expected times and only
tell a per-host timeout from a global one.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.integration.daemon import Daemon, SocketmapClient, free_port
from tests.integration.databases import Database
from tests.integration.faultproxy import FaultProxy, Mode

CONNECT_TIMEOUT = 1.0
QUERY_TIMEOUT = 1.0
RETRY_INTERVAL = 2.0
FOUND = "alice@example.com"
MISSING = "nobody@example.com"


@dataclass
class Rig:
    """A sockmapd whose database has two hosts, each behind its own fault proxy."""

    daemon: Daemon
    first: FaultProxy
    second: FaultProxy
    kind: str

    def ask(self, map_name: str, key: str) -> tuple[bytes, float]:
        """Send one lookup on a new connection; return the reply and the seconds it took."""
        client = self.daemon.client(timeout=30.0)
        try:
            started = time.monotonic()
            reply = client.ask(map_name, key)
            return reply, time.monotonic() - started
        finally:
            client.close()


def _prepare(database: Database) -> None:
    database.create_text_table("fo_users", ["address"])
    database.insert("fo_users", ["address"], [(FOUND,), ("bob@example.com",)])
    if database.name == "mariadb":
        view = "CREATE OR REPLACE VIEW fo_slow AS SELECT 'k' AS k, SLEEP(5) AS v"
    else:
        view = (
            "CREATE OR REPLACE VIEW fo_slow AS "
            "SELECT 'k'::text AS k, 'v'::text AS v FROM pg_sleep(5)"
        )
    database.execute([view])


@pytest.fixture(params=["mariadb", "postgresql"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    kind: str = request.param
    database: Database = request.getfixturevalue(
        "mysql_database" if kind == "mariadb" else "pg_database"
    )
    _prepare(database)
    url = make_url(database.url)
    upstream = (url.host or "127.0.0.1", url.port or (3306 if kind == "mariadb" else 5432))
    with FaultProxy(*upstream) as first, FaultProxy(*upstream) as second:
        port = free_port()
        password = f'password = "{url.password}"\n' if url.password else ""
        config = f"""
[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true
request_timeout = 20.0

[databases.main]
driver = "{"mysql" if kind == "mariadb" else "postgresql"}"
hosts = ["127.0.0.1:{first.port}", "127.0.0.1:{second.port}"]
name = "{url.database}"
user = "{url.username}"
{password}connect_timeout = {CONNECT_TIMEOUT}
query_timeout = {QUERY_TIMEOUT}
retry_interval = {RETRY_INTERVAL}

[maps.users]
database = "main"
table = "fo_users"
key = "address"

[maps.slow]
database = "main"
table = "fo_slow"
key = "k"
value = "v"
"""
        path = tmp_path / "failover.toml"
        path.write_text(config)
        daemon = Daemon(path, port)
        try:
            yield Rig(daemon, first, second, kind)
        finally:
            daemon.stop()


def _report(rig: Rig, what: str, seconds: float) -> None:
    print(f"\n[{rig.kind}] {what}: {seconds * 1000:.0f} ms")


def test_first_host_refused_is_served_by_the_second(rig: Rig) -> None:
    rig.first.set_mode(Mode.REFUSE)
    reply, took = rig.ask("users", FOUND)
    assert reply == b"OK " + FOUND.encode()
    _report(rig, "failover, first host refused", took)
    assert rig.second.connections_total >= 1
    assert took < CONNECT_TIMEOUT + 3.0


def test_first_host_blackholed_is_served_by_the_second_within_its_own_timeout(rig: Rig) -> None:
    rig.first.set_mode(Mode.BLACKHOLE)
    reply, took = rig.ask("users", FOUND)
    assert reply == b"OK " + FOUND.encode()
    _report(rig, "failover, first host blackholed", took)
    # One connect_timeout for the silent host, then the second host: not a global timeout.
    assert CONNECT_TIMEOUT * 0.8 < took < CONNECT_TIMEOUT + 3.0
    # The silent host is skipped for retry_interval: the next lookup does not wait for it.
    reply, took = rig.ask("users", FOUND)
    assert reply == b"OK " + FOUND.encode()
    assert took < CONNECT_TIMEOUT


def test_every_host_down_is_temp_then_ok_again_without_restart(rig: Rig) -> None:
    assert rig.ask("users", FOUND)[0] == b"OK " + FOUND.encode()
    rig.first.set_mode(Mode.REFUSE)
    rig.second.set_mode(Mode.REFUSE)
    reply, took = rig.ask("users", FOUND)
    assert reply.startswith(b"TEMP "), reply
    _report(rig, "all hosts refused, TEMP after", took)
    assert took < CONNECT_TIMEOUT + 3.0
    assert rig.ask("users", MISSING)[0].startswith(b"TEMP ")
    rig.first.set_mode(Mode.PASS)
    rig.second.set_mode(Mode.PASS)
    back = time.monotonic()
    while True:
        reply, _ = rig.ask("users", FOUND)
        if reply == b"OK " + FOUND.encode():
            break
        assert reply.startswith(b"TEMP "), reply
        assert time.monotonic() - back < 10.0, "no recovery within 10 s"
        time.sleep(0.05)
    _report(rig, "recovery after all hosts came back", time.monotonic() - back)
    assert rig.daemon.process.poll() is None


def test_connection_cut_during_a_query_is_retried_or_temp(rig: Rig) -> None:
    assert rig.ask("users", FOUND)[0] == b"OK " + FOUND.encode()
    rig.first.set_mode(Mode.DELAY, delay=0.6)
    client = rig.daemon.client(timeout=30.0)
    try:
        client.send_raw(b"%d:users %s," % (len(FOUND) + 6, FOUND.encode()))
        time.sleep(0.2)
        rig.first.cut_all()
        rig.first.set_mode(Mode.PASS)
        reply = client.read_reply()
    finally:
        client.close()
    assert reply == b"OK " + FOUND.encode() or reply.startswith(b"TEMP "), reply
    print(f"\n[{rig.kind}] cut during a query answered: {reply[:40]!r}")
    assert "retrying once" in rig.daemon.log() or reply.startswith(b"TEMP ")


def test_query_slower_than_query_timeout_is_timeout(rig: Rig) -> None:
    reply, took = rig.ask("slow", "k")
    assert reply.startswith(b"TIMEOUT "), reply
    _report(rig, "slow query answered TIMEOUT after", took)
    assert took < QUERY_TIMEOUT + 3.0
    # The server and the other maps carry on.
    assert rig.ask("users", FOUND)[0] == b"OK " + FOUND.encode()


def test_steady_traffic_through_every_fault_never_notfound_or_wrong_ok(rig: Rig) -> None:
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    wrong: list[tuple[str, bytes]] = []

    expected = b"OK " + FOUND.encode()

    def traffic() -> None:
        client: SocketmapClient | None = None
        i = 0
        while not stop.is_set():
            key = FOUND if i % 2 == 0 else MISSING
            i += 1
            try:
                if client is None:
                    client = rig.daemon.client(timeout=30.0)
                reply = client.ask("users", key)
            except (OSError, EOFError):
                outcomes["connection error"] += 1
                client = None
                continue
            word = reply.split(b" ", 1)[0].decode()
            outcomes[f"{key}: {word}"] += 1
            # A deferral (TEMP/TIMEOUT) is fine; a wrong answer never is.
            if key == FOUND and (word == "NOTFOUND" or (word == "OK" and reply != expected)):
                wrong.append((key, reply))
            if key == MISSING and word == "OK":
                wrong.append((key, reply))
        if client is not None:
            client.close()

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        faults = [
            ("first refused", lambda: rig.first.set_mode(Mode.REFUSE)),
            ("first blackholed", lambda: rig.first.set_mode(Mode.BLACKHOLE)),
            ("first cut", lambda: (rig.first.set_mode(Mode.PASS), rig.first.cut_all())),
            ("second cut", rig.second.cut_all),
            (
                "all refused",
                lambda: (rig.first.set_mode(Mode.REFUSE), rig.second.set_mode(Mode.REFUSE)),
            ),
            (
                "all blackholed",
                lambda: (rig.first.set_mode(Mode.BLACKHOLE), rig.second.set_mode(Mode.BLACKHOLE)),
            ),
            (
                "first slow",
                lambda: (
                    rig.second.set_mode(Mode.REFUSE),
                    rig.first.set_mode(Mode.DELAY, delay=1.5),
                ),
            ),
        ]
        for _, fault in faults:
            rig.first.set_mode(Mode.PASS)
            rig.second.set_mode(Mode.PASS)
            time.sleep(0.5)
            fault()
            time.sleep(2.0)
        rig.first.set_mode(Mode.PASS)
        rig.second.set_mode(Mode.PASS)
        time.sleep(RETRY_INTERVAL + 1.0)
    finally:
        stop.set()
        worker.join(60)
    print(f"\n[{rig.kind}] steady traffic outcomes: {dict(outcomes)}")
    assert wrong == []
    assert outcomes[f"{FOUND}: OK"] > 0
    assert outcomes[f"{MISSING}: NOTFOUND"] > 0
    # Faults really happened: some lookups were deferred.
    assert outcomes[f"{FOUND}: TEMP"] + outcomes[f"{FOUND}: TIMEOUT"] > 0
    # And after the last fault the service is back.
    assert rig.ask("users", FOUND)[0] == b"OK " + FOUND.encode()


def test_daemon_starts_with_no_reachable_database_and_answers_temp(
    tmp_path: Path,
) -> None:
    # Nothing listens on this port yet: the database is down when sockmapd starts.
    db_port = free_port()
    port = free_port()
    path = tmp_path / "nodb.toml"
    path.write_text(
        f"""
[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true
[databases.main]
driver = "mysql"
hosts = ["127.0.0.1:{db_port}"]
name = "x"
user = "root"
connect_timeout = {CONNECT_TIMEOUT}
[maps.users]
database = "main"
table = "fo_users"
key = "address"
"""
    )
    daemon = Daemon(path, port)
    try:
        reply = daemon.client().ask("users", FOUND)
        assert reply.startswith(b"TEMP "), reply
        assert daemon.process.poll() is None
    finally:
        daemon.stop()
