"""A lean byte stream for client connections, on an asyncio protocol of our own.

anyio's socket streams pay for generality on every request: each receive resumes
and pauses reading on the transport (two event-loop registrations) and each send
ends with a cancel-shielded sleep(0), one more trip through the event loop. With
one request in flight per connection, as Postfix sends them, that was about half
the time of a cached answer. The accepted connection is moved onto this protocol,
which reads continuously into a bounded buffer and writes straight to the
transport; anyio's cancel scopes still bound every wait, since the waits are plain
futures awaited in the connection's task.

Streams that cannot be moved (an unknown anyio stream class) are served by anyio's
own stream: slower, same behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import anyio
from anyio.abc import ByteStream, SocketAttribute

log = logging.getLogger(__name__)

# Reading stops while this much is buffered and unprocessed; a client cannot make
# the server hold more than this (plus one chunk) of its unread requests.
READ_LIMIT = 256 * 1024
# Replies are written at once up to this much unsent data; beyond it a send waits
# until the client reads. Bounds the memory a client that never reads can pin.
WRITE_HIGH_WATER = 64 * 1024


class _Protocol(asyncio.Protocol):
    """Buffers what arrives and wakes the one reader or writer waiting."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.eof = False
        self.lost = False
        self.exception: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None
        self.writing_paused = False
        # Set by the connection: answers what it can of data in this callback and
        # returns False when its task must take over (see Connection.answer_now).
        self.answer_now: Callable[[bytes], bool] | None = None
        self.handover = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport and set its write limits."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        stream_transport = cast(asyncio.Transport, transport)
        stream_transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.transport = stream_transport

    def data_received(self, data: bytes) -> None:
        """Answer data at once if the connection can; else queue it for the connection's task."""
        if (
            self.answer_now is not None
            and self.reader is not None
            and not self.chunks
            and not self.writing_paused
        ):
            # The task waits for data, so nothing is in flight: answering here keeps
            # the replies in order, and spares a task switch per request.
            if not self.answer_now(bytes(data)):
                self.handover = True
                _wake(self.reader)
            return
        self.chunks.append(bytes(data))
        self.buffered += len(data)
        if self.buffered > READ_LIMIT and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self.reader)

    def eof_received(self) -> bool:
        """Note the client's end of input; keep the transport open for the replies."""
        self.eof = True
        _wake(self.reader)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """Wake everyone: nothing more will come or go."""
        self.lost = True
        self.eof = True
        self.exception = exc
        _wake(self.reader)
        _wake(self.writer)

    def pause_writing(self) -> None:
        """The transport's buffer is over the high-water mark."""
        self.writing_paused = True

    def resume_writing(self) -> None:
        """The transport's buffer drained below the low-water mark."""
        self.writing_paused = False
        _wake(self.writer)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class LeanStream(ByteStream):
    """A ByteStream over _Protocol: receive, send and close, with anyio's exceptions."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol, peer: Any) -> None:
        self._transport = transport
        self._protocol = protocol
        self._peer = peer
        self._closed = False

    @property
    def extra_attributes(self) -> dict[Any, Any]:
        """Return the remote and local addresses, as anyio's socket streams do."""
        transport = self._transport
        return {
            SocketAttribute.remote_address: lambda: self._peer,
            SocketAttribute.local_address: lambda: transport.get_extra_info("sockname"),
        }

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return the next bytes; raise EndOfStream at the client's end of input."""
        protocol = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.chunks:
            # Data was already here: still give other connections a turn, or a
            # client that keeps its requests queued could hold the event loop.
            await asyncio.sleep(0)
        while not protocol.chunks:
            if protocol.handover:
                # The connection took data in the protocol's callback and left
                # work for its task: requests to look up, a partial frame, an error.
                protocol.handover = False
                return b""
            if protocol.eof:
                if protocol.exception is not None:
                    raise anyio.BrokenResourceError from protocol.exception
                raise anyio.EndOfStream
            waiter = asyncio.get_running_loop().create_future()
            protocol.reader = waiter
            try:
                await waiter
            finally:
                protocol.reader = None
            if self._closed:
                raise anyio.ClosedResourceError
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            protocol.chunks.appendleft(rest)
        protocol.buffered -= len(chunk)
        if protocol.reading_paused and protocol.buffered <= READ_LIMIT // 2:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        """Write item; wait only while the client leaves too much unread."""
        protocol = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.lost:
            raise anyio.BrokenResourceError from protocol.exception
        self._transport.write(item)
        while protocol.writing_paused and not protocol.lost:
            waiter = asyncio.get_running_loop().create_future()
            protocol.writer = waiter
            try:
                await waiter
            finally:
                protocol.writer = None
        if protocol.lost and protocol.exception is not None:
            raise anyio.BrokenResourceError from protocol.exception

    def answer_with(self, answer_now: Callable[[bytes], bool]) -> None:
        """Let answer_now take arriving data while the reader waits (see _Protocol)."""
        self._protocol.answer_now = answer_now

    def write_now(self, data: bytes) -> bool:
        """Write data at once; return False if the client left too much unread to go on."""
        self._transport.write(data)
        protocol = self._protocol
        return not (protocol.writing_paused or protocol.lost)

    async def send_eof(self) -> None:
        """Close the sending side."""
        if self._transport.can_write_eof():
            self._transport.write_eof()

    async def aclose(self) -> None:
        """Close the connection; drop what the client left unread.

        Waiting to flush to a client that stops reading would keep its socket and
        its replies after its task and its connection slot are gone.
        """
        if self._closed:
            return
        self._closed = True
        _wake(self._protocol.reader)
        _wake(self._protocol.writer)
        if self._transport.get_write_buffer_size():
            self._transport.abort()
        else:
            self._transport.close()


async def lean_socket(sock: socket.socket) -> LeanStream:
    """Return a LeanStream over a connection accepted straight from a listening socket."""
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer: Any = sock.getpeername()
    else:
        peer = ""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_accepted_socket(_Protocol, sock)
    return LeanStream(transport, protocol, peer)


async def lean(stream: ByteStream) -> ByteStream:
    """Return a LeanStream over stream's connection, or stream itself if it cannot move."""
    transport = getattr(stream, "_transport", None)
    old = getattr(stream, "_protocol", None)
    # uvloop's transports do not subclass asyncio's: look for the methods used.
    if hasattr(transport, "set_protocol") and hasattr(old, "read_queue"):
        # anyio's TCP stream: give its transport our protocol, with whatever its
        # protocol already read. It reads only while receiving, so little or nothing.
        assert transport is not None
        assert old is not None
        peer = stream.extra(SocketAttribute.remote_address, None)
        protocol = _Protocol()
        protocol.connection_made(transport)
        for chunk in old.read_queue:
            protocol.data_received(chunk)
        old.read_queue.clear()
        if old.is_at_eof:
            protocol.eof_received()
        transport.set_protocol(protocol)
        if transport.is_closing():
            protocol.connection_lost(old.exception)
        else:
            transport.resume_reading()
        return LeanStream(transport, protocol, peer)
    raw = stream.extra(SocketAttribute.raw_socket, None)
    if isinstance(raw, socket.socket) and raw.family == socket.AF_UNIX:
        # anyio's unix stream works on the raw socket and holds no transport:
        # take the descriptor over (detach() leaves nothing for it to close).
        peer = stream.extra(SocketAttribute.remote_address, None)
        sock = socket.socket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_accepted_socket(_Protocol, sock)
        return LeanStream(transport, protocol, peer)
    return stream
