"""The lookup pool of raw driver connections against real PostgreSQL and MariaDB servers."""

# Each test gets a database of its own, so that counting and killing the server sessions
# of that database touches nothing but this test's sockmapd.

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from sqlalchemy.engine import make_url

from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Database, Server, ServerKind, unique_name
from tests.integration.test_metrics import health, sample, scrape

USERS = [f"user{i}@example.com" for i in range(40)]
# A key that an injected condition would turn into a match: the table is not empty.
INJECTIONS = [
    "x' OR '1'='1",
    "x' OR '1'='1' -- ",
    "x\\' OR 1=1 #",
    "%s",
    "%%s",
    "%",
    "$1",
    "$1 OR TRUE",
    "?",
    ":x_s",
    "\\",
    "\\\\",
    "back\\slash' OR ''='",
    "ünïcødé ✉ 😀 ' OR 'a'='a",
]
SLOW_QUERY = {
    "postgresql": "SELECT '%s' FROM pg_sleep(60)",
    # BENCHMARK, unlike SLEEP, does not notice a client that went away (the fixture
    # kills what a failed test leaves running).
    "mariadb": "SELECT '%s' FROM DUAL WHERE BENCHMARK(3000000000, MD5('x')) = 0",
}
# Wait for sessions to end or appear; generous, and never asserted on.
SETTLE_SECONDS = 30.0

_numbers = itertools.count()


@dataclass
class PoolSetup:
    """A sockmapd on a database of its own, and the server to watch its sessions from."""

    server: Server
    database: Database
    name: str
    daemon: Daemon

    def sessions(self) -> list[int]:
        """Return the ids of the server sessions connected to this test's database."""
        if self.server.kind == "postgresql":
            sql = (
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'sockmapd' "
                f"AND datname = '{self.name}' ORDER BY pid"
            )
        else:
            sql = (
                "SELECT ID FROM information_schema.PROCESSLIST "
                f"WHERE DB = '{self.name}' AND ID <> CONNECTION_ID() ORDER BY ID"
            )
        return [int(row[0]) for row in self.server.admin().fetch(sql)]

    def running_sleeps(self) -> int:
        """Return how many of this test's "slow" queries the server is still running."""
        if self.server.kind == "postgresql":
            sql = (
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'sockmapd' "
                f"AND datname = '{self.name}' AND state = 'active' "
                "AND query LIKE '%pg_sleep%'"
            )
        else:
            sql = (
                "SELECT ID FROM information_schema.PROCESSLIST "
                f"WHERE DB = '{self.name}' AND ID <> CONNECTION_ID() "
                "AND INFO LIKE '%BENCHMARK(%'"
            )
        return len(self.server.admin().fetch(sql))

    def kill_now(self) -> int:
        """End every session of this test's database at once, without waiting; return how many."""
        admin = self.server.admin()
        if self.server.kind == "postgresql":
            return len(
                admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE application_name = 'sockmapd' AND datname = '{self.name}'"
                )
            )
        ids = self.sessions()
        for session in ids:
            # A session may have ended on its own meanwhile.
            with contextlib.suppress(Exception):
                admin.execute([f"KILL CONNECTION {session}"])
        return len(ids)

    def kill_sessions(self) -> int:
        """Make the server end every session of this test's database; return how many."""
        admin = self.server.admin()
        if self.server.kind == "postgresql":
            rows = admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE application_name = 'sockmapd' AND datname = '{self.name}'"
            )
            killed = len(rows)
        else:
            ids = self.sessions()
            admin.execute([f"KILL CONNECTION {session}" for session in ids])
            killed = len(ids)
        wait_until(lambda: not self.sessions(), "the killed sessions to end")
        return killed


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(params=["postgresql", "mariadb"])
def start(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., PoolSetup]]:
    """Start a sockmapd with the given database options on a fresh database."""
    kind: ServerKind = request.param
    fixture = "pg_server" if kind == "postgresql" else "mysql_server"
    server: Server = request.getfixturevalue(fixture)
    name = unique_name(f"pool{next(_numbers)}")
    database = server.create_database(name)
    daemons: list[Daemon] = []
    try:
        database.create_text_table("lk_users", ["address", "note"], exact=True)
        database.insert("lk_users", ["address", "note"], [(u, f"note of {u}") for u in USERS])

        def launch(*, metrics_port: int | None = None, **options: Any) -> PoolSetup:
            port = free_port()
            config: dict[str, Any] = {
                "server": {"listen": [f"tcp://127.0.0.1:{port}"], "allow_root": True},
                "databases": {"main": {"url": database.url, **options}},
                "maps": {
                    "recipient": {"database": "main", "table": "lk_users", "key": "address"},
                    "noted": {
                        "database": "main",
                        # Several expansions, one of them twice, a literal % and a quote.
                        "query": (
                            "SELECT note FROM lk_users WHERE address = '%s' "
                            "AND address = CONCAT('%u', '@', '%d') "
                            "AND note NOT LIKE '%%100%% off' AND note <> 'it''s'"
                        ),
                    },
                    "missing": {"database": "main", "table": "no_such_table", "key": "k"},
                    # Runs for a minute on the server: past any query_timeout used here.
                    "slow": {"database": "main", "query": SLOW_QUERY[kind]},
                },
            }
            if metrics_port is not None:
                config["metrics"] = {"listen": f"tcp://127.0.0.1:{metrics_port}"}
            path = tmp_path / f"sockmapd-{len(daemons)}.toml"
            path.write_text(tomli_w.dumps(config))
            daemon = Daemon(path, port)
            daemons.append(daemon)
            return PoolSetup(server, database, name, daemon)

        yield launch
    finally:
        for daemon in daemons:
            daemon.stop()
        if kind == "mariadb":
            # A "slow" query left running (when a test fails) would burn a core for
            # hours: dropping the database does not stop it.
            admin = server.admin()
            for (session,) in admin.fetch(
                "SELECT ID FROM information_schema.PROCESSLIST "
                f"WHERE DB = '{name}' AND ID <> CONNECTION_ID()"
            ):
                with contextlib.suppress(Exception):
                    admin.execute([f"KILL {int(session)}"])
        server.drop_database(name)


