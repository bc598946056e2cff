"""Load generator: C connections, one request in flight on each, every reply checked.

Run as its own process (``python -m bench.loadgen --port P --connections C``); it prints
one JSON object on stdout. With ``--procs N`` the connections are split over N worker
processes whose results are merged (exact percentiles: the latencies themselves are
merged, not summaries).

Each connection sends a request, waits for its reply, checks it and sends the next,
as Postfix does. Keys are drawn per connection from a seeded generator: a share
``--found-ratio`` of them from the keys that exist (the answer must be exactly
``OK <value>``), the rest from keys that do not (the answer must be ``NOTFOUND ``).
Every reply is checked; only requests sent and answered inside the measured window
(after ``--warmup``) count towards throughput, latency and fairness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.synchronize import Barrier
from typing import Any, cast

from bench.common import FOUND_KEYS, MAP_NAME, NOTFOUND, found_key, missing_key, value_of

CONNECT_CONCURRENCY = 100
# Requests still unanswered this long after the measured window are counted as stuck.
DRAIN_GRACE = 5.0


@dataclass
class Settings:
    """What one generator process does."""

    host: str
    port: int
    connections: int
    duration: float
    warmup: float
    found_ratio: float
    found_keys: int
    missing_keys: int
    map_name: str
    seed: int


@dataclass
class Tally:
    """What one generator process measured."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    # Every reply in the window, right or a failure (TEMP, TIMEOUT...): under
    # overload, how long a client waits for whatever answer it gets.
    answer_latencies: array[float] = field(default_factory=lambda: array("d"))
    # Replies in the window by kind: "right", "TEMP", "TIMEOUT", "PERM", "wrong".
    answer_kinds: dict[str, int] = field(default_factory=dict)
    per_connection: list[int] = field(default_factory=list)
    wrong: int = 0
    wrong_examples: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    connect_errors: int = 0
    window: float = 0.0
    cpu: float = 0.0
    wall: float = 0.0
    # Seconds from the start of the load to each connection's first reply.
    first_replies: list[float] = field(default_factory=list)

    def fail(self, kind: str) -> None:
        """Count one failure of kind."""
        self.failures[kind] = self.failures.get(kind, 0) + 1


class Client(asyncio.Protocol):
    """One connection; the next request is sent from the reply's callback."""

    def __init__(self, index: int, settings: Settings, tally: Tally, clock: Clock) -> None:
        self.index = index
        self.settings = settings
        self.tally = tally
        self.clock = clock
        # A reproducible key sequence per connection, not a secret.
        self.rng = random.Random(settings.seed * 1_000_003 + index)  # noqa: S311
        self.prefix = settings.map_name.encode() + b" "
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.expected = b""
        self.sent_at = 0.0
        self.in_flight = False
        self.count = 0
        self.first_reply = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send_next(self) -> None:
        """Draw a key, send it, remember the answer it must get."""
        rng = self.rng
        if rng.random() < self.settings.found_ratio:
            i = rng.randrange(self.settings.found_keys)
            key = found_key(i)
            self.expected = b"OK " + value_of(i).encode()
        else:
            key = missing_key(rng.randrange(self.settings.missing_keys))
            self.expected = NOTFOUND
        payload = self.prefix + key.encode()
        assert self.transport is not None
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.transport.write(b"%d:%b," % (len(payload), payload))

    def data_received(self, data: bytes) -> None:
        """Take every complete reply, check it, and send the next request."""
        buffer = self.buffer
        buffer += data
        while True:
            colon = buffer.find(b":")
            if colon <= 0:
                return
            end = colon + 1 + int(buffer[:colon])
            if len(buffer) <= end:
                return
            reply = bytes(buffer[colon + 1 : end])
            del buffer[: end + 1]
            self.answered(reply, time.perf_counter())

    def answered(self, reply: bytes, now: float) -> None:
        """Check one reply and go on unless the window is over."""
        self.in_flight = False
        if not self.first_reply:
            self.first_reply = now
        clock = self.clock
        counted = self.sent_at >= clock.measure_from and now <= clock.measure_until
        tally = self.tally
        if reply == self.expected:
            kind = "right"
            if counted:
                tally.latencies.append(now - self.sent_at)
                self.count += 1
        else:
            # Every reply is checked, in the warm-up too; only timing is windowed.
            kind = reply.split(b" ", 1)[0].decode("ascii", "replace")
            if kind in ("TEMP", "TIMEOUT", "PERM"):
                tally.fail(kind)
            else:
                kind = "wrong"
                tally.wrong += 1
                if len(self.tally.wrong_examples) < 5:
                    self.tally.wrong_examples.append(
                        f"expected {self.expected!r}, got {reply[:100]!r}"
                    )
        if counted:
            tally.answer_latencies.append(now - self.sent_at)
            tally.answer_kinds[kind] = tally.answer_kinds.get(kind, 0) + 1
        if now < clock.measure_until:
            self.send_next()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """A connection closed before the end of the run is a failure."""
        if not self.done.done():
            if self.clock.measure_until > time.perf_counter() or self.in_flight:
                self.tally.fail("connection closed")
            self.done.set_result(None)


