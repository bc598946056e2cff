"""Thousands of random and mutated frames against a real sockmapd while a client checks answers."""

from __future__ import annotations

import os
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.integration.conftest import USERS, DaemonFactory
from tests.integration.daemon import CheckingClient, netstring

MAX_CONNECTIONS = 3000
TIME_BUDGET = 30.0
FUZZ_THREADS = 2
SEED = int(os.environ.get("SOCKMAPD_FUZZ_SEED", "20240611"))

MAPS = [b"recipient", b"blacklist", b"big", b"broken", b"nosuchmap"]
KEYS = [u.encode() for u in USERS] + [b"nobody@example.com", b"", b"KEEPALIVE", b"huge"]
REPLY_RE = re.compile(rb"(OK|NOTFOUND|TEMP|TIMEOUT|PERM) .*", re.DOTALL)


def _valid_payload(rng: random.Random) -> bytes:
    return rng.choice(MAPS) + b" " + rng.choice(KEYS)


def _flipped(rng: random.Random) -> list[bytes]:
    frame = bytearray(netstring(_valid_payload(rng)))
    for _ in range(rng.randint(1, 3)):
        frame[rng.randrange(len(frame))] ^= rng.randint(1, 255)
    return [bytes(frame)]


def _truncated(rng: random.Random) -> list[bytes]:
    frame = netstring(_valid_payload(rng))
    return [frame[: rng.randrange(1, len(frame))]]


def _wrong_length(rng: random.Random) -> list[bytes]:
    payload = _valid_payload(rng)
    length = max(0, len(payload) + rng.choice([-5, -2, -1, 1, 2, 5, 100]))
    return [b"%d:" % length + payload + b","]


def _huge_header(rng: random.Random) -> list[bytes]:
    header = rng.choice(
        [
            b"99999999999:",
            b"10001:",
            b"4294967296:",
            b"18446744073709551616:",
            b"9" * rng.randint(6, 64) + b":",
            b"9" * rng.randint(6, 64),
        ]
    )
    return [header + rng.choice([b"", _valid_payload(rng) + b","])]


def _nul_bytes(rng: random.Random) -> list[bytes]:
    payload = bytearray(_valid_payload(rng))
    for _ in range(rng.randint(1, 4)):
        payload.insert(rng.randrange(len(payload) + 1), 0)
    return [netstring(bytes(payload))]


def _eight_bit(rng: random.Random) -> list[bytes]:
    key = bytes(rng.randint(0x80, 0xFF) for _ in range(rng.randint(1, 40)))
    if rng.random() < 0.5:
        key = "".join(chr(rng.randint(0xA0, 0x2FFF)) for _ in range(rng.randint(1, 20))).encode()
    return [netstring(rng.choice(MAPS) + b" " + key)]


def _bad_header(rng: random.Random) -> list[bytes]:
    payload = _valid_payload(rng)
    n = len(payload)
    return [
        rng.choice(
            [
                b"-1:",
                b":",
                b"0:,",
                b"00:,",
                b"0%d:%b," % (n, payload),
                b"+%d:%b," % (n, payload),
                b" %d:%b," % (n, payload),
                b"%d :%b," % (n, payload),
                b"0x%x:%b," % (n, payload),
                b"%d:%b;" % (n, payload),
                b"%d:%b" % (n, payload) + netstring(payload),
            ]
        )
    ]


def _garbage(rng: random.Random) -> list[bytes]:
    return [rng.randbytes(rng.randint(1, 300))]


def _pipelined(rng: random.Random) -> list[bytes]:
    frames = [netstring(_valid_payload(rng)) for _ in range(rng.randint(2, 5))]
    if rng.random() < 0.7:
        mutate = rng.choice([_flipped, _truncated, _wrong_length, _huge_header, _garbage])
        frames.insert(rng.randrange(len(frames) + 1), mutate(rng)[0])
    return frames


CATEGORIES: dict[str, Callable[[random.Random], list[bytes]]] = {
    "flipped bytes": _flipped,
    "truncated": _truncated,
    "wrong length": _wrong_length,
    "huge header": _huge_header,
    "NUL bytes": _nul_bytes,
    "8-bit bytes": _eight_bit,
    "bad header": _bad_header,
    "random garbage": _garbage,
    "pipelined + mutated": _pipelined,
}


@dataclass
class Tally:
    """What one fuzz category sent and got back."""

    connections: int = 0
    frames: int = 0
    replies: Counter[bytes] = field(default_factory=Counter)
    silent: int = 0
    resets: int = 0
    wrong: list[str] = field(default_factory=list)


