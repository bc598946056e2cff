"""A TCP proxy that injects network faults between sockmapd and a real database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import socket
import struct
import threading
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

CONTROL_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
# Past this many delayed bytes the upstream is no longer read, so DELAY cannot eat memory.
MAX_QUEUED = 1 << 20
READ_SIZE = 65536


class Mode(enum.Enum):
    """What the proxy does with traffic."""

    PASS = "pass"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"
    DELAY = "delay"
    CUT = "cut"


def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Close transport so that the peer gets an RST instead of a FIN."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()


class _ClientSide(asyncio.Protocol):
    """Protocol for a connection accepted from the client."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.pair: _Pair | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.pair = _Pair(self.proxy, transport)
        self.proxy._accepted(self.pair)

    def data_received(self, data: bytes) -> None:
        if self.pair is not None:
            self.pair.from_client(data)

    def eof_received(self) -> bool:
        if self.pair is not None:
            self.pair.client_eof()
        return True

    def pause_writing(self) -> None:
        if self.pair is not None:
            self.pair.client_write_paused = True
            self.pair.update_reading()

    def resume_writing(self) -> None:
        if self.pair is not None:
            self.pair.client_write_paused = False
            self.pair.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pair is not None:
            self.pair.client_lost(exc)


class _UpstreamSide(asyncio.Protocol):
    """Protocol for the proxy's own connection to the upstream server."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair

    def data_received(self, data: bytes) -> None:
        self.pair.from_upstream(data)

    def eof_received(self) -> bool:
        self.pair.upstream_eof()
        return True

    def pause_writing(self) -> None:
        self.pair.upstream_write_paused = True
        self.pair.update_reading()

    def resume_writing(self) -> None:
        self.pair.upstream_write_paused = False
        self.pair.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.upstream_lost(exc)


class _Marker(enum.Enum):
    """Queued after upstream data so that EOF and close keep their place behind delayed bytes."""

    EOF = "eof"
    CLOSE = "close"


_Item = bytes | _Marker


class _Pair:
    """One proxied connection: a client transport and, once connected, an upstream one."""

    def __init__(self, proxy: FaultProxy, client: asyncio.Transport) -> None:
        self.proxy = proxy
        self.client: asyncio.Transport | None = client
        self.upstream: asyncio.Transport | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.pump_task: asyncio.Task[None] | None = None
        # Upstream->client items stamped with the loop time they arrived.
        self.queue: deque[tuple[float, _Item]] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.client_write_paused = False
        self.upstream_write_paused = False
        self.client_eof_seen = False
        self.upstream_eof_sent = False
        self.closed = False

    # -- lifecycle -------------------------------------------------------

    def start_connect(self) -> None:
        """Open the upstream connection unless one exists or is being made."""
        if self.closed or self.upstream is not None or self.connect_task is not None:
            return
        self.connect_task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _UpstreamSide(self), self.proxy.upstream_host, self.proxy.upstream_port
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            self.connect_task = None
            log.debug("faultproxy: upstream connect failed: %s", exc)
            self.close()
            return
        self.connect_task = None
        if self.closed:
            transport.close()
            return
        self.upstream = transport
        if self.client_eof_seen and transport.can_write_eof():
            transport.write_eof()
        self.update_reading()

    def close(self) -> None:
        """Close both sides with a FIN."""
        self._finish(reset=False)

    def reset(self) -> None:
        """Close both sides with an RST."""
        self._finish(reset=True)

    def _finish(self, *, reset: bool) -> None:
        if not self.closed:
            self.closed = True
            self.queue.clear()
            self.queued_bytes = 0
            for task in (self.connect_task, self.pump_task):
                if task is not None:
                    task.cancel()
        for transport in (self.client, self.upstream):
            if transport is None:
                continue
            if reset:
                _reset(transport)
            elif not transport.is_closing():
                transport.close()
        self._maybe_forget()

    def _maybe_forget(self) -> None:
        if self.closed and self.client is None and self.upstream is None:
            self.proxy._forget(self)

    # -- flow control ----------------------------------------------------

    def update_reading(self) -> None:
        """Pause or resume reading on each side from the mode and the peer's buffers."""
        if self.closed:
            return
        stalled = self.proxy._mode is Mode.BLACKHOLE
        if self.client is not None and not self.client.is_closing():
            if stalled or self.upstream is None or self.upstream_write_paused:
                self.client.pause_reading()
            else:
                self.client.resume_reading()
        if self.upstream is not None and not self.upstream.is_closing():
            if stalled or self.client_write_paused or self.queued_bytes >= MAX_QUEUED:
                self.upstream.pause_reading()
            else:
                self.upstream.resume_reading()
        if self.queue:
            self.wake.set()

    # -- client -> upstream ----------------------------------------------

    def from_client(self, data: bytes) -> None:
        """Forward client bytes; reading is paused while there is nowhere to send them."""
        if self.upstream is not None and not self.closed:
            self.upstream.write(data)

    def client_eof(self) -> None:
        """Pass a half-close on to the upstream."""
        self.client_eof_seen = True
        if self.upstream is not None and self.upstream.can_write_eof():
            self.upstream.write_eof()
        self._close_if_both_eof()

    def client_lost(self, exc: Exception | None) -> None:
        """Mirror the client's close (or reset) on the upstream side."""
        self.client = None
        if exc is None:
            self.close()
        else:
            self.reset()
        self._maybe_forget()

    # -- upstream -> client ----------------------------------------------

    def from_upstream(self, data: bytes) -> None:
        """Send upstream bytes to the client now, or queue them behind the delay."""
        self._deliver_or_queue(data)

    def upstream_eof(self) -> None:
        """Queue the half-close so it reaches the client after delayed bytes."""
        self._deliver_or_queue(_Marker.EOF)

    def upstream_lost(self, exc: Exception | None) -> None:
        """Mirror an upstream reset at once; let a clean close follow queued data."""
        self.upstream = None
        if exc is not None:
            self.reset()
        elif self.closed:
            self.close()
        else:
            self._deliver_or_queue(_Marker.CLOSE)
        self._maybe_forget()

    def _deliver_or_queue(self, item: _Item) -> None:
        if self.closed:
            return
        if not self.queue and self.proxy._current_delay() == 0.0 and not self._stalled():
            self._deliver(item)
            return
        self.queue.append((asyncio.get_running_loop().time(), item))
        if isinstance(item, bytes):
            self.queued_bytes += len(item)
        if self.pump_task is None:
            self.pump_task = asyncio.get_running_loop().create_task(self._pump())
        self.wake.set()
        self.update_reading()

    def _stalled(self) -> bool:
        return self.proxy._mode is Mode.BLACKHOLE

    def _deliver(self, item: _Item) -> None:
        client = self.client
        if item is _Marker.CLOSE:
            self.close()
        elif item is _Marker.EOF:
            self.upstream_eof_sent = True
            if client is not None and client.can_write_eof():
                client.write_eof()
            self._close_if_both_eof()
        elif client is not None:
            client.write(item)

    async def _pump(self) -> None:
        """Release queued upstream items in order once each one's delay has passed."""
        loop = asyncio.get_running_loop()
        try:
            while not self.closed:
                if not self.queue or self._stalled():
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                arrived, item = self.queue[0]
                wait = arrived + self.proxy._current_delay() - loop.time()
                if wait > 0:
                    # Woken early by a mode change, the due time is computed again.
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), wait)
                    continue
                self.queue.popleft()
                if isinstance(item, bytes):
                    self.queued_bytes -= len(item)
                self._deliver(item)
                self.update_reading()
        finally:
            self.pump_task = None

    def _close_if_both_eof(self) -> None:
        if self.client_eof_seen and self.upstream_eof_sent:
            self.close()


