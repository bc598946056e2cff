"""server.workers = 2: a real supervisor and its real worker processes on real sockets.

Which worker serves a connection is read from /proc: the server side of each
accepted connection is a socket inode, and each worker's /proc/PID/fd names
the inodes it holds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.activation import socket_activated
from tests.integration.conftest import DaemonFactory, make_sqlite, toml_config
from tests.integration.daemon import Daemon, SocketmapClient, free_port

# Enough for the kernel to hand connections to both workers many times over;
# the tests stop as soon as both have answered.
MAX_CONNECTIONS = 300
BURST = 10
WAIT = 30.0
ALIAS_MAP = '\n[maps.alias]\ndatabase = "main"\ntable = "users"\nkey = "address"\n'

pytestmark = pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="needs /proc/PID/task/PID/children (Linux)",
)


def children(pid: int) -> set[int]:
    """Return the pids of the children of pid."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(word) for word in text.split()}


def socket_inodes(pid: int) -> set[int]:
    """Return the inodes of the sockets process pid holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def accepted_tcp(port: int) -> set[int]:
    """Return the inodes of established TCP connections accepted on port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    return inodes


def listening_tcp(port: int) -> set[int]:
    """Return the inodes of the TCP sockets listening on port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(int(fields[9]))
    return inodes


def listening_unix(path: str) -> set[int]:
    """Return the inodes of the unix sockets listening on path."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[7] == path and fields[3] == "00010000":
            inodes.add(int(fields[6]))
    return inodes


def accepted_unix(path: str) -> set[int]:
    """Return the inodes of connected sockets accepted on the unix socket path."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # An accepted socket carries the listener's path; it is not listening (flags 0).
        if len(fields) == 8 and fields[7] == path and fields[3] == "00000000":
            inodes.add(int(fields[6]))
    return inodes


def wait_for(condition: Callable[[], bool], daemon: Daemon, what: str) -> None:
    """Wait until condition holds; fail with the daemon's log if it does not within WAIT."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert daemon.process.poll() is None, daemon.log()
        assert time.monotonic() < deadline, f"{what}:\n{daemon.log()}"
        time.sleep(0.05)


def start_workers(start_daemon: DaemonFactory, *, unix: bool = False) -> Daemon:
    """Start sockmapd with two workers and wait until both serve."""
    daemon = start_daemon("workers = 2", unix=unix)
    wait_for(lambda: "2 workers serving" in daemon.log(), daemon, "the workers did not start")
    return daemon


def workers(daemon: Daemon) -> set[int]:
    """Return the worker pids, which must be two."""
    pids = children(daemon.process.pid)
    assert len(pids) == 2, (pids, daemon.log())
    return pids


def serving_pids(
    daemon: Daemon,
    connect: Callable[[], SocketmapClient],
    accepted: Callable[[], set[int]],
    map_name: str = "recipient",
) -> set[int]:
    """Open connections, each answering a lookup, until both workers have accepted some."""
    pids = workers(daemon)
    clients: list[SocketmapClient] = []
    served: set[int] = set()
    try:
        while len(clients) < MAX_CONNECTIONS and served != pids:
            burst = [connect() for _ in range(BURST)]
            clients += burst
            for client in burst:
                assert client.ask(map_name, "alice@example.com") == b"OK alice@example.com"
            connections = accepted()
            served = {pid for pid in pids if socket_inodes(pid) & connections}
            # The supervisor accepts nothing: it only holds the listeners.
            assert not socket_inodes(daemon.process.pid) & connections
    finally:
        for client in clients:
            client.close()
    return served


def test_two_workers_serve_tcp_and_unix_from_two_processes(start_daemon: DaemonFactory) -> None:
    daemon = start_workers(start_daemon, unix=True)
    assert daemon.port is not None
    assert daemon.unix_path is not None
    port, path = daemon.port, daemon.unix_path
    pids = workers(daemon)
    assert daemon.process.pid not in pids
    started = {int(pid) for pid in re.findall(r"started worker [12] \(pid (\d+)\)", daemon.log())}
    assert started == pids
    over_tcp = serving_pids(daemon, lambda: SocketmapClient.tcp(port), lambda: accepted_tcp(port))
    assert over_tcp == pids
    over_unix = serving_pids(
        daemon, lambda: SocketmapClient.unix(path), lambda: accepted_unix(path)
    )
    assert over_unix == pids


