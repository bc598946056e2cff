"""Limits, access control, socket files and privileges of a real sockmapd under hostile clients."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import resource
import select
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import USERS, DaemonFactory, make_sqlite, toml_config
from tests.integration.daemon import Daemon, SocketmapClient, free_port, netstring

FOUND = "alice@example.com"
FOUND_REPLY = b"OK alice@example.com"


def _rss_kib(pid: int) -> int:
    """Return the resident set size of process pid in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS line for pid {pid}")


def _status_ids(pid: int, field: str) -> list[int]:
    """Return the ids of a /proc/<pid>/status line such as Uid, Gid or Groups."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, values = line.partition(":")
        if name == field:
            return [int(v) for v in values.split()]
    raise AssertionError(f"no {field} line for pid {pid}")


def _wait_for_log(daemon: Daemon, text: str, timeout: float = 10.0) -> str:
    """Return the daemon's log once it contains text; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        log = daemon.log()
        if text in log:
            return log
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{log}"
        time.sleep(0.05)


def _run_sockmapd(config: Path) -> subprocess.CompletedProcess[str]:
    """Run sockmapd in the foreground on config; for configs that must not start."""
    return subprocess.run(
        [sys.executable, "-m", "sockmapd", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _assert_closed_without_reply(host: str, port: int, *, send: bool) -> None:
    """Connect, optionally send a request, and check the server closes without any byte."""
    with socket.create_connection((host, port), timeout=5.0) as sock:
        if send:
            # Already closed by the server, perhaps: that is what is being checked.
            with contextlib.suppress(OSError):
                sock.sendall(netstring(b"recipient " + FOUND.encode()))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        assert data == b"", data


@pytest.fixture
def many_files() -> Iterator[None]:
    """Allow this process (and the daemons it starts) 8192 open files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 8192
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- max_request_bytes ------------------------------------------------------------------


@pytest.mark.parametrize("extra", ["max_request_bytes = 10000", ""], ids=["set", "default"])
def test_header_over_max_request_bytes_is_perm_and_closed_without_payload(
    start_daemon: DaemonFactory, extra: str
) -> None:
    daemon = start_daemon(extra)
    client = daemon.client(timeout=5.0)
    started = time.monotonic()
    client.send_raw(b"10001:")
    reply = client.read_reply()
    elapsed = time.monotonic() - started
    assert reply == b"PERM request too large", reply
    assert client.at_eof()
    print(f"\n10001: answered and closed in {elapsed * 1000:.1f} ms")
    # Not a single payload byte was sent: the server did not wait for one.
    assert elapsed < 5.0


def test_request_of_exactly_max_request_bytes_is_answered(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon("max_request_bytes = 10000")
    payload = b"recipient " + b"a" * 9990
    assert len(payload) == 10000
    client = daemon.client()
    client.send_raw(b"10000:" + payload + b",")
    assert client.read_reply() == b"NOTFOUND "
    assert client.ask("recipient", FOUND) == FOUND_REPLY


# --- request_timeout against slow senders -----------------------------------------------


def test_slowloris_clients_are_cut_at_request_timeout_and_others_served(
    start_daemon: DaemonFactory,
) -> None:
    daemon = start_daemon("request_timeout = 1\nidle_timeout = 30")
    assert daemon.port is not None
    frame = netstring(b"recipient " + FOUND.encode())
    slow = [socket.create_connection(("127.0.0.1", daemon.port), timeout=5.0) for _ in range(10)]
    first_byte: dict[int, float] = {}
    cut_after: dict[int, float] = {}
    good = daemon.client(timeout=5.0)
    answered = 0
    try:
        # One byte every 0.3 s: the whole 31-byte request would take over 9 s.
        for position in range(len(frame)):
            for index, sock in enumerate(slow):
                if index in cut_after:
                    continue
                try:
                    sock.send(frame[position : position + 1])
                except OSError:
                    cut_after[index] = time.monotonic() - first_byte[index]
                    continue
                first_byte.setdefault(index, time.monotonic())
            assert good.ask("recipient", FOUND) == FOUND_REPLY
            answered += 1
            open_socks = [s for i, s in enumerate(slow) if i not in cut_after]
            if not open_socks:
                break
            readable, _, _ = select.select(open_socks, [], [], 0.3)
            for sock in readable:
                index = slow.index(sock)
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                assert data == b"", f"slow client {index} got {data!r}"
                cut_after[index] = time.monotonic() - first_byte[index]
    finally:
        for sock in slow:
            sock.close()
    print(
        f"\nslow clients cut after {min(cut_after.values()):.2f}-{max(cut_after.values()):.2f} s "
        f"(request_timeout 1 s); {answered} lookups answered meanwhile"
    )
    assert sorted(cut_after) == list(range(len(slow))), "a slow client was never cut"
    assert max(cut_after.values()) < 5.0
    assert daemon.client().ask("recipient", FOUND) == FOUND_REPLY


# --- many connections -------------------------------------------------------------------


async def _open_and_ask(
    port: int, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Open count connections at once, then ask one lookup on each; return them still open."""
    connections = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(count))
    )
    keys = [USERS[i % len(USERS)] if i % 2 == 0 else f"absent{i}@example.com" for i in range(count)]
    for (_, writer), key in zip(connections, keys, strict=True):
        writer.write(netstring(b"recipient " + key.encode()))

    async def reply(reader: asyncio.StreamReader) -> bytes:
        header = await reader.readuntil(b":")
        return (await reader.readexactly(int(header[:-1]) + 1))[:-1]

    replies = await asyncio.gather(*(reply(reader) for reader, _ in connections))
    for i, (key, answer) in enumerate(zip(keys, replies, strict=True)):
        expected = b"OK " + key.encode() if i % 2 == 0 else b"NOTFOUND "
        assert answer == expected, (i, answer)
    return list(connections)


