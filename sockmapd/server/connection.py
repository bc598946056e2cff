"""Serve one client connection: frames in, one reply per request out, in order."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Protocol

import anyio
from anyio.abc import ByteStream

from sockmapd.config import ServerConfig
from sockmapd.logs import log_request as _log_request
from sockmapd.lookup import Router
from sockmapd.metrics import Metrics
from sockmapd.protocol import (
    MalformedRequest,
    NetstringDecoder,
    ProtocolError,
    Reply,
    ReplyTooLargeError,
    encode_reply,
    parse_request,
)

conn_log = logging.getLogger(__name__)

RECEIVE_SIZE = 65536
INTERNAL_ERROR = Reply.temp("internal error, try again later")
REPLY_TOO_LARGE = Reply.temp("reply too large, try again later")

_CLOSED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class Service(Protocol):
    """What a connection needs from the running server."""

    @property
    def router(self) -> Router:
        """Return the maps currently served."""

    @property
    def settings(self) -> ServerConfig:
        """Return the server settings currently in force."""

    @property
    def stopping(self) -> bool:
        """Return True once shutdown has begun."""

    @property
    def metrics(self) -> Metrics | None:
        """Return the metrics to record into, or None when metrics are off."""


class Phase(enum.Enum):
    """What a connection is waiting for; decides what a passed deadline means."""

    READ = "read"
    LOOKUP = "lookup"
    SEND = "send"


class Connection:
    """The state of one client connection.

    One cancel scope covers the connection and its deadline is moved forward as
    the connection goes from reading to looking up to sending: while reading an
    empty buffer it is the idle timeout, otherwise the request timeout. A deadline
    passed during a lookup answers TIMEOUT and the connection goes on with a fresh
    scope; passed anywhere else it closes the connection.
    """

    __slots__ = (
        "_active_at",
        "_decoder",
        "_deferred",
        "_metrics",
        "_pending",
        "_phase",
        "_request_started",
        "_scope",
        "_service",
        "_settings",
        "_stream",
        "_write_now",
        "peer",
    )

    def __init__(self, stream: ByteStream, peer: str, service: Service) -> None:
        self.peer = peer
        self._stream = stream
        self._service = service
        self._settings = service.settings
        self._metrics = service.metrics
        self._decoder = NetstringDecoder(self._settings.max_request_bytes)
        self._pending: deque[bytes] = deque()
        self._phase = Phase.READ
        self._scope: anyio.CancelScope | None = None
        self._request_started = 0.0
        # Answers given in the stream's callback (answer_now): when the last was,
        # and a frame error met there, for the task to act on.
        self._active_at: float | None = None
        self._deferred: ProtocolError | None = None
        self._write_now: Callable[[bytes], bool] | None = None
        answer_with = getattr(stream, "answer_with", None)
        write_now = getattr(stream, "write_now", None)
        if answer_with is not None and write_now is not None:
            self._write_now = write_now
            answer_with(self.answer_now)

    def close_if_idle(self) -> None:
        """Close the connection now unless a request is being answered (for shutdown)."""
        if self._phase is Phase.READ and not self._pending and self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        """Serve until the client closes, a deadline passes, or a frame error; never raises."""
        try:
            await self._serve()
        except Exception:
            conn_log.exception("client=%s: unexpected error, connection closed", self.peer)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._stream.aclose()
                except Exception as exc:
                    conn_log.debug("client=%s: close failed: %s", self.peer, exc)

    async def _serve(self) -> None:
        resume_at: float | None = None
        while True:
            with anyio.CancelScope(
                deadline=anyio.current_time() + self._settings.idle_timeout
            ) as scope:
                self._scope = scope
                await self._loop(scope, resume_at)
                return
            resume_at = self._still_active()
            if resume_at is not None:
                # The idle deadline passed while requests were answered in the
                # stream's callback: idle counts from the last of them.
                continue
            if self._phase is not Phase.LOOKUP or self._service.stopping:
                conn_log.debug("client=%s: closed after %s timeout", self.peer, self._phase.value)
                return
            # The lookup of the first pending request overran: answer it TIMEOUT
            # and carry on with the requests behind it under a new scope.
            data = self._timed_out(self._pending.popleft())
            self._phase = Phase.SEND
            with anyio.move_on_after(self._settings.request_timeout):
                try:
                    await self._stream.send(data)
                    self._phase = Phase.READ
                    continue
                except _CLOSED:
                    return
            return

    def _timed_out(self, payload: bytes) -> bytes:
        """Return the TIMEOUT reply for payload, whose lookup overran; count and log it."""
        reply = Reply.timeout(f"lookup did not finish within {self._settings.request_timeout:g}s")
        if self._metrics is not None:
            map_name = payload.partition(b" ")[0].decode("utf-8", errors="replace")
            self._metrics.request(map_name, reply.status, perf_counter() - self._request_started)
        _log_request(self.peer, payload, reply, self._request_started)
        return self._encode(reply)

    def _still_active(self) -> float | None:
        """Return the idle deadline counted from the last answer given in the callback.

        None if there was none within idle_timeout, or if the connection is not
        simply waiting for a request (a partial frame keeps its own deadline).
        """
        active_at = self._active_at
        if (
            active_at is None
            or self._phase is not Phase.READ
            or self._service.stopping
            or self._decoder.has_partial
        ):
            return None
        deadline = active_at + self._settings.idle_timeout
        return deadline if deadline > anyio.current_time() else None

    def answer_now(self, data: bytes) -> bool:
        """Answer the requests in data that need no database, in the stream's callback.

        Called only while the task waits for data, so no reply is in flight and
        the replies keep their order. The first request that needs a lookup, and
        every one behind it, goes to the task; so do frame errors and partial
        frames (their deadlines are the task's). Returns False when the task must
        wake up for such work.
        """
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as exc:
            self._deferred = exc
            return False
        pending = self._pending
        write_now = self._write_now
        if self._service.stopping or write_now is None:
            pending.extend(frames)
            return not pending and not self._decoder.has_partial
        router = self._service.router
        answered = False
        stalled = False
        for payload in frames:
            if pending or stalled:
                pending.append(payload)
                continue
            started = perf_counter()
            try:
                request = parse_request(payload)
                reply = router.answer_now(request)
            except MalformedRequest:
                reply = None  # the task answers PERM and counts the error
            except Exception:
                conn_log.exception("client=%s: lookup failed unexpectedly", self.peer)
                reply = None
            if reply is None:
                pending.append(payload)
                continue
            answered = True
            if not write_now(self._finish(payload, reply, request.map_name, started)):
                # The client does not read its replies: the rest waits in the
                # task, which waits for the client.
                stalled = True
        if answered:
            self._active_at = asyncio.get_running_loop().time()
        return not pending and not self._decoder.has_partial

    async def _loop(self, scope: anyio.CancelScope, resume_at: float | None = None) -> None:
        settings = self._settings
        decoder = self._decoder
        pending = self._pending
        stream = self._stream
        partial_since = False
        while True:
            while pending:
                self._phase = Phase.LOOKUP
                started = perf_counter()
                self._request_started = started
                scope.deadline = anyio.current_time() + settings.request_timeout
                data = await self._answer(pending[0], started)
                pending.popleft()
                self._phase = Phase.SEND
                try:
                    await stream.send(data)
                except _CLOSED:
                    return
            if self._service.stopping:
                return
            self._phase = Phase.READ
            if decoder.has_partial:
                # Slow senders are cut a request timeout after their first byte.
                if not partial_since:
                    partial_since = True
                    scope.deadline = anyio.current_time() + settings.request_timeout
            elif resume_at is not None:
                partial_since = False
                scope.deadline = resume_at
            else:
                partial_since = False
                scope.deadline = anyio.current_time() + settings.idle_timeout
            resume_at = None
            try:
                chunk = await stream.receive(RECEIVE_SIZE)
            except _CLOSED:
                return
            deferred = self._deferred
            if deferred is not None:
                # A frame error met in answer_now: the frames before it are in it.
                self._deferred = None
                await self._frame_error(deferred, scope)
                return
            try:
                pending.extend(decoder.feed(chunk))
            except ProtocolError as exc:
                await self._frame_error(exc, scope)
                return

    async def _frame_error(self, exc: ProtocolError, scope: anyio.CancelScope) -> None:
        """Answer the requests completed before the bad frame, then PERM, then close."""
        timeout = self._settings.request_timeout
        for payload in exc.frames:
            self._phase = Phase.LOOKUP
            started = perf_counter()
            self._request_started = started
            # The lookup has a scope of its own: an overrun answers TIMEOUT here and
            # the frames behind it are still answered (the connection's scope would
            # end the task with nothing pending to answer for).
            scope.deadline = math.inf
            with anyio.CancelScope(deadline=anyio.current_time() + timeout) as lookup:
                data = await self._answer(payload, started)
            if lookup.cancelled_caught:
                data = self._timed_out(payload)
            scope.deadline = anyio.current_time() + timeout
            self._phase = Phase.SEND
            try:
                await self._stream.send(data)
            except _CLOSED:
                return
        conn_log.info("client=%s: protocol error: %s; closing", self.peer, exc.reason)
        if self._metrics is not None:
            self._metrics.protocol_error(exc.kind)
        self._phase = Phase.SEND
        try:
            await self._stream.send(self._encode(Reply.perm(exc.reason)))
        except _CLOSED:
            return

    async def _answer(self, payload: bytes, started: float) -> bytes:
        metrics = self._metrics
        map_name: str | None = None
        try:
            request = parse_request(payload)
        except MalformedRequest as exc:
            reply = Reply.perm(exc.reason)
            if metrics is not None:
                metrics.protocol_error(exc.kind)
        else:
            map_name = request.map_name
            try:
                reply = await self._service.router.answer(request)
            except Exception:
                conn_log.exception("client=%s: lookup failed unexpectedly", self.peer)
                reply = INTERNAL_ERROR
        return self._finish(payload, reply, map_name, started)

    def _finish(self, payload: bytes, reply: Reply, map_name: str | None, started: float) -> bytes:
        """Encode reply, count and log it; return the bytes to send."""
        try:
            data = encode_reply(reply, self._settings.max_reply_bytes)
        except ReplyTooLargeError as exc:
            # What is counted and logged is what the client got.
            reply = self._too_large(exc)
            data = encode_reply(reply)
        metrics = self._metrics
        if metrics is not None:
            metrics.request(map_name, reply.status, perf_counter() - started)
        _log_request(self.peer, payload, reply, started)
        return data

    def _encode(self, reply: Reply) -> bytes:
        try:
            return encode_reply(reply, self._settings.max_reply_bytes)
        except ReplyTooLargeError as exc:
            return encode_reply(self._too_large(exc))

    def _too_large(self, exc: ReplyTooLargeError) -> Reply:
        conn_log.warning(
            "client=%s: reply of %d bytes exceeds max_reply_bytes=%d; answered TEMP",
            self.peer,
            exc.size,
            self._settings.max_reply_bytes,
        )
        return REPLY_TOO_LARGE