def test_each_worker_has_its_own_tcp_listener_and_shares_the_unix_one(
    start_daemon: DaemonFactory,
) -> None:
    daemon = start_workers(start_daemon, unix=True)
    assert daemon.port is not None
    assert daemon.unix_path is not None
    tcp = listening_tcp(daemon.port)
    unix = listening_unix(daemon.unix_path)
    assert (len(tcp), len(unix)) == (2, 1), daemon.log()
    held = {pid: socket_inodes(pid) for pid in workers(daemon)}
    # SO_REUSEPORT: one TCP listener per worker, each held by that worker alone.
    own = [inodes & tcp for inodes in held.values()]
    assert all(len(mine) == 1 for mine in own), own
    assert own[0] != own[1]
    assert all(unix <= inodes for inodes in held.values())
    # The supervisor keeps every listener, for a worker it starts again.
    assert tcp | unix <= socket_inodes(daemon.process.pid)


def test_a_killed_worker_is_started_again(start_daemon: DaemonFactory) -> None:
    daemon = start_workers(start_daemon)
    assert daemon.port is not None
    port = daemon.port
    before = workers(daemon)
    victim = min(before)
    survivor = SocketmapClient.tcp(port)
    assert survivor.ask("recipient", "bob@example.com") == b"OK bob@example.com"
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: (
            victim not in children(daemon.process.pid) and daemon.log().count("listening on") == 3
        ),
        daemon,
        "the killed worker was not replaced",
    )
    after = workers(daemon)
    assert victim not in after
    assert f"(pid {victim}) killed by SIGKILL" in daemon.log()
    # Lookups go on, on new connections and on one that was open before.
    served = serving_pids(daemon, lambda: SocketmapClient.tcp(port), lambda: accepted_tcp(port))
    assert served == after
    try:
        reply = survivor.ask("recipient", "bob@example.com")
    except (EOFError, OSError):
        # That connection was the killed worker's: only it is lost.
        return
    assert reply == b"OK bob@example.com"


def test_sighup_reloads_every_worker(start_daemon: DaemonFactory) -> None:
    daemon = start_workers(start_daemon)
    assert daemon.port is not None
    port = daemon.port
    pids = workers(daemon)
    assert SocketmapClient.tcp(port).ask("alias", "alice@example.com").startswith(b"TEMP ")
    good = daemon.config_path.read_text()
    replacement = daemon.config_path.with_suffix(".new")
    replacement.write_text(good + ALIAS_MAP)
    os.replace(replacement, daemon.config_path)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.log().count("reloaded ") == 2, daemon, "not every worker reloaded")
    served = serving_pids(
        daemon, lambda: SocketmapClient.tcp(port), lambda: accepted_tcp(port), "alias"
    )
    assert served == pids

    # A broken file is refused by the supervisor; the workers keep the last good one.
    replacement.write_text(good + "\n[maps.x]\nbogus = 1\n")
    os.replace(replacement, daemon.config_path)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in daemon.log(), daemon, "the broken file was not refused")
    assert daemon.log().count("reloaded ") == 2
    assert SocketmapClient.tcp(port).ask("alias", "bob@example.com") == b"OK bob@example.com"
    assert workers(daemon) == pids


def test_sigusr2_reaches_every_worker(start_daemon: DaemonFactory) -> None:
    daemon = start_workers(start_daemon)
    daemon.signal(signal.SIGUSR2)
    wait_for(lambda: daemon.log().count("SIGUSR2: cleared") == 2, daemon, "a worker kept its cache")


def test_sigterm_stops_every_process(start_daemon: DaemonFactory) -> None:
    daemon = start_workers(start_daemon, unix=True)
    assert daemon.unix_path is not None
    pids = workers(daemon)
    client = daemon.client()
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
    assert daemon.stop() == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} is left:\n{daemon.log()}"
    assert not Path(daemon.unix_path).exists()
    assert "all workers stopped" in daemon.log()


