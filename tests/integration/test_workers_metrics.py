"""metrics.listen with server.workers = 2: one scrape and one /healthz for both real workers.

Which worker served a connection is read from /proc, as in test_workers. The
database cut goes through the fault proxy to a real MariaDB.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.integration.conftest import DaemonFactory, make_sqlite
from tests.integration.daemon import Daemon, SocketmapClient, free_port
from tests.integration.databases import Database
from tests.integration.faultproxy import FaultProxy, Mode
from tests.integration.test_metrics import get, health, sample, scrape
from tests.integration.test_monitoring import promtool_binary, run
from tests.integration.test_workers import (
    BURST,
    MAX_CONNECTIONS,
    WAIT,
    accepted_tcp,
    children,
    socket_inodes,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="needs /proc/PID/task/PID/children (Linux)",
)

CONFIG = """
[server]
listen = ["tcp://127.0.0.1:@PORT@"]
allow_root = true
workers = 2

[metrics]
listen = "tcp://127.0.0.1:{metrics_port}"

[databases.main]
url = "sqlite+aiosqlite:///{db}"
connect_timeout = 1.0
query_timeout = 1.0

[maps.recipient]
database = "main"
table = "users"
key = "address"
"""
OK = "sockmapd_requests_total"


def worker_pids(daemon: Daemon) -> dict[int, int]:
    """Return the pid of the last worker started in each slot, from the supervisor's log."""
    slots: dict[int, int] = {}
    for slot, pid in re.findall(r"started worker (\d+) \(pid (\d+)\)", daemon.log()):
        slots[int(slot)] = int(pid)
    return slots


def started(daemon: Daemon) -> None:
    wait_for(lambda: "2 workers serving" in daemon.log(), daemon, "the workers did not start")


@pytest.fixture
def metered(start_daemon: DaemonFactory, tmp_path: Path) -> tuple[Daemon, int]:
    """A two-worker sockmapd with its metrics listener, and the metrics port."""
    metrics_port = free_port()
    db = make_sqlite(tmp_path / "workers.sqlite3")
    daemon = start_daemon(
        config_text=CONFIG.format(metrics_port=metrics_port, db=db), name="workers.toml"
    )
    started(daemon)
    return daemon, metrics_port


def serve_from_both(daemon: Daemon) -> int:
    """Answer lookups on new connections until both workers served some; return how many."""
    assert daemon.port is not None
    port = daemon.port
    pids = set(worker_pids(daemon).values())
    assert pids <= children(daemon.process.pid), daemon.log()
    clients: list[SocketmapClient] = []
    served: set[int] = set()
    try:
        while len(clients) < MAX_CONNECTIONS and served != pids:
            burst = [SocketmapClient.tcp(port) for _ in range(BURST)]
            clients += burst
            for client in burst:
                assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
            connections = accepted_tcp(port)
            served = {pid for pid in pids if socket_inodes(pid) & connections}
    finally:
        for client in clients:
            client.close()
    assert served == pids
    return len(clients)


def test_one_scrape_counts_the_requests_of_both_workers(metered: tuple[Daemon, int]) -> None:
    daemon, port = metered
    before = scrape(port)
    sent = serve_from_both(daemon)
    after = scrape(port)
    counted = sample(after, OK, map="recipient", result="OK") - sample(
        before, OK, map="recipient", result="OK"
    )
    assert counted == sent
    latency = "sockmapd_request_duration_seconds_count"
    assert (
        sample(after, latency, map="recipient") - sample(before, latency, map="recipient") == sent
    )
    assert sample(after, "sockmapd_workers_answering") == 2
    pids = worker_pids(daemon)
    for slot, pid in pids.items():
        assert ("process_start_time_seconds", (("worker", str(slot)),)) in after, after.keys()
        assert pid in children(daemon.process.pid)


def test_promtool_check_metrics_passes_on_the_merged_scrape(
    metered: tuple[Daemon, int],
) -> None:
    promtool = promtool_binary()
    daemon, port = metered
    serve_from_both(daemon)
    status, _, body = get(port, "/metrics")
    assert status == 200
    result = run([promtool, "check", "metrics"], body)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_healthz_answers_for_both_workers(metered: tuple[Daemon, int]) -> None:
    _, port = metered
    status, body = health(port)
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["databases"] == {"main": "ok"}
    assert body["workers"] == {
        "1": {"status": "ok", "databases": {"main": "ok"}},
        "2": {"status": "ok", "databases": {"main": "ok"}},
    }


def test_a_stopped_worker_makes_healthz_503_and_keeps_its_counters(
    metered: tuple[Daemon, int],
) -> None:
    daemon, port = metered
    sent = serve_from_both(daemon)
    # The merge keeps what a worker last reported: what it counted since, it cannot know.
    assert sample(scrape(port), OK, map="recipient", result="OK") == sent
    stuck = worker_pids(daemon)[2]
    os.kill(stuck, signal.SIGSTOP)
    try:
        status, body = health(port)
        assert status == 503, body
        assert body["workers"]["2"] == {"status": "down", "error": "no answer within 3s"}
        assert body["workers"]["1"]["status"] == "ok"
        samples = scrape(port)
        assert sample(samples, "sockmapd_workers_answering") == 1
        assert sample(samples, OK, map="recipient", result="OK") == sent
    finally:
        os.kill(stuck, signal.SIGCONT)
    assert health(port)[0] == 200