def ask_concurrently(daemon: Daemon, requests: list[tuple[str, str]]) -> list[bytes]:
    """Send each request on a connection of its own, all at once; return the replies in order."""
    clients = [daemon.client(timeout=60.0) for _ in requests]
    replies: list[bytes] = [b""] * len(requests)
    barrier = threading.Barrier(len(requests))

    def ask(index: int) -> None:
        barrier.wait()
        map_name, key = requests[index]
        try:
            replies[index] = clients[index].ask(map_name, key)
        except Exception as exc:
            replies[index] = repr(exc).encode()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(requests))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for client in clients:
            client.close()
    return replies


def found(user: str) -> bytes:
    return b"OK " + user.encode()


def test_lookups_after_the_server_killed_every_session_answer_ok(
    start: Callable[..., PoolSetup],
) -> None:
    setup = start(pool_size=6, query_timeout=30.0)
    daemon = setup.daemon
    requests = [("recipient", USERS[i]) for i in range(20)]
    # Concurrent lookups until several pooled connections are open.
    for _ in range(20):
        assert ask_concurrently(daemon, requests) == [found(u) for _, u in requests]
        if len(setup.sessions()) >= 3:
            break
    assert len(setup.sessions()) >= 3, "the lookups never ran on several connections"

    # One client, one lookup after another: the first one to find its connection
    # lost retires every other one, and its single retry opens a fresh one.
    assert setup.kill_sessions() >= 3
    client = daemon.client(timeout=60.0)
    try:
        for user in USERS[:12]:
            assert client.ask("recipient", user) == found(user), daemon.log()
        assert client.ask("noted", USERS[0]) == b"OK note of " + USERS[0].encode()
    finally:
        client.close()

    # Many at once on the pool reopened after the first kill.
    for _ in range(20):
        assert ask_concurrently(daemon, requests) == [found(u) for _, u in requests]
        if len(setup.sessions()) >= 3:
            break
    assert setup.kill_sessions() >= 3
    replies = ask_concurrently(daemon, requests)
    assert replies == [found(u) for _, u in requests], daemon.log()
    assert b"TEMP" not in b"".join(replies)


