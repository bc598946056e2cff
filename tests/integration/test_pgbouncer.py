"""PostgreSQL through a real PgBouncer in transaction and statement pooling.

Each test starts its own PgBouncer (Debian's package) on a free port, in front of
its own database; the bouncer keeps fewer server connections (4) than sockmapd's
pool (10), so lookups of different sockmapd connections share server connections,
as they do at a site.
"""

from __future__ import annotations

import itertools
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.integration.conftest import pgbouncer_binary
from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Database, Server, unique_name
from tests.integration.pgbouncer import PgBouncer

USERS = 200
CLIENTS = 40
REQUESTS_PER_CLIENT = 50
HINT = "set pgbouncer = true in [databases.mail]"
POOL_MODES = ["transaction", "statement"]

_numbers = itertools.count()

BouncerFactory = Callable[..., PgBouncer]


@pytest.fixture
def mail_database(pg_server: Server) -> Iterator[Database]:
    """A PostgreSQL database of this test alone, with USERS mailboxes."""
    name = unique_name(f"pgb{next(_numbers)}")
    database = pg_server.create_database(name)
    try:
        database.execute(
            [
                "CREATE TABLE mailboxes "
                "(address TEXT PRIMARY KEY, maildir TEXT NOT NULL, quota TEXT NOT NULL)"
            ]
        )
        database.insert(
            "mailboxes",
            ["address", "maildir", "quota"],
            [(address(n), maildir(n), quota(n)) for n in range(USERS)],
        )
        yield database
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def start_bouncer(pg_server: Server, tmp_path: Path) -> Iterator[BouncerFactory]:
    """Start PgBouncer processes in front of the test server; each is stopped at the end."""
    binary = pgbouncer_binary()
    started: list[PgBouncer] = []

    def start(**options: Any) -> PgBouncer:
        directory = tmp_path / f"pgbouncer{len(started)}"
        directory.mkdir()
        bouncer = PgBouncer(binary, directory, pg_server.url, free_port(), **options)
        started.append(bouncer)
        return bouncer

    try:
        yield start
    finally:
        for bouncer in started:
            bouncer.stop()


def address(n: int) -> str:
    return f"user{n}@example.com"


def maildir(n: int) -> str:
    return f"example.com/user{n}/"


def quota(n: int) -> str:
    return f"{n}M"


def config(url: str, port: int, option: str, extra: str = "") -> str:
    # Two maps with different statements: a statement run in place of another would
    # show as a wrong answer, not only as an error.
    return f"""
[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true

[log]
level = "warning"

[databases.mail]
url = "{url}"
{option}
connect_timeout = 5.0
query_timeout = 10.0
pool_size = 10

[maps.mailbox]
database = "mail"
table = "mailboxes"
key = "address"
value = "maildir"

[maps.quota]
database = "mail"
table = "mailboxes"
key = "address"
value = "quota"
{extra}
"""


def start_daemon(
    tmp_path: Path, url: str, *, option: str = "pgbouncer = true", extra: str = ""
) -> Daemon:
    port = free_port()
    path = tmp_path / f"sockmapd{next(_numbers)}.toml"
    path.write_text(config(url, port, option, extra))
    return Daemon(path, port)


def case(client: int, request: int, *, missing: bool = True) -> tuple[str, str, bytes]:
    """Return the map, key and right answer of one request of one client."""
    n = (client * 7919 + request * 104729) % USERS
    if missing and request % 4 == 3:
        return ("mailbox" if request % 8 == 3 else "quota"), f"nobody{n}@example.com", b"NOTFOUND "
    if request % 2:
        return "quota", address(n), b"OK " + quota(n).encode()
    return "mailbox", address(n), b"OK " + maildir(n).encode()


@dataclass
class Tally:
    """What a load run saw: every request, the wrong answers and the TEMP/TIMEOUT ones."""

    requests: int = 0
    wrong: int = 0
    temp: int = 0
    notfound: int = 0
    after_kill: int = 0
    wrong_samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, reply: bytes, right: bytes, *, after_kill: bool = False) -> None:
        with self.lock:
            self.requests += 1
            self.after_kill += after_kill
            if reply.startswith((b"TEMP ", b"TIMEOUT ")):
                self.temp += 1
            elif reply != right:
                self.wrong += 1
                if len(self.wrong_samples) < 5:
                    self.wrong_samples.append(f"{reply!r} instead of {right!r}")
            if reply.startswith(b"NOTFOUND") and right != b"NOTFOUND ":
                self.notfound += 1

    def report(self, what: str) -> str:
        return f"{what}: requests={self.requests} wrong={self.wrong} TEMP={self.temp}"


