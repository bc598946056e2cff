"""The link between the metrics process and each worker: one SOCK_SEQPACKET socketpair per slot.

The supervisor makes one pair per worker slot before it forks anything and keeps
both ends, so a worker started again in a slot answers on the same link. A
request is a sequence number and a kind (metrics or health); a reply carries the
same number, the worker's pid and a zlib-compressed body. Messages keep their
boundaries, so a worker that dies half-way leaves no half reply behind, and a
reply to a request that timed out is recognised by its number and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable

from prometheus_client.exposition import generate_latest

from sockmapd.backends.health import HealthReport
from sockmapd.metrics import Metrics
from sockmapd.metrics_merge import WorkerHealth

log = logging.getLogger(__name__)

METRICS = ord("m")
HEALTH = ord("h")
REQUEST = struct.Struct("<IB")
REPLY = struct.Struct("<Ii")
# A compressed page is about 4 KB for 60 KB of text; the kernel caps one message
# at the send buffer (net.core.wmem_max).
BUFFER = 1 << 20


def socketpair() -> tuple[socket.socket, socket.socket]:
    """Return (metrics process end, worker end) of a new link."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (ours, theirs):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
    return ours, theirs


async def answer(
    sock: socket.socket, metrics: Metrics, health: Callable[[], Awaitable[HealthReport]]
) -> None:
    """Answer the metrics process's requests on sock until cancelled (in a worker)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    tasks: set[asyncio.Task[None]] = set()
    while True:
        data = await loop.sock_recv(sock, REQUEST.size)
        if not data:
            return
        if len(data) != REQUEST.size:
            continue
        seq, kind = REQUEST.unpack(data)
        # Each in a task of its own: a scrape does not wait behind a health probe.
        task = asyncio.create_task(_reply(sock, seq, kind, metrics, health))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _reply(
    sock: socket.socket,
    seq: int,
    kind: int,
    metrics: Metrics,
    health: Callable[[], Awaitable[HealthReport]],
) -> None:
    if kind == METRICS:
        body = generate_latest(metrics.registry)
    elif kind == HEALTH:
        report = await health()
        metrics.probed(report)
        body = json.dumps(report.databases).encode()
    else:
        return
    message = REPLY.pack(seq, os.getpid()) + zlib.compress(body, 6)
    try:
        await asyncio.get_running_loop().sock_sendall(sock, message)
    except OSError as exc:
        log.error("cannot send %d bytes of metrics to the metrics process: %s", len(message), exc)


class WorkerLink:
    """The metrics process's end of one worker's link; ask() may be called concurrently."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0
        self._waiting: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def ask(self, kind: int, seconds: float) -> tuple[int, bytes]:
        """Return (pid, body) of the worker's reply; TimeoutError if none in time."""
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self._sock.setblocking(False)
            self._reader = asyncio.create_task(self._read())
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        future: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self._waiting[seq] = future
        try:
            async with asyncio.timeout(seconds):
                # A dead worker's queue fills up: sending must not wait for it either.
                await loop.sock_sendall(self._sock, REQUEST.pack(seq, kind))
                return await future
        finally:
            self._waiting.pop(seq, None)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self._sock, BUFFER)
            if not data:
                return
            if len(data) < REPLY.size:
                continue
            seq, pid = REPLY.unpack_from(data)
            future = self._waiting.get(seq)
            if future is None or future.done():
                continue
            try:
                future.set_result((pid, zlib.decompress(data[REPLY.size :])))
            except zlib.error as exc:
                future.set_exception(OSError(f"bad reply: {exc}"))


async def gather(
    links: dict[str, WorkerLink], kind: int, seconds: float
) -> dict[str, tuple[int, bytes] | BaseException]:
    """Ask every worker at once; return each reply or why there is none."""
    names = list(links)
    results = await asyncio.gather(
        *(links[name].ask(kind, seconds) for name in names), return_exceptions=True
    )
    return dict(zip(names, results, strict=True))


def worker_health(result: tuple[int, bytes] | BaseException, timeout: float) -> WorkerHealth:
    """Return the health a worker's reply (or its absence) tells."""
    if isinstance(result, TimeoutError):
        return WorkerHealth({}, f"no answer within {timeout:g}s")
    if isinstance(result, BaseException):
        return WorkerHealth({}, f"no answer: {result}")
    databases = json.loads(result[1])
    return WorkerHealth({str(name): str(state) for name, state in databases.items()})