def test_a_missing_table_answers_temp_without_churning_connections(
    start: Callable[..., PoolSetup],
) -> None:
    setup = start(pool_size=3, query_timeout=30.0)
    daemon = setup.daemon
    client = daemon.client(timeout=60.0)
    try:
        assert client.ask("recipient", USERS[0]) == found(USERS[0])
        first = client.ask("missing", "anything")
        assert first.startswith(b"TEMP "), first
        before = setup.sessions()
        for i in range(30):
            reply = client.ask("missing", f"key{i}")
            assert reply.startswith(b"TEMP "), reply
        # The same connection answered every one of them: none was closed and reopened.
        assert setup.sessions() == before
        assert len(before) >= 1
    finally:
        client.close()
    replies = ask_concurrently(daemon, [("missing", f"key{i}") for i in range(20)])
    assert all(reply.startswith(b"TEMP ") for reply in replies), replies
    assert 1 <= len(setup.sessions()) <= 3
    client = daemon.client(timeout=60.0)
    try:
        assert client.ask("recipient", USERS[1]) == found(USERS[1])
    finally:
        client.close()


def test_many_clients_on_two_connections_all_get_their_own_answers(
    start: Callable[..., PoolSetup],
) -> None:
    setup = start(pool_size=2, max_overflow=0, query_timeout=60.0)
    daemon = setup.daemon
    wrong: list[str] = []
    barrier = threading.Barrier(30)

    def client_run(number: int) -> None:
        try:
            client = daemon.client(timeout=120.0)
        except OSError as exc:
            wrong.append(f"client {number}: {exc!r}")
            return
        try:
            barrier.wait()
            for i in range(15):
                user = USERS[(number * 7 + i) % len(USERS)]
                local = user.split("@")[0]
                checks = [
                    ("recipient", user, found(user)),
                    ("recipient", f"absent{number}.{i}@example.com", b"NOTFOUND "),
                    ("noted", user, b"OK note of " + user.encode()),
                    ("noted", f"{local}@other.example", b"NOTFOUND "),
                ]
                for map_name, key, want in checks:
                    got = client.ask(map_name, key)
                    if got != want:
                        wrong.append(f"client {number}: {map_name} {key}: {got!r}, not {want!r}")
        except Exception as exc:
            wrong.append(f"client {number}: {exc!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=client_run, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert len(setup.sessions()) <= 2


def test_injection_attempts_stay_bound_parameters(start: Callable[..., PoolSetup]) -> None:
    setup = start(pool_size=2)
    client = setup.daemon.client(timeout=60.0)
    try:
        for key in INJECTIONS:
            for map_name in ("recipient", "noted"):
                assert client.ask(map_name, key) == b"NOTFOUND ", (map_name, key)
            assert client.ask("noted", f"{key}@example.com") == b"NOTFOUND ", key
        # The table is intact and still answers.
        assert client.ask("recipient", USERS[3]) == found(USERS[3])
    finally:
        client.close()
    assert setup.database.count("lk_users") == len(USERS)


def test_a_query_timeout_closes_only_the_connection_it_ran_on(
    start: Callable[..., PoolSetup],
) -> None:
    setup = start(pool_size=4, max_overflow=0, query_timeout=1.0)
    daemon = setup.daemon
    requests = [("recipient", USERS[i]) for i in range(12)]
    for _ in range(20):
        assert ask_concurrently(daemon, requests) == [found(u) for _, u in requests]
        if len(setup.sessions()) >= 3:
            break
    before = set(setup.sessions())
    assert len(before) >= 3, "the lookups never ran on several connections"

    client = daemon.client(timeout=60.0)
    try:
        reply = client.ask("slow", "slow@example.com")
    finally:
        client.close()
    assert reply.startswith(b"TIMEOUT "), reply
    # The lookups that follow run on the connections that were open before the
    # timeout: a slow query says nothing about them.
    for _ in range(3):
        assert ask_concurrently(daemon, requests) == [found(u) for _, u in requests]
    time.sleep(1.0)  # let the server notice any connection that was closed
    kept = before & set(setup.sessions())
    assert len(kept) >= len(before) - 1, (sorted(before), sorted(setup.sessions()))


def test_timed_out_queries_do_not_keep_running_on_the_server(
    start: Callable[..., PoolSetup],
) -> None:
    setup = start(pool_size=4, query_timeout=0.5)
    client = setup.daemon.client(timeout=60.0)
    try:
        for i in range(10):
            reply = client.ask("slow", f"slow{i}@example.com")
            assert reply.startswith(b"TIMEOUT "), reply
        # Each query sleeps for a minute on the server; none may be left running.
        wait_until(lambda: setup.running_sleeps() == 0, "the timed-out queries to stop")
        assert client.ask("recipient", USERS[0]) == found(USERS[0])
    finally:
        client.close()


class Load:
    """Clients that look up found keys one after another, each on its own connection."""

    def __init__(self, daemon: Daemon, clients: int) -> None:
        self._daemon = daemon
        self.answered = 0
        self.wrong: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, number: int) -> None:
        client = self._daemon.client(timeout=60.0)
        try:
            i = number
            while not self._stop.is_set():
                user = USERS[i % len(USERS)]
                got = client.ask("recipient", user)
                self.answered += 1
                if got != found(user):
                    self.wrong.append(f"{user}: {got!r}")
                i += 7
        except Exception as exc:
            self.wrong.append(f"client {number}: {exc!r}")
        finally:
            client.close()