@dataclass
class Clock:
    """The measured window, in time.perf_counter() seconds (CLOCK_MONOTONIC)."""

    measure_from: float = float("inf")
    measure_until: float = float("inf")


async def _connect_all(
    settings: Settings, tally: Tally, clock: Clock, first_index: int
) -> list[Client]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[Client] = []

    async def one(index: int) -> None:
        client = Client(index, settings, tally, clock)
        async with gate:
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: client, settings.host, settings.port), 10.0
                )
            except (OSError, TimeoutError):
                tally.connect_errors += 1
                return
        clients.append(client)

    await asyncio.gather(*(one(first_index + i) for i in range(settings.connections)))
    return clients


async def _run(settings: Settings, first_index: int, ready: Callable[[], None]) -> Tally:
    tally = Tally()
    clock = Clock()
    clients = await _connect_all(settings, tally, clock, first_index)
    ready()
    started = time.perf_counter()
    cpu_started = time.process_time()
    clock.measure_from = started + settings.warmup
    clock.measure_until = clock.measure_from + settings.duration
    for client in clients:
        client.send_next()
    if clients:
        deadline = clock.measure_until + DRAIN_GRACE - time.perf_counter()
        _, stuck = await asyncio.wait([c.done for c in clients], timeout=max(deadline, 0.1))
        for _ in stuck:
            tally.fail("stuck (no reply)")
    tally.wall = time.perf_counter() - started
    tally.cpu = time.process_time() - cpu_started
    tally.window = settings.duration
    tally.per_connection = [c.count for c in clients]
    tally.first_replies = [(c.first_reply or time.perf_counter()) - started for c in clients]
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(0)
    return tally


def _event_loop_runner() -> tuple[str, Callable[[Any], Any]]:
    try:
        import uvloop
    except ImportError:
        return "asyncio", asyncio.run
    return "uvloop", uvloop.run


def _worker(
    settings: Settings, first_index: int, barrier: Barrier | None, pipe: Pipe | None
) -> Tally:
    def ready() -> None:
        if barrier is not None:
            barrier.wait(30.0)

    _, runner = _event_loop_runner()
    tally: Tally = runner(_run(settings, first_index, ready))
    if pipe is not None:
        pipe.send(tally)
        pipe.close()
    return tally


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run(settings: Settings, procs: int) -> dict[str, Any]:
    """Run the load over procs processes and return the merged result."""
    procs = max(1, min(procs, settings.connections))
    if procs == 1:
        tallies = [_worker(settings, 0, None, None)]
    else:
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(procs)
        workers = []
        first = 0
        for share in _split(settings.connections, procs):
            receiver, sender = ctx.Pipe(duplex=False)
            part = Settings(**{**settings.__dict__, "connections": share})
            process = ctx.Process(target=_worker, args=(part, first, barrier, sender))
            process.start()
            sender.close()
            workers.append((process, receiver))
            first += share
        tallies = []
        limit = settings.warmup + settings.duration + DRAIN_GRACE + 30.0
        for process, receiver in workers:
            if receiver.poll(limit):
                tallies.append(receiver.recv())
            process.join(10.0)
            if process.is_alive():
                process.kill()
    return merge(settings, tallies, procs)