def test_a_reload_sets_how_long_healthz_waits_for_a_worker(
    metered: tuple[Daemon, int],
) -> None:
    daemon, port = metered
    path = daemon.config_path
    path.write_text(path.read_text().replace("query_timeout = 1.0", "query_timeout = 2.0"))
    daemon.signal(signal.SIGHUP)
    wait_for(
        lambda: "/healthz waits up to 4s" in daemon.log(),
        daemon,
        "the metrics process did not reload",
    )
    stuck = worker_pids(daemon)[1]
    os.kill(stuck, signal.SIGSTOP)
    try:
        status, body = health(port)
    finally:
        os.kill(stuck, signal.SIGCONT)
    assert status == 503, body
    assert body["workers"]["1"] == {"status": "down", "error": "no answer within 4s"}


def test_a_killed_worker_is_replaced_and_the_sum_does_not_go_back(
    metered: tuple[Daemon, int],
) -> None:
    daemon, port = metered
    sent = serve_from_both(daemon)
    assert sample(scrape(port), OK, map="recipient", result="OK") == sent
    victim = worker_pids(daemon)[1]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: worker_pids(daemon)[1] != victim and daemon.log().count("listening on") == 3,
        daemon,
        "the killed worker was not replaced",
    )
    # Until the new worker has served, the sum is what both had counted.
    assert sample(scrape(port), OK, map="recipient", result="OK") == sent
    more = serve_from_both(daemon)
    samples = scrape(port)
    assert sample(samples, OK, map="recipient", result="OK") == sent + more
    assert sample(samples, "sockmapd_workers_answering") == 2


def test_a_killed_metrics_process_is_replaced_and_forgets_nothing_the_workers_hold(
    metered: tuple[Daemon, int],
) -> None:
    daemon, port = metered
    sent = serve_from_both(daemon)
    (gatherer,) = [int(pid) for pid in re.findall(r"metrics process pid (\d+)", daemon.log())]
    os.kill(gatherer, signal.SIGKILL)
    wait_for(
        lambda: daemon.log().count("started the metrics process") == 2,
        daemon,
        "the metrics process was not replaced",
    )
    deadline = time.monotonic() + WAIT
    while True:
        try:
            samples = scrape(port)
            break
        except (ConnectionError, AssertionError):
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.1)
    assert sample(samples, OK, map="recipient", result="OK") == sent


# --- /healthz across a database cut, with two workers ----------------------------------


@pytest.fixture
def cut_rig(mysql_database: Database, tmp_path: Path) -> Iterator[tuple[Daemon, FaultProxy, int]]:
    """Two workers whose MariaDB is reached through a fault proxy."""
    mysql_database.create_text_table("wm_users", ["address"])
    mysql_database.insert("wm_users", ["address"], [("alice@example.com",)])
    url = make_url(mysql_database.url)
    with FaultProxy(url.host or "127.0.0.1", url.port or 3306) as proxy:
        port = free_port()
        metrics_port = free_port()
        password = f'password = "{url.password}"\n' if url.password else ""
        path = tmp_path / "health.toml"
        path.write_text(
            f"""
[server]
listen = ["tcp://127.0.0.1:{port}"]
allow_root = true
workers = 2

[metrics]
listen = "tcp://127.0.0.1:{metrics_port}"

[databases.mail]
driver = "mysql"
hosts = ["127.0.0.1:{proxy.port}"]
name = "{url.database}"
user = "{url.username}"
{password}connect_timeout = 1.0
query_timeout = 1.0
retry_interval = 1.0

[maps.users]
database = "mail"
table = "wm_users"
key = "address"
"""
        )
        daemon = Daemon(path, port)
        try:
            started(daemon)
            yield daemon, proxy, metrics_port
        finally:
            daemon.stop()


def test_healthz_is_503_naming_worker_and_database_when_the_database_is_cut(
    cut_rig: tuple[Daemon, FaultProxy, int],
) -> None:
    _, proxy, port = cut_rig
    status, body = health(port)
    assert status == 200, body
    assert sample(scrape(port), "sockmapd_database_up", database="mail") == 1
    proxy.set_mode(Mode.REFUSE)
    proxy.cut_all()
    status, body = health(port)
    assert status == 503, body
    assert body["status"] == "down"
    reason = str(body["databases"]["mail"])
    assert reason.startswith("worker 1: cannot connect: database mail"), reason
    for slot in ("1", "2"):
        assert body["workers"][slot]["status"] == "down"
        assert body["workers"][slot]["databases"]["mail"].startswith("cannot connect")
    assert sample(scrape(port), "sockmapd_database_up", database="mail") == 0
    proxy.set_mode(Mode.PASS)
    deadline = time.monotonic() + WAIT
    while health(port)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert sample(scrape(port), "sockmapd_database_up", database="mail") == 1