def _parse_replies(data: bytes) -> tuple[list[bytes], bytes]:
    """Split data into netstring payloads; return them and the bytes that do not form one."""
    replies: list[bytes] = []
    rest = data
    while rest:
        match = re.match(rb"(0|[1-9][0-9]{0,8}):", rest)
        if match is None:
            break
        end = match.end() + int(match.group(1))
        if len(rest) <= end or rest[end : end + 1] != b",":
            break
        replies.append(rest[match.end() : end])
        rest = rest[end + 1 :]
    return replies, rest


def _exchange(port: int, pieces: list[bytes], tally: Tally) -> None:
    """Send pieces on one connection, half-close, read to EOF and check every reply's form."""
    with socket.create_connection(("127.0.0.1", port), timeout=15.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # The server already closed: a frame error ends the connection.
        data = b""
        reset = False
        try:
            while len(data) < 10_000_000:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            reset = True
        except TimeoutError:
            tally.wrong.append(f"no EOF within 15 s after {pieces!r}; got {data[:200]!r}")
            return
    replies, rest = _parse_replies(data)
    tally.resets += reset
    tally.silent += not replies
    for reply in replies:
        if REPLY_RE.fullmatch(reply) is None:
            tally.wrong.append(f"reply {reply[:200]!r} to {pieces!r}")
        tally.replies[reply.split(b" ", 1)[0]] += 1
    if rest and not reset:
        tally.wrong.append(f"bytes {rest[:200]!r} are no netstring, after {pieces!r}")


def _fuzz(port: int, seed: int, quota: int, deadline: float, tallies: dict[str, Tally]) -> None:
    rng = random.Random(seed)
    names = sorted(CATEGORIES)
    for _ in range(quota):
        if time.monotonic() > deadline:
            return
        name = rng.choice(names)
        frames = CATEGORIES[name](rng)
        tally = tallies[name]
        tally.connections += 1
        tally.frames += len(frames)
        # Sometimes split the bytes at random points to vary what one recv() sees.
        data = b"".join(frames)
        pieces = [data]
        if len(data) > 2 and rng.random() < 0.3:
            cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1)))
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        _exchange(port, pieces, tally)


def test_fuzzed_frames_never_disturb_a_correct_client(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon()
    assert daemon.port is not None
    port = daemon.port
    per_thread = [{name: Tally() for name in CATEGORIES} for _ in range(FUZZ_THREADS)]
    stop = threading.Event()
    checker = CheckingClient(port, stop, USERS)
    checker_thread = threading.Thread(target=checker.run, daemon=True)
    checker_thread.start()
    deadline = time.monotonic() + TIME_BUDGET
    started = time.monotonic()
    errors: list[BaseException] = []

    def fuzz(index: int) -> None:
        try:
            quota = MAX_CONNECTIONS // FUZZ_THREADS
            _fuzz(port, SEED + index, quota, deadline, per_thread[index])
        except BaseException as exc:
            errors.append(exc)

    fuzzers = [threading.Thread(target=fuzz, args=(i,), daemon=True) for i in range(FUZZ_THREADS)]
    for thread in fuzzers:
        thread.start()
    for thread in fuzzers:
        thread.join(TIME_BUDGET + 60)
    elapsed = time.monotonic() - started
    stop.set()
    checker_thread.join(30)

    tallies = {name: Tally() for name in CATEGORIES}
    for own in per_thread:
        for name, part in own.items():
            tally = tallies[name]
            tally.connections += part.connections
            tally.frames += part.frames
            tally.replies += part.replies
            tally.silent += part.silent
            tally.resets += part.resets
            tally.wrong += part.wrong
    total = Tally()
    print(f"\nfuzz seed {SEED}, {elapsed:.1f} s")
    print(
        f"{'category':<22}{'conns':>7}{'frames':>8}{'silent':>8}{'resets':>8}{'wrong':>7}  replies"
    )
    for name, tally in tallies.items():
        statuses = ", ".join(f"{k.decode(errors='replace')} {v}" for k, v in tally.replies.items())
        print(
            f"{name:<22}{tally.connections:>7}{tally.frames:>8}{tally.silent:>8}"
            f"{tally.resets:>8}{len(tally.wrong):>7}  {statuses}"
        )
        total.connections += tally.connections
        total.frames += tally.frames
        total.wrong += tally.wrong
    print(f"{'(checker lookups)':<22}{1:>7}{checker.asked:>8}{0:>8}{0:>8}{len(checker.wrong):>7}")
    print(f"{'total':<22}{total.connections:>7}{total.frames:>8}{'':>16}{len(total.wrong):>7}")

    assert errors == []
    assert not any(thread.is_alive() for thread in fuzzers)
    assert not checker_thread.is_alive()
    assert total.wrong == []
    assert checker.wrong == []
    assert checker.asked > 0
    assert total.connections >= 100
    assert daemon.process.poll() is None
    client = daemon.client()
    assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
    assert client.ask("recipient", "nobody@example.com") == b"NOTFOUND "
    log = daemon.log()
    assert "Traceback" not in log
    assert "unexpected error" not in log