def percentile(ordered: list[float], share: float) -> float | None:
    """Return the nearest-rank percentile of an ascending list, in ms."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, int(share * len(ordered) + 0.999999) - 1))
    return ordered[rank] * 1000.0


def merge(settings: Settings, tallies: list[Tally], procs: int) -> dict[str, Any]:
    """Merge the tallies of the worker processes into one result."""
    latencies: list[float] = sorted(x for t in tallies for x in t.latencies)
    per_connection = [n for t in tallies for n in t.per_connection]
    failures: dict[str, int] = {}
    for t in tallies:
        for kind, n in t.failures.items():
            failures[kind] = failures.get(kind, 0) + n
    connect_errors = sum(t.connect_errors for t in tallies)
    if connect_errors:
        failures["connect error"] = connect_errors
    missing_procs = procs - len(tallies)
    if missing_procs:
        failures["generator process lost"] = missing_procs
    mean = sum(per_connection) / len(per_connection) if per_connection else 0.0
    loop_name, _ = _event_loop_runner()
    answers = sorted(x for t in tallies for x in t.answer_latencies)
    kinds: dict[str, int] = {}
    for t in tallies:
        for kind, n in t.answer_kinds.items():
            kinds[kind] = kinds.get(kind, 0) + n
    return {
        "connections": settings.connections,
        "duration": settings.duration,
        "warmup": settings.warmup,
        "found_ratio": settings.found_ratio,
        "requests": len(latencies),
        "rps": len(latencies) / settings.duration if settings.duration else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "p999_ms": percentile(latencies, 0.999),
        "max_ms": latencies[-1] * 1000.0 if latencies else None,
        "wrong": sum(t.wrong for t in tallies),
        "wrong_examples": [e for t in tallies for e in t.wrong_examples][:5],
        "failures": sum(failures.values()),
        "failure_kinds": failures,
        "fairness": (min(per_connection) / mean) if mean else 0.0,
        "connections_without_counted_reply": sum(1 for n in per_connection if n == 0),
        # Every reply in the window, whatever it said, and the share of each kind.
        "answers": {
            "count": len(answers),
            "p50_ms": percentile(answers, 0.50),
            "p99_ms": percentile(answers, 0.99),
            "max_ms": answers[-1] * 1000.0 if answers else None,
            "shares": {k: n / len(answers) for k, n in sorted(kinds.items())} if answers else {},
        },
        "slowest_first_reply_ms": max((x for t in tallies for x in t.first_replies), default=0.0)
        * 1000.0,
        "generator": {
            "procs": procs,
            "loop": loop_name,
            "cpu_seconds": sum(t.cpu for t in tallies),
            "wall_seconds": max((t.wall for t in tallies), default=0.0),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run, print the JSON result."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--found-ratio", type=float, default=0.8)
    parser.add_argument("--found-keys", type=int, default=FOUND_KEYS)
    parser.add_argument("--missing-keys", type=int, default=FOUND_KEYS)
    parser.add_argument("--map", default=MAP_NAME)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--procs", type=int, default=1)
    args = parser.parse_args(argv)
    settings = Settings(
        host=args.host,
        port=args.port,
        connections=args.connections,
        duration=args.duration,
        warmup=args.warmup,
        found_ratio=args.found_ratio,
        found_keys=args.found_keys,
        missing_keys=args.missing_keys,
        map_name=args.map,
        seed=args.seed,
    )
    json.dump(run(settings, args.procs), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