def test_sessions_killed_under_load_cost_no_lookup(
    start: Callable[..., PoolSetup],
) -> None:
    setup = start(pool_size=5, query_timeout=30.0)
    kills = 0
    with Load(setup.daemon, clients=10) as load:
        for _ in range(8):
            time.sleep(0.5)
            kills += setup.kill_now()
    assert kills >= 8
    assert load.answered > 100
    assert load.wrong == [], load.wrong[:10]


# --- reload storms and /healthz on the lookup pool -------------------------------------


@contextlib.contextmanager
def limited_role(setup: PoolSetup, limit: int) -> Iterator[str]:
    """Create a login role that may hold at most limit sessions; yield its URL for sockmapd."""
    role = f"{setup.name}_limited"
    admin = setup.server.admin()
    if setup.server.kind == "postgresql":
        admin.execute([f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT {limit}'])
        setup.database.execute([f'GRANT SELECT ON lk_users TO "{role}"'])
    else:
        admin.execute(
            [
                f"CREATE USER '{role}'@'%' WITH MAX_USER_CONNECTIONS {limit}",
                f"GRANT SELECT ON `{setup.name}`.* TO '{role}'@'%'",
            ]
        )
    try:
        yield make_url(setup.database.url).set(username=role).render_as_string(hide_password=False)
    finally:
        setup.daemon.stop()
        if setup.server.kind == "postgresql":
            setup.database.execute([f'DROP OWNED BY "{role}"'])
            admin.execute([f'DROP ROLE IF EXISTS "{role}"'])
        else:
            admin.execute([f"DROP USER IF EXISTS '{role}'@'%'"])


class SessionSampler:
    """Count the server sessions of one test's database over and over until stopped."""

    def __init__(self, setup: PoolSetup) -> None:
        self._setup = setup
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SessionSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, len(self._setup.sessions()))
            self.samples += 1
            time.sleep(0.02)


@dataclass
class Storm:
    """What clients saw while a daemon was sent SIGHUP after SIGHUP."""

    reloads: int
    answered: int
    wrong: list[str]
    most_sessions: int


def reload_storm(
    setup: PoolSetup, clients: int, before_each: Callable[[int], None] = lambda _n: None
) -> Storm:
    """Send 100 SIGHUPs in 20 s while clients look up found keys; return what they saw."""
    daemon = setup.daemon
    with SessionSampler(setup) as sampler, Load(daemon, clients) as load:
        for number in range(100):
            before_each(number)
            daemon.signal(signal.SIGHUP)
            time.sleep(0.2)
    storm = Storm(daemon.log().count("reloaded "), load.answered, load.wrong, sampler.most)
    print(
        f"\n100 SIGHUPs, {clients} clients: {storm.reloads} reloads, {storm.answered} lookups, "
        f"at most {storm.most_sessions} sessions in {sampler.samples} samples"
    )
    return storm


def test_a_reload_storm_stays_within_the_role_connection_limit(
    start: Callable[..., PoolSetup],
) -> None:
    size = 4
    first = start(pool_size=1)
    first.daemon.stop()
    with limited_role(first, 2 * size) as url:
        setup = start(url=url, pool_size=size, max_overflow=0)
        # No more clients than connections: a pool never waits, so TEMP can only
        # come from the database refusing a connection.
        storm = reload_storm(setup, size)
    assert storm.reloads >= 50
    assert storm.answered > 100
    assert storm.wrong == [], storm.wrong[:10]
    assert storm.most_sessions <= 2 * size


def test_reloads_that_change_the_database_close_the_old_idle_connections_at_once(
    start: Callable[..., PoolSetup],
) -> None:
    size = 4
    first = start(pool_size=1)
    first.daemon.stop()
    with limited_role(first, 2 * size) as url:
        setup = start(url=url, pool_size=size, max_overflow=0, query_timeout=5.0)
        path = setup.daemon.config_path
        texts = [path.read_text()]
        texts.append(texts[0].replace("query_timeout = 5.0", "query_timeout = 6.0"))
        assert texts[0] != texts[1]

        def change(number: int) -> None:
            replacement = path.with_suffix(".new")
            replacement.write_text(texts[(number + 1) % 2])
            os.replace(replacement, path)

        # Every reload replaces the pool: the new one may open size connections
        # while the old one still holds those of the lookups in flight (at most
        # one per client); one session of room is left for the server to notice
        # a closed connection.
        storm = reload_storm(setup, size - 1, change)
    assert storm.reloads >= 50
    assert storm.answered > 100
    assert storm.wrong == [], storm.wrong[:10]
    assert storm.most_sessions <= 2 * size


def held_pool(setup: PoolSetup, holders: int) -> tuple[list[threading.Thread], list[bytes]]:
    """Start holders slow lookups, each on a connection of its own; return them once running."""
    replies: list[bytes] = []

    def hold(number: int) -> None:
        client = setup.daemon.client(timeout=60.0)
        try:
            replies.append(client.ask("slow", f"slow{number}@example.com"))
        except Exception as exc:
            replies.append(repr(exc).encode())
        finally:
            client.close()

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(holders)]
    for thread in threads:
        thread.start()
    wait_until(lambda: setup.running_sleeps() >= 1, "the slow query to run")
    return threads, replies


