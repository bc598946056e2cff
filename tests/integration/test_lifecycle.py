"""Reload under load and graceful shutdown of a real sockmapd process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import USERS, DaemonFactory, make_sqlite, toml_config
from tests.integration.daemon import CheckingClient, Daemon, free_port, netstring

ALIAS_MAP = '\n[maps.alias]\ndatabase = "main"\ntable = "users"\nkey = "address"\n'
BROKEN_MAP = "\n[maps.x]\nbogus = 1\n"


def _replace(path: Path, text: str) -> None:
    """Write path in one rename, so that a reload never reads half a file."""
    temporary = path.with_suffix(".new")
    temporary.write_text(text)
    os.replace(temporary, path)


def _count_in_log(daemon: Daemon, text: str) -> int:
    return daemon.log().count(text)


def test_reload_under_load_never_fails_a_lookup(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon()
    assert daemon.port is not None
    stop = threading.Event()
    loaders = [CheckingClient(daemon.port, stop, USERS, offset) for offset in range(3)]
    threads = [threading.Thread(target=loader.run, daemon=True) for loader in loaders]
    for thread in threads:
        thread.start()
    try:
        started = time.monotonic()
        for _ in range(50):
            daemon.signal(signal.SIGHUP)
            time.sleep(0.05)
        # Let the reloads settle: the count stays the same for one second (at most 30 s).
        deadline = time.monotonic() + 30
        reloads = -1
        while reloads != _count_in_log(daemon, "reloaded ") and time.monotonic() < deadline:
            reloads = _count_in_log(daemon, "reloaded ")
            time.sleep(1.0)
        reload_seconds = time.monotonic() - started
        during_reloads = sum(loader.asked for loader in loaders)
        assert reloads >= 1, daemon.log()

        good = daemon.config_path.read_text()
        failed_before = _count_in_log(daemon, "reload failed")
        _replace(daemon.config_path, good + BROKEN_MAP)
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _count_in_log(daemon, "reload failed") == failed_before:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        client = daemon.client()
        assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
        assert client.ask("alias", "alice@example.com").startswith(b"TEMP ")

        _replace(daemon.config_path, good + ALIAS_MAP)
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while (reply := client.ask("alias", "alice@example.com")) != b"OK alice@example.com":
            assert reply.startswith(b"TEMP "), reply
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.02)
        new_map_seconds = 10 - (deadline - time.monotonic())
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    print(
        f"\n50 SIGHUPs: {reloads} reloads logged in {reload_seconds:.1f} s; "
        f"{during_reloads} lookups meanwhile, "
        f"{sum(loader.asked for loader in loaders)} in all on {len(loaders)} connections "
        f"({', '.join(str(loader.asked) for loader in loaders)}); "
        f"new map served {new_map_seconds:.2f} s after its SIGHUP"
    )
    assert not any(thread.is_alive() for thread in threads)
    assert [loader.wrong for loader in loaders] == [[], [], []]
    assert all(loader.asked > 0 for loader in loaders)
    assert daemon.process.poll() is None


def _slow_daemon(
    tmp_path: Path, count: int, extra_server: str, query_timeout: float | None = None
) -> Daemon:
    """Start sockmapd with a map 'slow' whose one key takes count recursion steps to read."""
    db = make_sqlite(tmp_path / "slow.sqlite3")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE VIEW slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
            f"SELECT x + 1 FROM c WHERE x < {count}) SELECT 'k' AS k, count(*) AS v FROM c"
        )
    conn.close()
    port = free_port()
    text = toml_config(db, [f"tcp://127.0.0.1:{port}"], extra_server)
    if query_timeout is not None:
        url = f'url = "sqlite+aiosqlite:///{db}"\n'
        text = text.replace(url, f"{url}query_timeout = {query_timeout}\n", 1)
    text += '\n[maps.slow]\ndatabase = "main"\ntable = "slow"\nkey = "k"\nvalue = "v"\n'
    path = tmp_path / "slow.toml"
    path.write_text(text)
    return Daemon(path, port)


def test_sigterm_lets_a_request_in_flight_finish_and_closes_idle_connections(
    tmp_path: Path,
) -> None:
    count = 4_000_000
    daemon = _slow_daemon(tmp_path, count, "request_timeout = 90")
    try:
        idle = daemon.client(timeout=10.0)
        assert idle.ask("recipient", "alice@example.com") == b"OK alice@example.com"
        busy = daemon.client(timeout=60.0)
        sent = time.monotonic()
        busy.send_raw(netstring(b"slow k"))
        time.sleep(0.5)
        daemon.signal(signal.SIGTERM)
        terminated = time.monotonic()
        assert idle.at_eof()
        idle_closed = time.monotonic() - terminated
        reply = busy.read_reply()
        answered = time.monotonic()
        assert busy.at_eof()
        status = daemon.process.wait(30)
        exited = time.monotonic() - terminated
    finally:
        daemon.stop()
    print(
        f"\nSIGTERM {terminated - sent:.2f} s into the lookup; idle connection closed after "
        f"{idle_closed:.2f} s; lookup answered {answered - terminated:.2f} s after SIGTERM "
        f"({answered - sent:.2f} s in all); exit {status} after {exited:.2f} s"
    )
    assert reply == b"OK %d" % count
    assert status == 0, daemon.log()


def test_lookup_longer_than_shutdown_grace_is_cut_and_exit_is_zero(tmp_path: Path) -> None:
    # The lookup may run for 30 s: only shutdown_grace may cut it short.
    daemon = _slow_daemon(
        tmp_path, 50_000_000, "request_timeout = 90\nshutdown_grace = 0.5", query_timeout=30
    )
    try:
        busy = daemon.client(timeout=30.0)
        busy.send_raw(netstring(b"slow k"))
        time.sleep(0.5)
        daemon.signal(signal.SIGTERM)
        terminated = time.monotonic()
        try:
            status: int | None = daemon.process.wait(5)
        except subprocess.TimeoutExpired:
            status = None
        exited = time.monotonic() - terminated
        try:
            reply: bytes | None = busy.read_reply()
        except (EOFError, ConnectionResetError):
            reply = None
        if status is None:
            # Too slow already; find out how slow, for the report.
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.process.wait(60)
    finally:
        daemon.stop()
    late = time.monotonic() - terminated
    print(
        f"\nshutdown_grace 0.5 s: exit status {status} within {exited:.2f} s of SIGTERM "
        f"(process gone after {late:.2f} s, status {daemon.process.returncode}); reply {reply!r}"
    )
    assert status == 0, daemon.log()
    # Cut: no answer, or one that is not the lookup's result, and the connection is closed.
    assert reply is None or not reply.startswith(b"OK "), reply


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_exit_zero_and_remove_the_socket(
    start_daemon: DaemonFactory, signum: signal.Signals
) -> None:
    daemon = start_daemon(unix=True)
    assert daemon.unix_path is not None
    assert daemon.client().ask("recipient", "alice@example.com") == b"OK alice@example.com"
    daemon.signal(signum)
    assert daemon.process.wait(30) == 0, daemon.log()
    assert not Path(daemon.unix_path).exists()
    assert "Traceback" not in daemon.log()


def test_sighup_as_soon_as_the_listener_answers_is_a_reload_not_death(tmp_path: Path) -> None:
    db = make_sqlite(tmp_path / "test.sqlite3")
    outcomes: list[int | None] = []
    for attempt in range(10):
        port = free_port()
        path = tmp_path / f"early{attempt}.toml"
        path.write_text(toml_config(db, [f"tcp://127.0.0.1:{port}"]))
        with (tmp_path / f"early{attempt}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "sockmapd", "-c", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            # Poll without pausing, to signal the moment the listener exists.
            deadline = time.monotonic() + 15
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                    break
                except OSError:
                    continue
            process.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            outcomes.append(process.poll())
        finally:
            process.terminate()
            process.wait(30)
    print(f"\nexit status 0.5 s after an early SIGHUP (None: still running): {outcomes}")
    assert outcomes == [None] * 10
