"""The metrics listener of a real sockmapd: /metrics after real traffic, /healthz across a cut.

The daemon is a real process; requests go over real sockets and the metrics are
scraped with a real HTTP client. The health tests cut a real MariaDB or PostgreSQL
through the fault proxy.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.integration.conftest import DaemonFactory, make_sqlite
from tests.integration.daemon import Daemon, free_port
from tests.integration.databases import Database
from tests.integration.faultproxy import FaultProxy, Mode

WAIT = 30.0
Labels = tuple[tuple[str, str], ...]


def get(port: int, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    """Return the status, content type and body of one HTTP request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def scrape(port: int) -> dict[tuple[str, Labels], float]:
    """Return every sample of /metrics by (name, sorted labels)."""
    status, content_type, body = get(port, "/metrics")
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """Return the value of one sample; KeyError if the exposition lacks it."""
    return samples[(name, tuple(sorted(labels.items())))]


def health(port: int) -> tuple[int, dict[str, object]]:
    status, content_type, body = get(port, "/healthz")
    assert content_type == "application/json"
    return status, json.loads(body)


SQLITE_CONFIG = """
[server]
listen = ["tcp://127.0.0.1:@PORT@"]
allow_root = true

[metrics]
listen = "tcp://127.0.0.1:{metrics_port}"

[databases.main]
url = "sqlite+aiosqlite:///{db}"

[maps.recipient]
database = "main"
table = "users"
key = "address"

[maps.cached]
database = "main"
table = "users"
key = "address"
cache_ttl = 3600.0
negative_cache_ttl = 3600.0

[maps.broken]
database = "main"
table = "no_such_table"
key = "k"
"""


@pytest.fixture
def metered(start_daemon: DaemonFactory, tmp_path: Path) -> tuple[Daemon, int]:
    """A sockmapd on the test SQLite maps with its metrics listener, and the metrics port."""
    metrics_port = free_port()
    db = make_sqlite(tmp_path / "metrics.sqlite3")
    text = SQLITE_CONFIG.format(metrics_port=metrics_port, db=db)
    return start_daemon(config_text=text, name="metrics.toml"), metrics_port


def test_counters_match_the_requests_sent(metered: tuple[Daemon, int]) -> None:
    daemon, port = metered
    listener = f"tcp://127.0.0.1:{daemon.port}"
    before = scrape(port)
    client = daemon.client()
    try:
        for key in ("alice@example.com", "bob@example.com", "*"):
            assert client.ask("recipient", key).startswith(b"OK ")
        for key in ("nobody@example.com", "ghost@example.com"):
            assert client.ask("recipient", key) == b"NOTFOUND "
        client.send_raw(b"7:nospace,")
        assert client.read_reply().startswith(b"PERM ")
        assert client.ask("nosuchmap", "k").startswith(b"TEMP ")
        assert client.ask("broken", "k").startswith(b"TEMP ")
        for _ in range(3):
            assert client.ask("cached", "alice@example.com") == b"OK alice@example.com"
        assert client.ask("cached", "nobody@example.com") == b"NOTFOUND "
    finally:
        client.close()
    bad = daemon.client()
    try:
        bad.send_raw(b"x:recipient alice,")
        assert bad.read_reply() == b"PERM invalid netstring length header"
    finally:
        bad.close()

    after = scrape(port)
    requests = "sockmapd_requests_total"
    assert sample(after, requests, map="recipient", result="OK") == 3
    assert sample(after, requests, map="recipient", result="NOTFOUND") == 2
    assert sample(after, requests, map="recipient", result="TEMP") == 0
    assert sample(after, requests, map=":unknown", result="PERM") == 1
    assert sample(after, requests, map=":unknown", result="TEMP") == 1
    assert sample(after, requests, map="broken", result="TEMP") == 1
    assert sample(after, requests, map="cached", result="OK") == 3
    assert sample(after, requests, map="cached", result="NOTFOUND") == 1
    latency = "sockmapd_request_duration_seconds_count"
    assert sample(after, latency, map="recipient") == 5
    assert sample(after, latency, map="cached") == 4
    assert sample(after, "sockmapd_protocol_errors_total", kind="invalid_length") == 1
    assert sample(after, "sockmapd_protocol_errors_total", kind="malformed_request") == 1
    assert sample(after, "sockmapd_database_errors_total", database="main", kind="query_error") == 1
    # 1 miss fills the found answer, 2 hits; the not-found key is 1 miss.
    assert sample(after, "sockmapd_cache_hits_total", map="cached") == 2
    assert sample(after, "sockmapd_cache_misses_total", map="cached") == 2
    assert sample(after, "sockmapd_cache_entries", map="cached") == 2
    connections = "sockmapd_connections_total"
    opened = sample(after, connections, listener=listener) - sample(
        before, connections, listener=listener
    )
    assert opened == 2
    assert sample(after, "sockmapd_pool_size", database="main") >= 1
    # recipient 5, broken 1, cached 2 misses: every query is timed, the refused one too.
    queries = "sockmapd_database_query_duration_seconds_count"
    assert sample(after, queries, database="main") - sample(before, queries, database="main") == 8
    # A refused query is an answer: the database is up.
    assert sample(after, "sockmapd_database_up", database="main") == 1
    assert sample(after, "sockmapd_reloads_total", result="ok") == 0


