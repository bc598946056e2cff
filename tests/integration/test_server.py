"""The server over real sockets, against a real sockmapd process on SQLite."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import USERS, DaemonFactory, make_sqlite, toml_config
from tests.integration.daemon import Daemon, SocketmapClient, free_port, netstring


def test_found_key_answers_ok_with_key_as_stored(daemon: Daemon) -> None:
    client = daemon.client()
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"


def test_missing_key_answers_notfound_with_trailing_space(daemon: Daemon) -> None:
    client = daemon.client()
    client.send_raw(netstring(b"recipient nobody@example.com"))
    assert client.sock.recv(100) == b"9:NOTFOUND ,"


def test_value_and_reason_are_joined_by_one_space(daemon: Daemon) -> None:
    client = daemon.client()
    assert (
        client.ask("blacklist", "hello@buydirect4u.co.uk")
        == b"OK REJECT Sender identified as spammer"
    )
    assert client.ask("blacklist", "friend@example.org") == b"OK OK"


def test_several_rows_are_joined_with_commas_and_null_values_skipped(daemon: Daemon) -> None:
    client = daemon.client()
    assert client.ask("blacklist", "multi@example.org") == b"OK DISCARD,HOLD second row"
    assert client.ask("blacklist", "nullvalue@example.org") == b"NOTFOUND "


@pytest.mark.parametrize("key", USERS)
def test_keys_with_spaces_commas_colons_quotes_and_utf8(daemon: Daemon, key: str) -> None:
    client = daemon.client()
    assert client.ask("recipient", key) == b"OK " + key.encode()


@pytest.mark.parametrize(
    "key",
    ["x'OR'1'='1", "' OR '1'='1' --", "\\' OR 1=1 #", "'; DROP TABLE users; --", "%", "_"],
)
def test_injection_keys_are_not_found_and_table_survives(daemon: Daemon, key: str) -> None:
    client = daemon.client()
    assert client.ask("recipient", key) == b"NOTFOUND "
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"


def test_empty_key_is_looked_up(daemon: Daemon) -> None:
    assert daemon.client().ask("recipient", "") == b"NOTFOUND "


def test_one_byte_writes(daemon: Daemon) -> None:
    client = daemon.client()
    for byte in netstring(b"recipient bob@example.com"):
        client.send_raw(bytes([byte]))
        time.sleep(0.001)
    assert client.read_reply() == b"OK bob@example.com"


def test_pipelined_requests_in_one_packet_all_answered_in_order(daemon: Daemon) -> None:
    client = daemon.client()
    client.send_raw(
        netstring(b"recipient alice@example.com")
        + netstring(b"recipient nobody@example.com")
        + netstring(b"blacklist hello@buydirect4u.co.uk")
        + netstring(b"recipient comma,user@example.com")
    )
    assert client.read_reply() == b"OK alice@example.com"
    assert client.read_reply() == b"NOTFOUND "
    assert client.read_reply() == b"OK REJECT Sender identified as spammer"
    assert client.read_reply() == b"OK comma,user@example.com"


def test_unknown_map_is_temp_naming_the_map(daemon: Daemon) -> None:
    reply = daemon.client().ask("nosuchmap", "alice@example.com")
    assert reply.startswith(b"TEMP ")
    assert b"nosuchmap" in reply


def test_database_error_is_temp_never_notfound(daemon: Daemon) -> None:
    client = daemon.client()
    reply = client.ask("broken", "alice@example.com")
    assert reply.startswith(b"TEMP "), reply
    # The connection and the other maps keep working.
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"


def test_reply_over_the_limit_is_temp(daemon: Daemon) -> None:
    client = daemon.client()
    assert client.ask("big", "huge").startswith(b"TEMP ")
    assert client.ask("recipient", "bob@example.com") == b"OK bob@example.com"


def test_invalid_utf8_key_is_perm_and_connection_stays_open(daemon: Daemon) -> None:
    client = daemon.client()
    assert client.ask("recipient", b"\xff\xfe@example.com").startswith(b"PERM ")
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"


def test_request_without_space_is_perm_and_connection_stays_open(daemon: Daemon) -> None:
    client = daemon.client()
    client.send_raw(netstring(b"recipient"))
    assert client.read_reply().startswith(b"PERM ")
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"


def test_oversized_length_header_is_perm_and_closed_without_payload(daemon: Daemon) -> None:
    client = daemon.client(timeout=5.0)
    started = time.monotonic()
    client.send_raw(b"999999999:")
    reply = client.read_reply()
    assert reply.startswith(b"PERM "), reply
    assert client.at_eof()
    # The server did not wait for 999999999 bytes, nor for a timeout.
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize(
    "garbage",
    [
        b"abc:recipient x,",
        b"01:a,",
        b"5:hello;",
        b"-1:",
        b":",
        # The frame from a well-known description of the protocol: 31 bytes, not 32.
        b"32:recipient someone@somewhere.com,31:recipient someone@somewhere.com,",
    ],
)
def test_garbage_gets_perm_and_close_while_other_clients_keep_working(
    daemon: Daemon, garbage: bytes
) -> None:
    good = daemon.client()
    assert good.ask("recipient", "alice@example.com") == b"OK alice@example.com"
    bad = daemon.client(timeout=5.0)
    bad.send_raw(garbage)
    assert bad.read_reply().startswith(b"PERM ")
    assert bad.at_eof()
    assert good.ask("recipient", "bob@example.com") == b"OK bob@example.com"
    assert daemon.client().ask("recipient", "alice@example.com") == b"OK alice@example.com"


def test_frames_before_a_bad_frame_are_still_answered(daemon: Daemon) -> None:
    client = daemon.client(timeout=5.0)
    client.send_raw(netstring(b"recipient alice@example.com") + b"xx:")
    assert client.read_reply() == b"OK alice@example.com"
    assert client.read_reply().startswith(b"PERM ")
    assert client.at_eof()


def test_client_reset_does_not_disturb_others(daemon: Daemon) -> None:
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", daemon.port))
        sock.sendall(b"25:recipient alice@exam")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    assert daemon.client().ask("recipient", "alice@example.com") == b"OK alice@example.com"
    assert daemon.process.poll() is None


def test_200_concurrent_connections_are_all_served(daemon: Daemon) -> None:
    assert daemon.port is not None
    port = daemon.port

    async def one(i: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = USERS[i % len(USERS)] if i % 2 == 0 else f"absent{i}@example.com"
        writer.write(netstring(b"recipient " + key.encode()))
        await writer.drain()
        header = await reader.readuntil(b":")
        payload = await reader.readexactly(int(header[:-1]) + 1)
        writer.close()
        expected = b"OK " + key.encode() if i % 2 == 0 else b"NOTFOUND "
        assert payload[:-1] == expected, (i, payload)
        return payload

    async def all_at_once() -> list[bytes]:
        # Open every connection first, so that all 200 are open at the same time.
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 60)

    assert len(asyncio.run(all_at_once())) == 200


def test_200_open_connections_then_requests(daemon: Daemon) -> None:
    clients = [daemon.client() for _ in range(200)]
    for i, client in enumerate(clients):
        client.send_raw(netstring(b"recipient " + USERS[i % len(USERS)].encode()))
    for i, client in enumerate(clients):
        assert client.read_reply() == b"OK " + USERS[i % len(USERS)].encode()
        client.close()


def test_unix_socket_listener(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon(unix=True)
    assert daemon.unix_path is not None
    client = SocketmapClient.unix(daemon.unix_path)
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
    assert daemon.stop() == 0
    assert not Path(daemon.unix_path).exists()


def test_idle_connection_is_closed_after_idle_timeout(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon("idle_timeout = 0.5")
    client = daemon.client(timeout=5.0)
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
    started = time.monotonic()
    assert client.at_eof()
    assert 0.3 < time.monotonic() - started < 4.0


def test_slow_partial_request_is_cut_at_request_timeout(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon("idle_timeout = 30.0\nrequest_timeout = 0.5")
    client = daemon.client(timeout=5.0)
    client.send_raw(b"27:recipient al")
    started = time.monotonic()
    with pytest.raises(EOFError):
        client.read_reply()
    assert time.monotonic() - started < 4.0


def slow_map_daemon(tmp_path: Path) -> Daemon:
    """Start a daemon with request_timeout = 0.3 and a map "slow" that takes seconds."""
    db = make_sqlite(tmp_path / "slow.sqlite3")
    with sqlite3.connect(db) as conn:
        # A view whose every read counts to 2e7: seconds, far longer than the timeout.
        conn.execute(
            "CREATE VIEW slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
            "SELECT x + 1 FROM c WHERE x < 20000000) SELECT 'k' AS k, count(*) AS v FROM c"
        )
    port = free_port()
    text = toml_config(db, [f"tcp://127.0.0.1:{port}"], "request_timeout = 0.3")
    text += '\n[maps.slow]\ndatabase = "main"\ntable = "slow"\nkey = "k"\nvalue = "v"\n'
    path = tmp_path / "slow.toml"
    path.write_text(text)
    return Daemon(path, port)


def test_slow_lookup_answers_timeout_and_connection_goes_on(tmp_path: Path) -> None:
    daemon = slow_map_daemon(tmp_path)
    try:
        client = daemon.client(timeout=10.0)
        started = time.monotonic()
        client.send_raw(netstring(b"slow k") + netstring(b"recipient alice@example.com"))
        assert client.read_reply().startswith(b"TIMEOUT ")
        assert time.monotonic() - started < 5.0
        assert client.read_reply() == b"OK alice@example.com"
        assert "result=TIMEOUT" in daemon.log()
    finally:
        daemon.stop()


def test_slow_lookup_before_a_bad_frame_answers_timeout_then_perm(tmp_path: Path) -> None:
    daemon = slow_map_daemon(tmp_path)
    try:
        client = daemon.client(timeout=10.0)
        # The frames before the bad one are answered first, the slow one within
        # the request timeout, then PERM for the bad frame.
        client.send_raw(
            netstring(b"slow k") + netstring(b"recipient alice@example.com") + b"x:bad,"
        )
        assert client.read_reply().startswith(b"TIMEOUT ")
        assert client.read_reply() == b"OK alice@example.com"
        assert client.read_reply().startswith(b"PERM ")
        assert client.at_eof()
        assert "unexpected error" not in daemon.log()
    finally:
        daemon.stop()


def test_one_log_line_per_request_and_keepalive_not_logged(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon()
    client = daemon.client()
    client.ask("recipient", "alice@example.com")
    client.ask("recipient", "KEEPALIVE")
    client.ask("recipient", 'evil\nkey="x"')
    time.sleep(0.2)
    log = daemon.log()
    lines = [line for line in log.splitlines() if "map=recipient" in line]
    assert len(lines) == 2, log
    assert "key=alice@example.com result=OK ms=" in lines[0]
    assert "client=127.0.0.1:" in lines[0]
    assert 'key="evil\\nkey=\\"x\\"" result=NOTFOUND' in lines[1]
    assert "KEEPALIVE" not in log


def test_sighup_reload_serves_new_map_and_bad_config_keeps_old(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = start_daemon()
    client = daemon.client()
    assert client.ask("alias", "alice@example.com").startswith(b"TEMP ")
    good = daemon.config_path.read_text() + (
        '\n[maps.alias]\ndatabase = "main"\ntable = "users"\nkey = "address"\n'
    )
    daemon.config_path.write_text(good)
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while client.ask("alias", "alice@example.com") != b"OK alice@example.com":
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    daemon.config_path.write_text(good + "\n[maps.x]\nbogus = 1\n")
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload failed" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    assert "maps.x" in daemon.log()
    assert client.ask("alias", "alice@example.com") == b"OK alice@example.com"
    assert daemon.process.poll() is None


def test_sigterm_exits_zero(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon()
    client = daemon.client()
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
    assert daemon.stop() == 0
    assert client.at_eof()


def test_port_in_use_is_a_clear_startup_error(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    first = start_daemon()
    path = tmp_path / "second.toml"
    path.write_text(first.config_path.read_text())
    result = subprocess.run(
        [sys.executable, "-m", "sockmapd", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"cannot listen on tcp://127.0.0.1:{first.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_ipv6_and_ipv4_listeners_together(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    port = free_port()
    db = make_sqlite(tmp_path / "v6.sqlite3")
    text = toml_config(db, [f"tcp://127.0.0.1:{port}", f"tcp://[::1]:{port}"])
    daemon = start_daemon(config_text=text.replace(str(port), "@PORT@"), name="v6.toml")
    v6 = SocketmapClient.tcp(daemon.port or 0, host="::1")
    assert v6.ask("recipient", "alice@example.com") == b"OK alice@example.com"
    v4 = daemon.client()
    assert v4.ask("recipient", "bob@example.com") == b"OK bob@example.com"


def test_query_command_against_a_running_server(daemon: Daemon) -> None:
    def query(*keys: str) -> subprocess.CompletedProcess[str]:
        address = f"tcp://127.0.0.1:{daemon.port}"
        return subprocess.run(
            [sys.executable, "-m", "sockmapd", "query", "-s", address, "recipient", *keys],
            capture_output=True,
            text=True,
            timeout=30,
        )

    found = query("alice@example.com")
    assert (found.returncode, found.stdout) == (0, "OK alice@example.com\n")
    missing = query("alice@example.com", "nobody@example.com")
    assert missing.returncode == 1
    assert (
        missing.stdout == "alice@example.com\tOK alice@example.com\nnobody@example.com\tNOTFOUND\n"
    )
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sockmapd",
            "query",
            "-s",
            f"tcp://127.0.0.1:{daemon.port}",
            "broken",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failed.returncode == 3
    assert failed.stdout.startswith("TEMP ")