def run_load(
    daemon: Daemon, clients: int, requests: int, *, missing: bool = True, tally: Tally | None = None
) -> Tally:
    """Send requests lookups over each of clients connections at once; tally the answers."""
    tally = Tally() if tally is None else tally
    failures: list[BaseException] = []

    def client(number: int) -> None:
        try:
            connection = daemon.client(timeout=60.0)
            try:
                for request in range(requests):
                    map_name, key, right = case(number, request, missing=missing)
                    tally.add(connection.ask(map_name, key), right)
            finally:
                connection.close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    return tally


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print a measurement even when pytest captures output."""
    with capsys.disabled():
        print(f"\n{line}")


@pytest.mark.parametrize("pool_mode", POOL_MODES)
def test_found_and_missing_through_pgbouncer(
    pool_mode: str, mail_database: Database, start_bouncer: BouncerFactory, tmp_path: Path
) -> None:
    bouncer = start_bouncer(pool_mode=pool_mode)
    daemon = start_daemon(tmp_path, bouncer.url(mail_database.url))
    try:
        client = daemon.client()
        for _ in range(3):
            assert client.ask("mailbox", address(1)) == b"OK " + maildir(1).encode()
            assert client.ask("quota", address(2)) == b"OK " + quota(2).encode()
            assert client.ask("mailbox", "nobody@example.com") == b"NOTFOUND "
            assert client.ask("quota", "nobody@example.com") == b"NOTFOUND "
    finally:
        daemon.stop()
    assert HINT not in daemon.log()
    assert "unsupported startup parameter" not in bouncer.log()


@pytest.mark.parametrize("pool_mode", POOL_MODES)
def test_load_with_40_connections_answers_every_request_right(
    pool_mode: str,
    mail_database: Database,
    start_bouncer: BouncerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bouncer = start_bouncer(pool_mode=pool_mode)
    daemon = start_daemon(tmp_path, bouncer.url(mail_database.url))
    try:
        tally = run_load(daemon, CLIENTS, REQUESTS_PER_CLIENT)
    finally:
        daemon.stop()
    report(capsys, tally.report(f"PgBouncer pool_mode={pool_mode}, {CLIENTS} connections"))
    assert tally.requests == CLIENTS * REQUESTS_PER_CLIENT
    assert tally.wrong == 0, tally.wrong_samples
    assert tally.temp == 0, daemon.log()[-3000:]


def test_bouncer_killed_during_load_answers_temp_never_notfound(
    mail_database: Database,
    start_bouncer: BouncerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bouncer = start_bouncer()
    daemon = start_daemon(tmp_path, bouncer.url(mail_database.url))
    tally = Tally()
    started = threading.Semaphore(0)
    killed = threading.Event()
    failures: list[BaseException] = []
    after_kill = 10

    def client(number: int) -> None:
        released = False
        try:
            connection = daemon.client(timeout=60.0)
            try:
                request = 0
                left = after_kill
                while left:
                    if request == 5:
                        started.release()
                        released = True
                    sent_after_kill = killed.is_set()
                    # Only keys that exist: any NOTFOUND would be a lost mail.
                    map_name, key, right = case(number, request, missing=False)
                    reply = connection.ask(map_name, key)
                    tally.add(reply, right, after_kill=sent_after_kill)
                    if sent_after_kill:
                        assert reply.startswith((b"TEMP ", b"TIMEOUT ")), reply
                        left -= 1
                    request += 1
            finally:
                connection.close()
        except BaseException as exc:
            failures.append(exc)
        finally:
            if not released:
                started.release()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        # Every client has had answers through the bouncer: kill it under load.
        for _ in threads:
            started.acquire()
        bouncer.kill()
        killed.set()
        for thread in threads:
            thread.join()
    finally:
        killed.set()
        daemon.stop()
    report(capsys, tally.report(f"PgBouncer killed during load, {CLIENTS} connections"))
    assert not failures, failures
    assert tally.notfound == 0
    assert tally.wrong == 0, tally.wrong_samples
    assert tally.after_kill == CLIENTS * after_kill
    assert tally.temp >= tally.after_kill


def test_without_the_option_a_stock_bouncer_refuses_and_the_log_names_the_option(
    mail_database: Database, start_bouncer: BouncerFactory, tmp_path: Path
) -> None:
    bouncer = start_bouncer()
    daemon = start_daemon(tmp_path, bouncer.url(mail_database.url), option="")
    try:
        client = daemon.client()
        replies = [client.ask("mailbox", address(n)) for n in range(5)]
    finally:
        daemon.stop()
    assert all(reply.startswith(b"TEMP ") for reply in replies), replies
    assert "unsupported startup parameter: default_transaction_read_only" in bouncer.log()
    hinted = [line for line in daemon.log().splitlines() if HINT in line]
    assert len(hinted) == 1, daemon.log()
    assert "startup parameter: default_transaction_read_only" in hinted[0]


def test_without_the_option_lost_prepared_statements_answer_temp_and_name_the_option(
    mail_database: Database, start_bouncer: BouncerFactory, tmp_path: Path
) -> None:
    # A bouncer told to drop the startup parameter lets asyncpg's named statements
    # through, and they fail on the next transaction's server connection. One map
    # only: with several, a statement of one map may run in place of another's, and
    # the answer is wrong rather than TEMP (see docs/operations.md).
    bouncer = start_bouncer(
        extra="ignore_startup_parameters = extra_float_digits,default_transaction_read_only"
    )
    port = free_port()
    path = tmp_path / "one-map.toml"
    text = config(bouncer.url(mail_database.url), port, "")
    path.write_text(text[: text.index("[maps.quota]")])
    daemon = Daemon(path, port)
    tally = Tally()
    try:
        # Until the first failure: how soon it comes depends on the scheduling.
        for _ in range(40):
            run_load(daemon, 10, 10, missing=False, tally=tally)
            if tally.temp:
                break
    finally:
        daemon.stop()
    assert tally.notfound == 0
    assert tally.wrong == 0
    assert tally.temp > 0
    hinted = [line for line in daemon.log().splitlines() if HINT in line]
    assert len(hinted) == 1, daemon.log()
    assert "prepared statement" in hinted[0]


@pytest.fixture
def reader(pg_server: Server, mail_database: Database) -> Iterator[tuple[str, str]]:
    """A role (name, password) that may only read the mailboxes and a view that writes."""
    role = unique_name(f"reader{next(_numbers)}")
    # The password is for servers that ask for one; PgBouncer logs in with it.
    password = secrets.token_hex(8)
    mail_database.execute(
        [
            f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'",
            "CREATE SEQUENCE lookups",
            "CREATE VIEW counted AS SELECT address, nextval('lookups')::text AS n FROM mailboxes",
            f'GRANT SELECT ON mailboxes, counted TO "{role}"',
        ]
    )
    try:
        yield role, password
    finally:
        pg_server.drop_database(mail_database.url.rsplit("/", 1)[1])
        pg_server.admin().execute([f'DROP ROLE IF EXISTS "{role}"'])


@pytest.mark.parametrize("guard", ["privileges", "role setting"])
def test_a_writing_query_is_still_refused(
    guard: str,
    reader: tuple[str, str],
    mail_database: Database,
    start_bouncer: BouncerFactory,
    tmp_path: Path,
) -> None:
    role, password = reader
    if guard == "role setting":
        # The role may write the sequence, but its sessions start read-only: a setting
        # of the server, on every server connection PgBouncer opens for the role.
        mail_database.execute(
            [
                f'GRANT USAGE ON SEQUENCE lookups TO "{role}"',
                f'ALTER ROLE "{role}" SET default_transaction_read_only = on',
            ]
        )
    bouncer = start_bouncer(users={role: password})
    url = (
        make_url(bouncer.url(mail_database.url))
        .set(username=role, password=None)
        .render_as_string(hide_password=False)
    )
    extra = """