class FaultProxy:
    """Forward 127.0.0.1:<port> to an upstream and break the traffic on demand."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self._mode = Mode.PASS
        self._delay = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._pairs: set[_Pair] = set()
        self._total = 0

    # -- public API (called from the test thread) -------------------------

    def start(self) -> FaultProxy:
        """Start the loop thread, bind an ephemeral port on 127.0.0.1 and return self."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._on_loop_error)
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then end the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._shutdown())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CONTROL_TIMEOUT)
        self._thread = None
        self._loop = None

    def set_mode(self, mode: Mode, *, delay: float = 0.0) -> None:
        """Switch mode; returns once the change is in effect on the loop thread."""
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self._call(self._apply_mode(mode, delay))

    def cut_all(self) -> None:
        """Reset every current connection now and keep the mode."""
        self._call(self._cut())

    @property
    def mode(self) -> Mode:
        """The mode last set."""
        return self._mode

    @property
    def connections_total(self) -> int:
        """Client connections accepted since start."""
        return self._total

    @property
    def active_connections(self) -> int:
        """Client connections not yet fully closed."""
        return len(self._pairs)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- loop thread -------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._shutdown())
            loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("FaultProxy is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def schedule() -> None:
            task = loop.create_task(coro)
            task.add_done_callback(lambda t: _copy_result(t, future))

        loop.call_soon_threadsafe(schedule)
        return future.result(CONTROL_TIMEOUT)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Errors inside the proxy must not surface as unraisable warnings in the test run.
        log.debug("faultproxy: %s", context.get("message"), exc_info=context.get("exception"))

    def _current_delay(self) -> float:
        return self._delay if self._mode is Mode.DELAY else 0.0

    def _accepted(self, pair: _Pair) -> None:
        self._total += 1
        self._pairs.add(pair)
        pair.update_reading()
        if self._mode is not Mode.BLACKHOLE:
            pair.start_connect()

    def _forget(self, pair: _Pair) -> None:
        self._pairs.discard(pair)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Re-binding the same port must work while old connections sit in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(128)
            sock.setblocking(False)
            self._server = await loop.create_server(lambda: _ClientSide(self), sock=sock)
        except BaseException:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])

    def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _apply_mode(self, mode: Mode, delay: float) -> None:
        self._delay = delay
        self._mode = mode
        if mode is Mode.REFUSE:
            self._unlisten()
            for pair in list(self._pairs):
                pair.close()
            return
        await self._listen()
        if mode is Mode.CUT:
            await self._cut()
        for pair in list(self._pairs):
            if mode is not Mode.BLACKHOLE:
                pair.start_connect()
            pair.update_reading()
            pair.wake.set()

    async def _cut(self) -> None:
        for pair in list(self._pairs):
            pair.reset()
        # Let the transports run their connection_lost callbacks before the caller goes on.
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    async def _shutdown(self) -> None:
        self._unlisten()
        for pair in list(self._pairs):
            pair.reset()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)
        await asyncio.sleep(0)


def _copy_result(task: asyncio.Task[T], future: concurrent.futures.Future[T]) -> None:
    if future.cancelled():
        return
    if task.cancelled():
        future.cancel()
    elif (exc := task.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(task.result())


__all__ = ["FaultProxy", "Mode"]