def test_systemd_sockets_are_shared_and_readiness_comes_from_the_supervisor(
    tmp_path: Path,
) -> None:
    db = make_sqlite(tmp_path / "act.sqlite3")
    config = tmp_path / "act.toml"
    config.write_text(toml_config(db, [f"tcp://127.0.0.1:{free_port()}"], "workers = 2"))
    with socket_activated(config, tmp_path, timeout=WAIT) as daemon:
        # One READY=1, sent by the supervisor once both workers accept.
        assert daemon.next_notification() == b"READY=1"
        assert "2 workers serving" in daemon.log_path.read_text()
        pids = children(daemon.process.pid)
        assert len(pids) == 2
        assert (
            SocketmapClient.tcp(daemon.tcp_port).ask("recipient", "bob@example.com")
            == b"OK bob@example.com"
        )
        over_unix = SocketmapClient.unix(daemon.unix_path)
        assert over_unix.ask("recipient", "bob@example.com") == b"OK bob@example.com"
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.next_notification() == b"STOPPING=1"
        assert daemon.process.wait(WAIT) == 0
    text = daemon.log_path.read_text()
    assert "sockets passed by systemd" in text
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    # The socket file belongs to systemd: sockmapd must not remove it.
    assert Path(daemon.unix_path).exists()


INIT_CONFIG = """
[server]
listen = ["tcp://127.0.0.1:@PORT@"]
allow_root = true
workers = 2

[databases.main]
url = "sqlite+aiosqlite:///@DB@"
init_sql = "@INIT@"

[maps.recipient]
database = "main"
table = "users"
key = "address"
"""


def test_a_sqlite_file_is_created_from_init_sql_once(
    tmp_path: Path, start_daemon: DaemonFactory
) -> None:
    init = tmp_path / "init.sql"
    init.write_text("CREATE TABLE users (address TEXT);\nINSERT INTO users VALUES ('a@x');\n")
    db = tmp_path / "new" / "made.sqlite3"
    text = INIT_CONFIG.replace("@DB@", str(db)).replace("@INIT@", str(init))
    daemon = start_daemon(config_text=text, name="init.toml")
    wait_for(lambda: "2 workers serving" in daemon.log(), daemon, "the workers did not start")
    assert daemon.log().count(f"created {db}") == 1
    assert daemon.client().ask("recipient", "a@x") == b"OK a@x"


def test_a_database_that_cannot_be_set_up_stops_the_start(tmp_path: Path) -> None:
    init = tmp_path / "broken.sql"
    init.write_text("CREATE TABLE")
    db = tmp_path / "never.sqlite3"
    config = tmp_path / "broken.toml"
    text = INIT_CONFIG.replace("@DB@", str(db)).replace("@INIT@", str(init))
    config.write_text(text.replace("@PORT@", str(free_port())))
    done = subprocess.run(
        [sys.executable, "-m", "sockmapd", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot start: database main: cannot create" in done.stderr
    # The supervisor gave up before it forked anything.
    assert "started worker" not in done.stderr
    assert not db.exists()


def gone(pid: int) -> bool:
    """Return True once pid has exited (a zombie left to an init that does not reap counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_workers_stop_when_the_supervisor_is_killed(start_daemon: DaemonFactory) -> None:
    daemon = start_workers(start_daemon)
    pids = workers(daemon)
    daemon.process.kill()
    daemon.process.wait()
    wait_for_gone = time.monotonic() + WAIT
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < wait_for_gone, daemon.log()
        time.sleep(0.05)
    assert daemon.log().count("SIGTERM: shutting down") == 2


def test_sigusr1_reaches_every_worker_without_a_reload(start_daemon: DaemonFactory) -> None:
    daemon = start_workers(start_daemon)
    pids = workers(daemon)
    # A broken file shows whether anything reads it: SIGUSR1 must not.
    daemon.config_path.write_text(daemon.config_path.read_text() + "\n[maps.x]\nbogus = 1\n")
    daemon.signal(signal.SIGUSR1)
    wait_for(
        lambda: daemon.log().count("SIGUSR1: no log file to reopen") == 2,
        daemon,
        "a worker missed SIGUSR1",
    )
    assert "passed on to 2 workers to reopen their log" in daemon.log()
    assert "reload" not in daemon.log()
    assert workers(daemon) == pids