[maps.counted]
database = "mail"
table = "counted"
key = "address"
value = "n"
"""
    daemon = start_daemon(tmp_path, url, extra=extra)
    try:
        client = daemon.client()
        assert client.ask("mailbox", address(1)) == b"OK " + maildir(1).encode()
        reply = client.ask("counted", address(1))
    finally:
        daemon.stop()
    assert reply.startswith(b"TEMP "), reply
    expected = "permission denied" if guard == "privileges" else "read-only transaction"
    assert expected in daemon.log(), daemon.log()
    # Nothing was written: the sequence has never been used.
    assert mail_database.fetch("SELECT is_called FROM lookups") == [(False,)]


def test_check_config_connects_through_pgbouncer_and_refuses_a_writing_query(
    mail_database: Database, start_bouncer: BouncerFactory, tmp_path: Path
) -> None:
    bouncer = start_bouncer()
    url = bouncer.url(mail_database.url)
    good = tmp_path / "good.toml"
    good.write_text(config(url, free_port(), "pgbouncer = true"))
    checked = subprocess.run(
        [sys.executable, "-m", "sockmapd", "--check-config", "--connect", "-c", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    writing = """
[maps.writer]
database = "mail"
query = "UPDATE mailboxes SET quota = '0M' WHERE address = '%s' RETURNING quota"
"""
    bad = tmp_path / "bad.toml"
    bad.write_text(config(url, free_port(), "pgbouncer = true", writing))
    refused = subprocess.run(
        [sys.executable, "-m", "sockmapd", "--check-config", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "the query may only read: UPDATE is not allowed" in refused.stderr
