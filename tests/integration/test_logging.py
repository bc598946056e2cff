"""Log formats, targets and key privacy, seen from outside a real daemon."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import DaemonFactory, toml_config
from tests.integration.daemon import Daemon, SocketmapClient, free_port, netstring

WAIT = 15.0


def config_text(tmp_path: Path, log_section: str) -> str:
    """Return the test config with its [log] table replaced by log_section."""
    text = toml_config(tmp_path / "test.sqlite3", ["tcp://127.0.0.1:@PORT@"])
    default = '[log]\nlevel = "info"\n'
    assert default in text
    return text.replace(default, f"[log]\n{log_section}\n")


def wait_until(check: Callable[[], bool], what: Callable[[], str]) -> None:
    """Return once check() holds; fail with what() if it does not within WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def ask_all(daemon: Daemon, payloads: list[bytes]) -> list[bytes]:
    """Send each payload as one request on one connection; return the replies in order."""
    replies = []
    for payload in payloads:
        client = daemon.client()
        client.send_raw(netstring(payload))
        replies.append(client.read_reply())
        client.close()
    return replies


def test_json_lines_carry_the_request_fields(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    log_file = tmp_path / "sockmapd.log"
    daemon = start_daemon(
        config_text=config_text(tmp_path, f'format = "json"\nfile = "{log_file}"')
    )
    replies = ask_all(
        daemon,
        [
            b"recipient alice@example.com",
            b"recipient KEEPALIVE",
            b"recipient nobody@example.com",
            b"no-space-at-all",
            b"broken somebody@example.com",
        ],
    )
    assert [r.split(b" ")[0] for r in replies] == [
        b"OK",
        b"NOTFOUND",
        b"NOTFOUND",
        b"PERM",
        b"TEMP",
    ]
    wait_until(lambda: "somebody@example.com" in read(log_file), lambda: read(log_file))
    daemon.stop()
    entries = [json.loads(line) for line in read(log_file).splitlines()]
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= set(entry), entry
    requests = [e for e in entries if e["logger"] == "sockmapd.request"]
    assert [(e["map"], e["key"], e["result"]) for e in requests] == [
        ("recipient", "alice@example.com", "OK"),
        ("recipient", "nobody@example.com", "NOTFOUND"),
        ("", "no-space-at-all", "PERM"),
        ("broken", "somebody@example.com", "TEMP"),
    ]
    for entry in requests:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", entry["client"])
        assert isinstance(entry["ms"], float)
        assert entry["level"] == "info"
    # Records other than requests are JSON too: the database error and start and stop.
    assert any(e["level"] == "warning" and "no_such_table" in e["msg"] for e in entries)
    assert any(e["msg"].startswith("listening on ") for e in entries)
    assert "KEEPALIVE" not in read(log_file)
    assert daemon.log() == ""


def test_log_keys_false_writes_no_key_anywhere(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    secrets = {
        b"recipient alice@example.com": "alice",  # found
        b"recipient zq-absent-7731@example.org": "zq-absent-7731",  # not found
        b"nospace-3317@example.org": "nospace-3317",  # malformed: no map name
        b"recipient nul-4471\x00@example.org": "nul-4471",  # malformed: NUL in the key
        b"broken dbfail-5521@example.org": "dbfail-5521",  # database error (missing table)
        b"nosuchmap unknown-6613@example.org": "unknown-6613",  # unknown map
    }
    for log_format in ("text", "json"):
        log_file = tmp_path / f"{log_format}.log"
        daemon = start_daemon(
            name=f"{log_format}.toml",
            config_text=config_text(
                tmp_path,
                f'format = "{log_format}"\nfile = "{log_file}"\nlog_keys = false\nlevel = "debug"',
            ),
        )
        payloads = [*secrets, b"recipient alice@example.com"]
        replies = ask_all(daemon, payloads)
        assert replies[0] == replies[-1] == b"OK alice@example.com"
        assert replies[4].startswith(b"TEMP ")
        wait_until(
            lambda log_file=log_file: len(re.findall(r"h:[0-9a-f]{12}", read(log_file))) == 7,
            lambda log_file=log_file: read(log_file),
        )
        daemon.stop()
        text = read(log_file) + daemon.log()
        for secret in secrets.values():
            assert secret not in text, text
        assert "no_such_table" in text  # the database error itself was logged
        hashes = re.findall(r"h:[0-9a-f]{12}", text)
        # The same key twice gives the same hash; different keys differ.
        assert hashes[0] == hashes[-1]
        assert len(set(hashes)) == 6


def test_renamed_file_and_sigusr1_continue_in_a_new_file(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    log_file = tmp_path / "sockmapd.log"
    rotated = tmp_path / "sockmapd.log.1"
    daemon = start_daemon(config_text=config_text(tmp_path, f'file = "{log_file}"'))
    client = daemon.client()
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
    wait_until(lambda: "alice@example.com" in read(log_file), lambda: read(log_file))
    # What logrotate does without copytruncate: rename, create, then the postrotate signal.
    log_file.rename(rotated)
    log_file.touch()
    daemon.signal(signal.SIGUSR1)
    wait_until(lambda: "reopened" in read(log_file), lambda: read(log_file) + read(rotated))
    assert client.ask("recipient", "bob@example.com") == b"OK bob@example.com"
    wait_until(lambda: "bob@example.com" in read(log_file), lambda: read(log_file))
    daemon.stop()
    old, new = read(rotated), read(log_file)
    assert "key=alice@example.com result=OK" in old
    assert "bob@example.com" not in old
    assert "reopened" not in old
    assert "key=bob@example.com result=OK" in new
    assert "alice@example.com" not in new


def test_sigusr1_reopens_the_log_file_without_reloading(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    log_file = tmp_path / "sockmapd.log"
    rotated = tmp_path / "sockmapd.log.1"
    daemon = start_daemon(config_text=config_text(tmp_path, f'file = "{log_file}"'))
    client = daemon.client()
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
    wait_until(lambda: "alice@example.com" in read(log_file), lambda: read(log_file))
    # A changed config file must not be read: the recipient map would be gone.
    text = daemon.config_path.read_text(encoding="utf-8")
    daemon.config_path.write_text(
        text.replace("[maps.recipient]", "[maps.renamed]"), encoding="utf-8"
    )
    # Moved away and not recreated: the signal alone must bring the file back.
    log_file.rename(rotated)
    daemon.signal(signal.SIGUSR1)
    wait_until(lambda: "reopened" in read(log_file), lambda: read(log_file) + read(rotated))
    assert client.ask("recipient", "bob@example.com") == b"OK bob@example.com"
    wait_until(lambda: "bob@example.com" in read(log_file), lambda: read(log_file))
    daemon.stop()
    old, new = read(rotated), read(log_file)
    assert "reload" not in old + new
    assert "key=alice@example.com result=OK" in old
    assert "key=bob@example.com result=OK" in new
    assert "alice@example.com" not in new


def test_syslog_datagrams_have_the_facility_and_no_keepalive(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    address = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(address))
        receiver.settimeout(WAIT)
        daemon = start_daemon(
            config_text=config_text(
                tmp_path,
                f'target = "syslog"\nsyslog_address = "{address}"\nsyslog_facility = "local5"',
            )
        )
        client: SocketmapClient = daemon.client()
        for key in ("alice@example.com", "KEEPALIVE", "last@example.com"):
            client.ask("recipient", key)
        datagrams: list[bytes] = []
        while not datagrams or b"last@example.com" not in datagrams[-1]:
            datagrams.append(receiver.recv(65536))
        daemon.stop()
    ident = f"sockmapd[{daemon.process.pid}]: ".encode()
    # local5 is facility 21: <21 * 8 + severity>, info being 6.
    requests = [d for d in datagrams if b" sockmapd.request: " in d]
    assert len(requests) == 2, datagrams
    assert requests[0].startswith(b"<174>" + ident + b"INFO sockmapd.request: client=127.0.0.1:")
    assert b" key=alice@example.com result=OK ms=" in requests[0]
    assert not any(b"KEEPALIVE" in d for d in datagrams)
    assert all(d.startswith(b"<174>" + ident) for d in datagrams)
    assert daemon.log() == ""


def test_unreachable_syslog_socket_fails_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "no.sock"
    text = config_text(tmp_path, f'target = "syslog"\nsyslog_address = "{missing}"')
    path = tmp_path / "sockmapd.toml"
    path.write_text(text.replace("@PORT@", str(free_port())))
    result = subprocess.run(
        [sys.executable, "-m", "sockmapd", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 1
    assert f"cannot reach the syslog socket {missing}" in result.stderr


def test_ten_thousand_failures_write_a_few_lines_that_count_them(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    log_file = tmp_path / "sockmapd.log"
    daemon = start_daemon(
        config_text=config_text(tmp_path, f'level = "warning"\nfile = "{log_file}"')
    )
    client = daemon.client()
    total, batch = 10_000, 500
    for start in range(0, total, batch):
        client.send_raw(b"".join(netstring(b"broken k%d" % i) for i in range(start, start + batch)))
        for _ in range(batch):
            assert client.read_reply().startswith(b"TEMP")
    client.close()
    daemon.stop()
    lines = read(log_file).splitlines()
    assert len(lines) < 20, "\n".join(lines[:40])
    failures = [
        line for line in lines if "database main failed" in line and "more like this" not in line
    ]
    summaries = [
        int(found.group(1).replace(",", ""))
        for line in lines
        if (found := re.search(r"([\d,]+) more like this in the last", line))
    ]
    # Nothing is hidden: each failure is logged or counted in a summary.
    assert summaries, "\n".join(lines)
    assert len(failures) + sum(summaries) == total, "\n".join(lines)
