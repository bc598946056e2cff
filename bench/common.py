"""Shared pieces: the benchmark's keys and answers, netstring framing, process probes."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

MAP_NAME = "users"
TABLE = "bench_users"
DB_NAME = "sockmapd_bench"
FOUND_KEYS = 1000
# Every reference server and sockmapd's SQL pools open at most this many connections
# (sockmapd's defaults: pool_size 10 + max_overflow 0).
POOL_MAX = 10

NOTFOUND = b"NOTFOUND "


def found_key(i: int) -> str:
    """Return the i-th key that exists in the table."""
    return f"user{i}@example.com"


def missing_key(i: int) -> str:
    """Return the i-th key that does not exist."""
    return f"nobody{i}@example.com"


def value_of(i: int) -> str:
    """Return the stored value of found_key(i)."""
    return f"example.com/user{i}/"


def rows(count: int = FOUND_KEYS) -> Iterator[tuple[str, str]]:
    """Yield the (address, maildir) rows of the table."""
    for i in range(count):
        yield found_key(i), value_of(i)


def netstring(payload: bytes) -> bytes:
    """Frame payload as a netstring."""
    return b"%d:%b," % (len(payload), payload)


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float) -> bool:
    """Return True once 127.0.0.1:port accepts a connection, False after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def rss_bytes(pid: int) -> int:
    """Return the resident set size of process pid (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU time used so far by process pid."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """Return pid and its descendants (a sockmapd with workers is several processes)."""
    tree = [pid]
    for parent in tree:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                tree += [int(c) for c in (task / "children").read_text().split()]
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """Return the CPU time used so far by pid and its descendants."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


def tree_rss_bytes(pid: int) -> int:
    """Return the resident set size of pid and its descendants, summed."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += rss_bytes(member)
    return total


def read_reply(sock: socket.socket, buffer: bytearray) -> bytes:
    """Read one netstring payload from a blocking socket; buffer keeps extra bytes."""
    while True:
        colon = buffer.find(b":")
        if colon > 0:
            end = colon + 1 + int(buffer[:colon])
            if len(buffer) > end:
                payload = bytes(buffer[colon + 1 : end])
                del buffer[: end + 1]
                return payload
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(bytes(buffer))
        buffer += chunk


def machine_busy_seconds() -> float:
    """Return CPU seconds spent busy by the whole machine so far (all cores, /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")