def test_healthz_is_503_while_the_lookup_pool_is_exhausted(
    start: Callable[..., PoolSetup],
) -> None:
    metrics_port = free_port()
    setup = start(pool_size=1, max_overflow=0, query_timeout=8.0, metrics_port=metrics_port)
    assert health(metrics_port)[0] == 200
    # One slow lookup holds the only connection and a second one waits for it.
    threads, replies = held_pool(setup, 2)
    try:
        status, body = health(metrics_port)
        assert status == 503, body
        reason = str(body["databases"]["main"])  # type: ignore[index]
        assert reason.startswith("pool exhausted: 1 of 1 connections in use"), reason
        # The busy pool was not probed: the database is still up as last seen.
        samples = scrape(metrics_port)
        assert sample(samples, "sockmapd_database_up", database="main") == 1
        in_use = sample(samples, "sockmapd_pool_connections_in_use", database="main")
        assert in_use == sample(samples, "sockmapd_pool_max_connections", database="main")
    finally:
        for thread in threads:
            thread.join()
    # The slow lookup ran out of time, its waiter out of patience.
    assert all(reply.startswith((b"TIMEOUT ", b"TEMP ")) for reply in replies), replies
    assert health(metrics_port) == (200, {"status": "ok", "databases": {"main": "ok"}})