def test_active_connections_are_counted_while_open(metered: tuple[Daemon, int]) -> None:
    daemon, port = metered
    listener = f"tcp://127.0.0.1:{daemon.port}"
    clients = [daemon.client() for _ in range(3)]
    try:
        # A reply proves the daemon has accepted and counted the connection.
        for client in clients:
            assert client.ask("recipient", "alice@example.com").startswith(b"OK ")
        assert sample(scrape(port), "sockmapd_connections_active", listener=listener) == 3
    finally:
        for client in clients:
            client.close()
    deadline = time.monotonic() + WAIT
    while sample(scrape(port), "sockmapd_connections_active", listener=listener) != 0:
        assert time.monotonic() < deadline, "closed connections still counted as active"
        time.sleep(0.05)


def test_counters_survive_a_reload(metered: tuple[Daemon, int]) -> None:
    daemon, port = metered
    client = daemon.client()
    try:
        assert client.ask("recipient", "alice@example.com").startswith(b"OK ")
        assert client.ask("cached", "alice@example.com").startswith(b"OK ")
        assert client.ask("cached", "alice@example.com").startswith(b"OK ")
    finally:
        client.close()
    before = scrape(port)
    assert sample(before, "sockmapd_cache_hits_total", map="cached") == 1
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while sample(scrape(port), "sockmapd_reloads_total", result="ok") != 1:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    after = scrape(port)
    assert sample(after, "sockmapd_requests_total", map="recipient", result="OK") == 1
    assert sample(after, "sockmapd_requests_total", map="cached", result="OK") == 2
    assert sample(after, "sockmapd_cache_hits_total", map="cached") == 1
    assert sample(after, "sockmapd_cache_misses_total", map="cached") == 1
    # The new generation's cache starts empty.
    assert sample(after, "sockmapd_cache_entries", map="cached") == 0
    last = "sockmapd_last_reload_success_timestamp_seconds"
    assert sample(after, last) > sample(before, last)


def test_a_failed_reload_is_counted(metered: tuple[Daemon, int]) -> None:
    daemon, port = metered
    daemon.config_path.write_text("[server]\nno_such_option = 1\n")
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while sample(scrape(port), "sockmapd_reloads_total", result="failed") != 1:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    assert sample(scrape(port), "sockmapd_reloads_total", result="ok") == 0
    client = daemon.client()
    try:
        assert client.ask("recipient", "alice@example.com").startswith(b"OK ")
    finally:
        client.close()


def test_a_changed_metrics_listen_waits_for_a_restart(metered: tuple[Daemon, int]) -> None:
    daemon, port = metered
    text = daemon.config_path.read_text()
    daemon.config_path.write_text(text.replace(str(port), str(free_port())))
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while sample(scrape(port), "sockmapd_reloads_total", result="ok") != 1:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    assert "changed metrics.listen: restart sockmapd to apply" in daemon.log()


def test_metrics_listen_on_a_unix_socket(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    path = tmp_path / "metrics.sock"
    text = SQLITE_CONFIG.format(metrics_port=0, db=make_sqlite(tmp_path / "unix.sqlite3"))
    text = text.replace("tcp://127.0.0.1:0", f"unix://{path}")
    daemon = start_daemon(config_text=text, name="unix.toml")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(path))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: sockmapd\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(body) == {"status": "ok", "databases": {"main": "ok"}}
    daemon.stop()
    assert not path.exists()


def test_healthz_is_200_with_every_database_ok(metered: tuple[Daemon, int]) -> None:
    _, port = metered
    assert health(port) == (200, {"status": "ok", "databases": {"main": "ok"}})


def test_other_paths_and_methods_are_refused(metered: tuple[Daemon, int]) -> None:
    _, port = metered
    assert get(port, "/")[0] == 200
    assert get(port, "/index.html")[0] == 404
    assert get(port, "/metrics", method="POST")[0] == 405
    assert get(port, "/healthz", method="DELETE")[0] == 405


