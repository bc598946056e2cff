"""Cached answers given in the stream's callback (Connection.answer_now), in a real sockmapd."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.conftest import DaemonFactory
from tests.integration.daemon import Daemon, netstring
from tests.integration.test_cache import cache_config, execute

IDLE = 1.0


def start(start_daemon: DaemonFactory, tmp_path: Path, server: str = "") -> Daemon:
    db = tmp_path / "test.sqlite3"
    execute(db, "CREATE TABLE fragile (k TEXT NOT NULL)", "INSERT INTO fragile VALUES ('here')")
    text = cache_config(db).replace("allow_root = true", f"allow_root = true\n{server}", 1)
    return start_daemon(config_text=text)


def request(map_name: str, key: str) -> bytes:
    return netstring(f"{map_name} {key}".encode())


def test_pipelined_cached_and_looked_up_answers_keep_their_order(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = start(start_daemon, tmp_path)
    client = daemon.client()
    assert client.ask("long", "alice@example.com") == b"OK alice@example.com"
    # One write: cached, database (TEMP: no such table), cached, database, cached.
    client.send_raw(
        request("long", "alice@example.com")
        + request("late", "x")
        + request("long", "alice@example.com")
        + request("long", "bob@example.com")
        + request("long", "alice@example.com")
    )
    replies = [client.read_reply() for _ in range(5)]
    assert replies[0] == b"OK alice@example.com"
    assert replies[1].startswith(b"TEMP ")
    assert replies[2:] == [b"OK alice@example.com", b"OK bob@example.com", b"OK alice@example.com"]


def test_a_malformed_request_between_cached_ones_is_answered_perm_in_its_place(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = start(start_daemon, tmp_path)
    client = daemon.client()
    assert client.ask("long", "alice@example.com") == b"OK alice@example.com"
    client.send_raw(
        request("long", "alice@example.com")
        + netstring(b"nospace")
        + request("long", "alice@example.com")
    )
    assert client.read_reply() == b"OK alice@example.com"
    assert client.read_reply().startswith(b"PERM ")
    assert client.read_reply() == b"OK alice@example.com"
    # A malformed request does not end the connection.
    assert client.ask("long", "alice@example.com") == b"OK alice@example.com"


def test_a_frame_error_after_cached_answers_answers_them_then_perm_and_closes(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = start(start_daemon, tmp_path)
    client = daemon.client()
    assert client.ask("long", "alice@example.com") == b"OK alice@example.com"
    client.send_raw(request("long", "alice@example.com") + b"x:garbage,")
    assert client.read_reply() == b"OK alice@example.com"
    assert client.read_reply().startswith(b"PERM ")
    assert client.at_eof()
    # Others are served.
    assert daemon.client().ask("long", "alice@example.com") == b"OK alice@example.com"


def test_cached_answers_keep_a_connection_alive_and_it_closes_once_idle(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = start(start_daemon, tmp_path, server=f"idle_timeout = {IDLE}")
    client = daemon.client()
    assert client.ask("long", "alice@example.com") == b"OK alice@example.com"
    # Several idle_timeouts of cached answers only, none of them more than a
    # quarter of idle_timeout apart: the connection must stay open throughout.
    until = time.monotonic() + 4 * IDLE
    asked = 0
    while time.monotonic() < until:
        assert client.ask("long", "alice@example.com") == b"OK alice@example.com"
        asked += 1
        time.sleep(IDLE / 4)
    assert asked >= 8
    # Then idle: the server closes it (at_eof blocks until it does, up to the timeout).
    client.sock.settimeout(10 * IDLE)
    assert client.at_eof()


def test_every_cached_answer_is_logged(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    daemon = start(start_daemon, tmp_path)
    client = daemon.client()
    for _ in range(5):
        assert client.ask("long", "carol-not-there@example.com") == b"NOTFOUND "
    for _ in range(5):
        assert client.ask("long", "alice@example.com") == b"OK alice@example.com"
    client.close()
    deadline = time.monotonic() + 10
    while daemon.log().count("map=long key=alice@example.com result=OK") < 5:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    assert daemon.log().count("map=long key=carol-not-there@example.com result=NOTFOUND") == 5


def test_a_reply_over_max_reply_bytes_is_temp_from_the_database_and_from_the_cache(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    # "OK alice@example.com" is 20 bytes: one more than the client takes.
    daemon = start(start_daemon, tmp_path, "max_reply_bytes = 19")
    client = daemon.client()
    too_large = b"TEMP reply too large, try again later"
    assert client.ask("long", "alice@example.com") == too_large  # looked up
    assert client.ask("long", "alice@example.com") == too_large  # cached, in the callback
    assert client.ask("long", "bob@example.com") == b"OK bob@example.com"  # 18 bytes
    assert client.ask("long", "bob@example.com") == b"OK bob@example.com"