async def _close_all(connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in connections:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w in connections), return_exceptions=True)


def test_1100_concurrent_connections_are_all_served(
    start_daemon: DaemonFactory, many_files: None
) -> None:
    daemon = start_daemon("max_connections = 2000")
    assert daemon.port is not None
    port = daemon.port

    async def run() -> int:
        connections = await _open_and_ask(port, 1100)
        await _close_all(connections)
        return len(connections)

    started = time.monotonic()
    assert asyncio.run(asyncio.wait_for(run(), 120)) == 1100
    print(f"\n1100 concurrent connections served in {time.monotonic() - started:.2f} s")
    assert daemon.client().ask("recipient", FOUND) == FOUND_REPLY


def test_rss_with_1000_idle_connections(start_daemon: DaemonFactory, many_files: None) -> None:
    daemon = start_daemon("max_connections = 2000")
    assert daemon.port is not None
    port = daemon.port
    pid = daemon.process.pid
    assert daemon.client().ask("recipient", FOUND) == FOUND_REPLY
    before = _rss_kib(pid)

    async def run() -> int:
        connections = await _open_and_ask(port, 1000)
        # Every connection has been served once and now sits idle.
        await asyncio.sleep(0.5)
        during = _rss_kib(pid)
        await _close_all(connections)
        return during

    during = asyncio.run(asyncio.wait_for(run(), 120))
    print(
        f"\nRSS before: {before} KiB; with 1000 idle connections: {during} KiB "
        f"(+{during - before} KiB, {(during - before) / 1000:.1f} KiB per connection)"
    )
    assert daemon.process.poll() is None
    assert daemon.client().ask("recipient", FOUND) == FOUND_REPLY


def test_max_connections_leaves_new_clients_in_the_backlog_until_a_slot_frees(
    start_daemon: DaemonFactory,
) -> None:
    daemon = start_daemon("max_connections = 5")
    held = [daemon.client(timeout=10.0) for _ in range(5)]
    for client in held:
        assert client.ask("recipient", FOUND) == FOUND_REPLY
    # The kernel completes the handshake (backlog), but sockmapd does not accept them.
    waiting = [daemon.client(timeout=10.0) for _ in range(3)]
    for client in waiting:
        client.send_raw(netstring(b"recipient " + FOUND.encode()))
    readable, _, _ = select.select([c.sock for c in waiting], [], [], 2.0)
    assert readable == [], "a connection beyond max_connections was answered"
    log = _wait_for_log(daemon, "max_connections")
    time.sleep(0.5)
    log = daemon.log()
    mentions = [line for line in log.splitlines() if "max_connections" in line]
    assert len(mentions) == 1, log

    held.pop().close()
    readable, _, _ = select.select([c.sock for c in waiting], [], [], 10.0)
    assert len(readable) == 1, "one freed slot must let exactly one waiting client in"
    first = next(c for c in waiting if c.sock is readable[0])
    assert first.read_reply() == FOUND_REPLY
    waiting.remove(first)
    readable, _, _ = select.select([c.sock for c in waiting], [], [], 1.0)
    assert readable == [], "more than max_connections connections were served"

    for client in held:
        client.close()
    for client in waiting:
        assert client.read_reply() == FOUND_REPLY
    assert first.ask("recipient", "bob@example.com") == b"OK bob@example.com"
    final = [line for line in daemon.log().splitlines() if "max_connections" in line]
    print(f"\nmax_connections log lines: {len(final)}")
    for line in final:
        print(f"  {line}")