def test_hostile_metrics_clients_do_not_hurt_the_socketmap_service(
    metered: tuple[Daemon, int],
) -> None:
    daemon, port = metered
    # More silent clients than the metrics listener serves at once, one flood of
    # header bytes and one of garbage: lookups still answer and the listener recovers.
    silent = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(40)]
    try:
        flood = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        # The server may close as soon as it has seen enough.
        with contextlib.suppress(OSError):
            flood.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10_000)
        flood.close()
        client = daemon.client()
        try:
            for _ in range(20):
                assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
        finally:
            client.close()
    finally:
        for sock in silent:
            sock.close()
    assert sample(scrape(port), "sockmapd_requests_total", map="recipient", result="OK") == 20
    assert daemon.process.poll() is None


def test_metrics_listen_that_cannot_be_bound_stops_the_start(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        text = SQLITE_CONFIG.format(metrics_port=busy, db=make_sqlite(tmp_path / "busy.sqlite3"))
        with pytest.raises(RuntimeError) as failed:
            start_daemon(config_text=text, name="busy.toml")
    message = str(failed.value)
    assert f"metrics: cannot listen on tcp://127.0.0.1:{busy}" in message


def test_no_metrics_listener_unless_configured(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon()
    client = daemon.client()
    try:
        assert client.ask("recipient", "alice@example.com").startswith(b"OK ")
    finally:
        client.close()
    assert "metrics and health on" not in daemon.log()


# --- /healthz across a database cut ----------------------------------------------------


@pytest.fixture(params=["mariadb", "postgresql"])
def cut_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FaultProxy, int]]:
    """A sockmapd whose database is reached through a fault proxy; yields it and the port."""
    kind: str = request.param
    database: Database = request.getfixturevalue(
        "mysql_database" if kind == "mariadb" else "pg_database"
    )
    database.create_text_table("hm_users", ["address"])
    database.insert("hm_users", ["address"], [("alice@example.com",)])
    url = make_url(database.url)
    upstream = (url.host or "127.0.0.1", url.port or (3306 if kind == "mariadb" else 5432))
    with FaultProxy(*upstream) as proxy:
        port = free_port()
        metrics_port = free_port()
        password = f'password = "{url.password}"\n' if url.password else ""
        path = tmp_path / "health.toml"
        path.write_text(
            f"""
[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true

[metrics]
listen = "tcp://127.0.0.1:{metrics_port}"

[databases.mail]
driver = "{"mysql" if kind == "mariadb" else "postgresql"}"
hosts = ["127.0.0.1:{proxy.port}"]
name = "{url.database}"
user = "{url.username}"
{password}connect_timeout = 1.0
query_timeout = 1.0
retry_interval = 1.0

[maps.users]
database = "mail"
table = "hm_users"
key = "address"
"""
        )
        daemon = Daemon(path, port)
        try:
            yield proxy, metrics_port
        finally:
            daemon.stop()


def wait_for_health(port: int, wanted: int) -> dict[str, object]:
    deadline = time.monotonic() + WAIT
    while True:
        status, body = health(port)
        if status == wanted:
            return body
        assert time.monotonic() < deadline, f"/healthz stayed {status}: {body}"
        time.sleep(0.1)


@pytest.mark.parametrize("fault", [Mode.REFUSE, Mode.BLACKHOLE])
def test_healthz_turns_503_when_the_database_is_cut_and_200_after(
    cut_rig: tuple[FaultProxy, int], fault: Mode
) -> None:
    proxy, port = cut_rig
    assert health(port) == (200, {"status": "ok", "databases": {"mail": "ok"}})
    assert sample(scrape(port), "sockmapd_database_up", database="mail") == 1
    proxy.set_mode(fault)
    proxy.cut_all()
    status, body = health(port)
    assert status == 503, body
    assert sample(scrape(port), "sockmapd_database_up", database="mail") == 0
    assert body["status"] == "down"
    databases = body["databases"]
    assert isinstance(databases, dict)
    assert set(databases) == {"mail"}
    reason = str(databases["mail"])
    assert reason.startswith("cannot connect: database mail: no usable host"), reason
    if fault is Mode.BLACKHOLE:
        # The pooled connection was cut; the new one gets no greeting.
        assert "no answer within connect_timeout=1s" in reason
    proxy.set_mode(Mode.PASS)
    assert wait_for_health(port, 200) == {"status": "ok", "databases": {"mail": "ok"}}
    assert sample(scrape(port), "sockmapd_database_up", database="mail") == 1


def test_healthz_is_503_when_the_database_stalls_within_its_timeouts(
    cut_rig: tuple[FaultProxy, int],
) -> None:
    proxy, port = cut_rig
    assert health(port)[0] == 200  # leaves one connection in the pool
    # The pooled connection is still open, but nothing passes within the bound.
    proxy.set_mode(Mode.DELAY, delay=10.0)
    status, body = health(port)
    assert status == 503
    assert body == {"status": "down", "databases": {"mail": "no answer within 2s"}}
    proxy.set_mode(Mode.PASS)
    assert wait_for_health(port, 200) == {"status": "ok", "databases": {"mail": "ok"}}
