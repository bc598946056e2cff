"""Serve one client connection: an asyncio Protocol that feeds the connection core.

The core (:mod:`sockmapd.protocol.connection`) decides everything that is not
I/O; this protocol owns the transport and carries the core's decisions out:

* Requests the cache (or a domain filter, or an unknown map) answers are answered
  in ``data_received`` itself, with no task switch: that is most requests of a
  warm server.
* The others are looked up one after the other by one task per connection, started
  by the first of them and then waiting for the next.
* The next deadline is one loop timer (``loop.call_at``); a request that passes
  its deadline is answered TIMEOUT and its lookup cancelled.
* Reading pauses while the core says so (too much unanswered, or the client does
  not read its replies); ``pause_writing``/``resume_writing`` tell the core when
  the client stops and starts reading again.
* A close the server decides aborts the transport: the socket is released at
  once, whatever the client left unread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol, cast

from sockmapd.config import ServerConfig
from sockmapd.logs import log_request as _log_request
from sockmapd.logs import request_log
from sockmapd.lookup import MapLookup, Router, unknown_map
from sockmapd.metrics import ListenerMetrics, Metrics
from sockmapd.protocol import (
    MalformedRequest,
    Reply,
    Request,
    encode_reply,
    frame_payload_size,
    frame_status,
    parse_request,
)
from sockmapd.protocol.connection import CloseReason, ConnectionCore, Limits, Pending
from sockmapd.server.access import AccessList

conn_log = logging.getLogger(__name__)

INTERNAL_ERROR = Reply.temp("internal error, try again later")
INTERNAL_ERROR_FRAME = encode_reply(INTERNAL_ERROR)
REPLY_TOO_LARGE_FRAME = encode_reply(Reply.temp("reply too large, try again later"))
# Replies are written at once up to this much unsent data; beyond it the client is
# taken as not reading (pause_writing) and the send deadline runs.
WRITE_HIGH_WATER = 64 * 1024


class Service(Protocol):
    """What a connection needs from the running server."""

    @property
    def router(self) -> Router:
        """Return the maps currently served."""

    @property
    def settings(self) -> ServerConfig:
        """Return the server settings currently in force."""

    @property
    def access(self) -> AccessList:
        """Return the networks allowed to connect over TCP."""

    @property
    def stopping(self) -> bool:
        """Return True once shutdown has begun."""

    @property
    def metrics(self) -> Metrics | None:
        """Return the metrics to record into, or None when metrics are off."""

    def closed(self, connection: SocketmapProtocol) -> None:
        """A connection is over (allowed or not): give back its slot."""


def describe_peer(peername: Any, sockname: Any) -> str:
    """Return the client address as text, for logs."""
    if isinstance(peername, tuple):
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(sockname, bytes):
        sockname = sockname.decode(errors="replace")
    return f"unix:{sockname}" if sockname else "unix"


class SocketmapProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, service: Service, counters: ListenerMetrics | None = None) -> None:
        self.peer = "?"
        self._service = service
        self._counters = counters
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._core: ConnectionCore | None = None
        self._settings = settings = service.settings
        # Read once: the settings are a validated model, slower to read per request.
        self._max_reply = settings.max_reply_bytes
        self._request_timeout = settings.request_timeout
        self._metrics = service.metrics
        # Requests for the lookup task, in order, with the time each arrived.
        # A request parsed in data_received comes with its map (None: a map of the
        # router current when it is looked up).
        self._lookups: deque[tuple[Pending, Request | None, MapLookup | None, float]] = deque()
        self._task: asyncio.Task[None] | None = None
        # What the lookup task waits on while there is nothing to look up.
        self._wake: asyncio.Future[None] | None = None
        # Which lookup task is the current one: a cancelled one ends after it.
        self._runs = 0
        self._current: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._reading = True
        # While the client leaves too much unread, nothing more is answered: the
        # lookup task waits on this until it reads again.
        self._write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._served = False
        self._closed = False

    # -- transport callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Check the client against server.allow, then start serving it."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = stream = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self.peer = describe_peer(peername, transport.get_extra_info("sockname"))
        if isinstance(peername, tuple):
            access = self._service.access
            host = str(peername[0])
            if not access.allows(host):
                access.log_denied(host)
                self._abort()
                return
        stream.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        settings = self._settings
        limits = Limits(
            max_request_bytes=settings.max_request_bytes,
            idle_timeout=settings.idle_timeout,
            request_timeout=settings.request_timeout,
        )
        self._core = ConnectionCore(limits, self._loop.time())
        self._served = True
        if self._counters is not None:
            self._counters.opened()
        if self._service.stopping:
            self._core.stop(self._loop.time())
        self._after()

    def data_received(self, data: bytes) -> None:
        """Feed the core; answer at once what needs no database; hand the rest to the task."""
        core = self._core
        if core is None or self._closed:
            return
        now = self._loop.time()
        new = core.receive(data, now)
        if new:
            transport = self._transport
            assert transport is not None
            router = self._service.router
            last = new[-1]
            for pending in new:
                started = perf_counter()
                if self._write_paused:
                    # The client does not read: the rest waits in the task, which
                    # waits for the client, so unread replies cannot pile up.
                    self._queue(pending, None, None, started)
                    continue
                try:
                    request = parse_request(pending.payload)
                except MalformedRequest as exc:
                    if self._metrics is not None:
                        self._metrics.protocol_error(exc.kind)
                    data = self._send(
                        pending.payload, Reply.perm(exc.reason).frame(), None, started
                    )
                    core.answer(pending.seq, data, now)
                    continue
                lookup = router.maps.get(request.map_name)
                try:
                    frame = (
                        unknown_map(request.map_name).frame()
                        if lookup is None
                        else lookup.answer_now(request.key)
                    )
                except Exception:
                    conn_log.exception("client=%s: lookup failed unexpectedly", self.peer)
                    frame = INTERNAL_ERROR_FRAME
                if frame is None:
                    self._queue(pending, request, lookup, started)
                    continue
                data = self._send(pending.payload, frame, request.map_name, started)
                # A later request answered from the cache waits in the core behind
                # an earlier one still being looked up.
                core.answer(pending.seq, data, now)
                if pending is not last and core.outbox:
                    # Written at once, so that a client that does not read is seen
                    # (pause_writing) before the next reply is made; the last one is
                    # written below.
                    transport.write(core.data_to_send())
        self._after(now)

    def eof_received(self) -> bool:
        """The client closed its end: answer what it asked, then close."""
        core = self._core
        if core is not None and not self._closed:
            core.eof(self._loop.time())
            self._after()
        return True

    def pause_writing(self) -> None:
        """The client leaves too much unread: stop reading and start the send deadline."""
        self._write_paused = True
        if self._core is not None and not self._closed:
            self._core.write_blocked(self._loop.time())
            self._after()

    def resume_writing(self) -> None:
        """The client reads again."""
        self._write_paused = False
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)
        if self._core is not None and not self._closed:
            self._core.write_resumed(self._loop.time())
            self._after()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timer and the lookups; give back the slot."""
        self._halt()
        if self._writable is not None and not self._writable.done():
            self._writable.cancel()
        if self._served and self._counters is not None:
            self._counters.closed()
        self._service.closed(self)

    # -- for the server ------------------------------------------------------------

    def stop(self) -> None:
        """Shutdown: close now if idle, else after answering what was asked."""
        if self._core is not None and not self._closed:
            self._core.stop(self._loop.time())
            self._after()

    def abort(self) -> None:
        """Close now, answered or not (the shutdown grace is over)."""
        if not self._closed:
            self._abort()

    # -- inside --------------------------------------------------------------------

    def _queue(
        self, pending: Pending, request: Request | None, lookup: MapLookup | None, started: float
    ) -> None:
        """Hand a request to the lookup task, starting one if there is none."""
        self._lookups.append((pending, request, lookup, started))
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)
        elif self._task is None:
            self._runs += 1
            self._task = self._loop.create_task(self._look_up(self._runs))

    async def _look_up(self, run: int) -> None:
        """Look up the queued requests one after the other, for as long as the connection lasts.

        One task per connection rather than one per request: between requests it
        waits for the next one.
        """
        try:
            while not self._closed:
                if not self._lookups:
                    self._wake = wake = self._loop.create_future()
                    await wake
                    continue
                while self._write_paused and not self._closed:
                    self._writable = self._loop.create_future()
                    await self._writable
                if self._closed:
                    return
                pending, request, lookup, started = self._lookups[0]
                self._current = pending.seq
                map_name: str | None = None
                try:
                    if request is None:
                        request = parse_request(pending.payload)
                    map_name = request.map_name
                    reply = await (
                        self._service.router.answer(request)
                        if lookup is None
                        else lookup.lookup(request.key)
                    )
                except MalformedRequest as exc:
                    if self._metrics is not None:
                        self._metrics.protocol_error(exc.kind)
                    reply = Reply.perm(exc.reason)
                except Exception:
                    conn_log.exception("client=%s: lookup failed unexpectedly", self.peer)
                    reply = INTERNAL_ERROR
                self._current = None
                core = self._core
                if core is None or self._closed:
                    return
                lookups = self._lookups
                if not lookups or lookups[0][0] is not pending:
                    continue  # answered TIMEOUT meanwhile
                lookups.popleft()
                data = self._send(pending.payload, reply.frame(), map_name, started)
                now = self._loop.time()
                core.answer(pending.seq, data, now)
                self._after(now)
        finally:
            if self._runs == run:
                self._task = None
                self._wake = None

    def _restart_lookups(self) -> None:
        """The lookup in flight was given up on: cancel it; a new task takes the rest."""
        task = self._task
        self._task = None
        self._wake = None
        # A new run number: the cancelled task's end leaves what follows alone.
        self._runs += 1
        if task is not None:
            task.cancel()
        if self._lookups and not self._closed:
            self._task = self._loop.create_task(self._look_up(self._runs))

    def _after(self, now: float | None = None) -> None:
        """Carry out what the core decided: write, close, read or not, re-arm the deadline.

        After a request or an answer at now, while the core is calm and the timer is
        due before any deadline these can set (see ConnectionCore.outlook), there is
        nothing to do but write: the timer that fires early re-arms itself.
        """
        core = self._core
        transport = self._transport
        if core is None or transport is None or self._closed:
            return
        if core.outbox:
            transport.write(core.data_to_send())
        if now is not None and core.calm:
            at = self._timer_at
            if at is not None and at <= now + core.min_lead:
                return
        reason, want, deadline = core.outlook()
        if reason is not None:
            self._close(reason)
            return
        if want is not self._reading:
            self._reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()
        at = self._timer_at
        if deadline is None or at is None or deadline < at:
            self._arm(deadline)

    def _close(self, reason: CloseReason) -> None:
        core = self._core
        assert core is not None
        error = core.protocol_error
        if error is not None:
            conn_log.info("client=%s: protocol error: %s; closing", self.peer, error.reason)
            if self._metrics is not None:
                self._metrics.protocol_error(error.kind)
        elif reason is not CloseReason.EOF:
            conn_log.debug("client=%s: closed: %s", self.peer, reason.value)
        self._abort()

    def _abort(self) -> None:
        self._halt()
        if self._transport is not None:
            self._transport.abort()

    def _halt(self) -> None:
        """Take nothing more from this connection: no timer, no lookups."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
        self._lookups.clear()

    def _arm(self, deadline: float | None) -> None:
        """Have the timer fire by deadline; a timer set for earlier is kept (it re-arms)."""
        at = self._timer_at
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
            return
        if self._timer is not None and at is not None and at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        core = self._core
        at = self._timer_at
        self._timer = None
        self._timer_at = None
        if core is None or self._closed:
            return
        # The loop may run a timer up to its clock resolution early.
        now = max(self._loop.time(), at or 0.0)
        expired = core.expire(now)
        if expired:
            self._timed_out(expired)
        self._after()

    def _timed_out(self, expired: list[Pending]) -> None:
        seqs = {pending.seq for pending in expired}
        timeout = self._request_timeout
        reply = Reply.timeout(f"lookup did not finish within {timeout:g}s")
        started = {p.seq: s for p, _, _, s in self._lookups}
        for pending in expired:
            began = started.get(pending.seq, perf_counter() - timeout)
            map_name = pending.payload.partition(b" ")[0].decode("utf-8", errors="replace")
            if self._metrics is not None:
                self._metrics.request(map_name, reply.status, perf_counter() - began)
            _log_request(self.peer, pending.payload, reply.status, began)
        in_flight = self._current in seqs
        self._lookups = deque(item for item in self._lookups if item[0].seq not in seqs)
        if in_flight:
            self._restart_lookups()

    def _send(self, payload: bytes, frame: bytes, map_name: str | None, started: float) -> bytes:
        """Count and log the reply frame; return the bytes to send (TEMP if it is too large)."""
        max_reply = self._max_reply
        if len(frame) > max_reply and (size := frame_payload_size(frame)) > max_reply:
            # What is counted and logged is what the client got.
            conn_log.warning(
                "client=%s: reply of %d bytes exceeds max_reply_bytes=%d; answered TEMP",
                self.peer,
                size,
                max_reply,
            )
            frame = REPLY_TOO_LARGE_FRAME
        metrics = self._metrics
        if metrics is not None or request_log.isEnabledFor(logging.INFO):
            # Read back from the frame only when something records it.
            status = frame_status(frame)
            if metrics is not None:
                metrics.request(map_name, status, perf_counter() - started)
            _log_request(self.peer, payload, status, started)
        return frame


def protocol_factory(
    service: Service, counters: ListenerMetrics | None
) -> Callable[[], SocketmapProtocol]:
    """Return a factory of protocols for one listener."""
    return lambda: SocketmapProtocol(service, counters)