def test_client_that_never_reads_replies_does_not_grow_memory_or_block_others(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    big_value = "y" * 60_000
    with sqlite3.connect(tmp_path / "test.sqlite3") as conn:
        conn.execute("INSERT INTO big VALUES ('large', ?)", (big_value,))
    conn.close()
    daemon = start_daemon()
    assert daemon.port is not None
    pid = daemon.process.pid
    good = daemon.client(timeout=10.0)
    assert good.ask("big", "large") == b"OK " + big_value.encode()
    before = _rss_kib(pid)

    requests = netstring(b"big large") * 50_000
    hog = socket.create_connection(("127.0.0.1", daemon.port))
    hog.setblocking(False)
    sent = 0
    try:
        # Push requests until the connection stays blocked for 2 s; never read a byte.
        while sent < len(requests):
            _, writable, _ = select.select([], [hog], [], 2.0)
            if not writable:
                break
            try:
                sent += hog.send(requests[sent : sent + 65536])
            except BlockingIOError:
                continue
        checked = 0
        for i in range(200):
            key = USERS[i % len(USERS)]
            assert good.ask("recipient", key) == b"OK " + key.encode()
            checked += 1
        time.sleep(1.0)
        after = _rss_kib(pid)
        assert daemon.process.poll() is None
    finally:
        hog.close()
    print(
        f"\nnon-reading client: {sent} of {len(requests)} request bytes taken "
        f"({sent // len(netstring(b'big large'))} requests, replies of 60 kB each); "
        f"{checked} lookups of another client answered meanwhile\n"
        f"RSS before: {before} KiB, after: {after} KiB (+{after - before} KiB)"
    )
    assert after - before < 100 * 1024
    assert good.ask("recipient", FOUND) == FOUND_REPLY
    assert daemon.client().ask("big", "large") == b"OK " + big_value.encode()


# --- allow --------------------------------------------------------------------------------


def _dual_stack_daemon(start_daemon: DaemonFactory, tmp_path: Path, allow: str) -> Daemon:
    db = tmp_path / "test.sqlite3"
    sock_path = tmp_path / "acl.toml.sock"
    text = toml_config(
        db,
        ["tcp://127.0.0.1:@PORT@", "tcp://[::1]:@PORT@", f"unix://{sock_path}"],
        f"allow = {allow}",
    )
    return start_daemon(config_text=text, name="acl.toml", unix=True)


def _denial_lines(daemon: Daemon, address: str) -> list[str]:
    """Return the log lines naming address, once there is one, apart from the listening line."""
    deadline = time.monotonic() + 10.0
    while True:
        lines = [
            line
            for line in daemon.log().splitlines()
            if address in line and "listening on" not in line
        ]
        if lines:
            # Give a second line, if any is coming, the time to arrive.
            time.sleep(0.3)
            return [
                line
                for line in daemon.log().splitlines()
                if address in line and "listening on" not in line
            ]
        assert time.monotonic() < deadline, f"no log line names {address}:\n{daemon.log()}"
        time.sleep(0.05)


def test_allow_ipv4_only_closes_ipv6_clients_without_a_byte(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = _dual_stack_daemon(start_daemon, tmp_path, '["127.0.0.1/32"]')
    assert daemon.port is not None
    assert daemon.client().ask("recipient", FOUND) == FOUND_REPLY
    _assert_closed_without_reply("::1", daemon.port, send=False)
    for _ in range(5):
        _assert_closed_without_reply("::1", daemon.port, send=True)
    assert daemon.unix_path is not None
    assert SocketmapClient.unix(daemon.unix_path).ask("recipient", FOUND) == FOUND_REPLY
    assert daemon.client().ask("recipient", "bob@example.com") == b"OK bob@example.com"
    lines = _denial_lines(daemon, "::1")
    print(f"\ndenial log for ::1 after 6 connections: {lines}")
    assert len(lines) == 1, daemon.log()


def test_allow_ipv6_only_closes_ipv4_clients_without_a_byte(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = _dual_stack_daemon(start_daemon, tmp_path, '["::1/128"]')
    assert daemon.port is not None
    v6 = SocketmapClient.tcp(daemon.port, host="::1")
    assert v6.ask("recipient", FOUND) == FOUND_REPLY
    _assert_closed_without_reply("127.0.0.1", daemon.port, send=False)
    for _ in range(5):
        _assert_closed_without_reply("127.0.0.1", daemon.port, send=True)
    assert daemon.unix_path is not None
    assert SocketmapClient.unix(daemon.unix_path).ask("recipient", FOUND) == FOUND_REPLY
    assert v6.ask("recipient", "bob@example.com") == b"OK bob@example.com"
    lines = _denial_lines(daemon, "127.0.0.1")
    print(f"\ndenial log for 127.0.0.1 after 6+ connections: {lines}")
    assert len(lines) == 1, daemon.log()


def test_allow_matches_the_client_address_not_the_family(
    start_daemon: DaemonFactory,
) -> None:
    daemon = start_daemon('allow = ["127.0.0.2/32"]')
    assert daemon.port is not None
    sock = socket.create_connection(
        ("127.0.0.1", daemon.port), timeout=10.0, source_address=("127.0.0.2", 0)
    )
    client = SocketmapClient(sock)
    assert client.ask("recipient", FOUND) == FOUND_REPLY
    _assert_closed_without_reply("127.0.0.1", daemon.port, send=True)
    assert client.ask("recipient", "bob@example.com") == b"OK bob@example.com"


# --- unix socket file -----------------------------------------------------------------------


def test_unix_socket_gets_the_configured_mode_owner_and_group(
    start_daemon: DaemonFactory,
) -> None:
    daemon = start_daemon(
        'unix_mode = "0640"\nunix_owner = "nobody"\nunix_group = "daemon"', unix=True
    )
    assert daemon.unix_path is not None
    info = os.stat(daemon.unix_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert info.st_uid == pwd.getpwnam("nobody").pw_uid
    assert info.st_gid == grp.getgrnam("daemon").gr_gid
    assert SocketmapClient.unix(daemon.unix_path).ask("recipient", FOUND) == FOUND_REPLY


def test_live_unix_socket_is_not_stolen(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    first = start_daemon(unix=True)
    assert first.unix_path is not None
    text = toml_config(
        tmp_path / "test.sqlite3",
        [f"tcp://127.0.0.1:{free_port()}", f"unix://{first.unix_path}"],
    )
    second = tmp_path / "second.toml"
    second.write_text(text)
    result = _run_sockmapd(second)
    print(f"\nsecond daemon: exit {result.returncode}: {result.stderr.strip()}")
    assert result.returncode == 1
    assert first.unix_path in result.stderr
    assert "Traceback" not in result.stderr
    assert os.path.exists(first.unix_path)
    assert SocketmapClient.unix(first.unix_path).ask("recipient", FOUND) == FOUND_REPLY


def test_stale_unix_socket_is_replaced_and_removed_on_exit(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    stale = tmp_path / "sockmapd.toml.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))
    assert stale.is_socket()
    daemon = start_daemon(unix=True)
    assert daemon.unix_path == str(stale)
    assert SocketmapClient.unix(str(stale)).ask("recipient", FOUND) == FOUND_REPLY
    assert daemon.stop() == 0
    assert not stale.exists()


# --- privileges ------------------------------------------------------------------------------


@pytest.fixture
def world_readable_db() -> Iterator[Path]:
    """A test SQLite file in a fresh directory that any user can read."""
    directory = Path(tempfile.mkdtemp(prefix="sockmapd-priv-"))
    try:
        directory.chmod(0o755)
        db = make_sqlite(directory / "test.sqlite3")
        db.chmod(0o644)
        yield db
    finally:
        shutil.rmtree(directory)


@pytest.mark.parametrize("group", [None, "daemon"])
def test_run_as_user_drops_root(world_readable_db: Path, tmp_path: Path, group: str | None) -> None:
    nobody = pwd.getpwnam("nobody")
    gid = nobody.pw_gid if group is None else grp.getgrnam(group).gr_gid
    extra = 'run_as_user = "nobody"'
    if group is not None:
        extra += f'\nrun_as_group = "{group}"'
    port = free_port()
    path = tmp_path / "priv.toml"
    path.write_text(
        toml_config(world_readable_db, [f"tcp://127.0.0.1:{port}"], extra, allow_root=False)
    )
    daemon = Daemon(path, port)
    try:
        # Served lookups show that start-up, privilege drop included, is over.
        reply = daemon.client().ask("recipient", FOUND)
        pid = daemon.process.pid
        uids, gids = _status_ids(pid, "Uid"), _status_ids(pid, "Gid")
        groups = _status_ids(pid, "Groups")
    finally:
        status = daemon.stop()
    print(f"\nUid {uids} Gid {gids} Groups {groups}")
    assert uids == [nobody.pw_uid] * 4
    assert gids == [gid] * 4
    assert 0 not in groups
    assert reply == FOUND_REPLY
    assert status == 0, daemon.log()


@pytest.mark.parametrize("extra", ["", 'run_as_user = "root"'], ids=["no-user", "root-user"])
def test_toml_daemon_still_root_refuses_to_start(tmp_path: Path, extra: str) -> None:
    db = make_sqlite(tmp_path / "test.sqlite3")
    port = free_port()
    path = tmp_path / "root.toml"
    path.write_text(toml_config(db, [f"tcp://127.0.0.1:{port}"], extra, allow_root=False))
    result = _run_sockmapd(path)
    print(f"\nexit {result.returncode}: {result.stderr.strip()}")
    assert result.returncode == 1
    assert "run_as_user" in result.stderr or "allow_root" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2.0).close()


# --- secrets in the config --------------------------------------------------------------------

REMOTE_DATABASE = {
    "password": (
        '[databases.remote]\ndriver = "mysql"\nhosts = ["127.0.0.1:1"]\nname = "x"\n'
        'user = "u"\npassword = "secret"\n'
    ),
    "url": '[databases.remote]\nurl = "mysql+asyncmy://u:secret@127.0.0.1:1/x"\n',
}
REMOTE_MAP = '\n[maps.remote]\ndatabase = "remote"\ntable = "t"\nkey = "k"\n'


def _start_with_mode(tmp_path: Path, extra_text: str, mode: int) -> Daemon:
    db = make_sqlite(tmp_path / "test.sqlite3")
    port = free_port()
    path = tmp_path / "exposed.toml"
    path.write_text(toml_config(db, [f"tcp://127.0.0.1:{port}"]) + "\n" + extra_text)
    path.chmod(mode)
    return Daemon(path, port)


@pytest.mark.parametrize("form", sorted(REMOTE_DATABASE))
def test_config_with_password_readable_by_others_is_warned_about(tmp_path: Path, form: str) -> None:
    daemon = _start_with_mode(tmp_path, REMOTE_DATABASE[form] + REMOTE_MAP, 0o644)
    try:
        log = _wait_for_log(daemon, "readable")
        print(f"\n{[line for line in log.splitlines() if 'readable' in line]}")
        assert "secret" not in log
        assert daemon.client().ask("recipient", FOUND) == FOUND_REPLY
    finally:
        daemon.stop()


@pytest.mark.parametrize(
    ("extra", "mode"),
    [(REMOTE_DATABASE["password"] + REMOTE_MAP, 0o600), ("", 0o644)],
    ids=["private-with-password", "readable-without-password"],
)
def test_no_readable_warning_without_exposed_password(
    tmp_path: Path, extra: str, mode: int
) -> None:
    daemon = _start_with_mode(tmp_path, extra, mode)
    try:
        assert daemon.client().ask("recipient", FOUND) == FOUND_REPLY
        time.sleep(0.3)
        assert "readable" not in daemon.log()
    finally:
        daemon.stop()


def test_password_file_config_readable_by_others_is_not_warned_about(tmp_path: Path) -> None:
    secret = tmp_path / "remote.password"
    secret.write_text("secret\n")
    secret.chmod(0o600)
    database = (
        '[databases.remote]\ndriver = "mysql"\nhosts = ["127.0.0.1:1"]\nname = "x"\n'
        f'user = "u"\npassword_file = "{secret}"\n'
    )
    daemon = _start_with_mode(tmp_path, database + REMOTE_MAP, 0o644)
    try:
        assert daemon.client().ask("recipient", FOUND) == FOUND_REPLY
        time.sleep(0.3)
        assert "readable" not in daemon.log()
    finally:
        daemon.stop()


def test_the_allow_list_holds_for_connections_accepted_in_a_burst(
    start_daemon: DaemonFactory,
) -> None:
    # Connections already waiting are accepted several per event-loop turn: every
    # one of them must pass the same check as a connection accepted alone.
    daemon = start_daemon('allow = ["127.0.0.2/32"]')
    assert daemon.port is not None
    allowed: list[SocketmapClient] = []
    denied: list[socket.socket] = []
    for _ in range(40):
        allowed.append(
            SocketmapClient(
                socket.create_connection(
                    ("127.0.0.1", daemon.port), timeout=10.0, source_address=("127.0.0.2", 0)
                )
            )
        )
        denied.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=10.0))
    for sock in denied:
        sock.sendall(netstring(b"recipient " + FOUND.encode()))
    for client in allowed:
        assert client.ask("recipient", FOUND) == FOUND_REPLY
    for sock in denied:
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b"", data
        sock.close()
