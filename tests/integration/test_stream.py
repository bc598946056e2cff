"""The lean client stream over real TCP and unix sockets (sockmapd.server.stream)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import ByteStream, SocketAttribute, SocketStream

from sockmapd.server.stream import READ_LIMIT, LeanStream, lean


async def _accepted(
    listener_kind: str, tmp_path: Path, client_bytes: bytes, *, shut: bool
) -> tuple[socket.socket, ByteStream]:
    """Accept one connection whose client sent client_bytes first; return the lean stream."""
    if listener_kind == "tcp":
        listener = (
            await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        ).listeners[0]
        port = listener.extra(SocketAttribute.local_port)
        client = socket.create_connection(("127.0.0.1", port))
    else:
        path = tmp_path / "s.sock"
        listener = await anyio.create_unix_listener(path)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
    client.sendall(client_bytes)
    if shut:
        client.shutdown(socket.SHUT_WR)
    stream: SocketStream = await listener.accept()
    await anyio.sleep(0.05)  # let the bytes arrive before the stream is moved
    served = await lean(stream)
    await listener.aclose()
    return client, served


# The daemon runs on uvloop when installed, else on asyncio's own loop: both are tested.
LOOPS = [pytest.param({"use_uvloop": True}, id="uvloop"), pytest.param({}, id="asyncio")]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_accepted_streams_move_to_the_lean_stream_without_losing_bytes(
    kind: str, loop: dict[str, bool], tmp_path: Path
) -> None:
    async def main() -> None:
        client, served = await _accepted(kind, tmp_path, b"5:m key,", shut=True)
        # Not a silent fallback to anyio's stream (an anyio upgrade could cause one).
        assert isinstance(served, LeanStream)
        received = b""
        with anyio.fail_after(5):
            while True:
                try:
                    received += await served.receive()
                except anyio.EndOfStream:
                    break
        assert received == b"5:m key,"
        # The client closed its sending side only: the reply still reaches it.
        await served.send(b"3:OK ,")
        await served.aclose()
        client.settimeout(5)
        # In a thread: the loop must run to flush and close the transport.
        assert await anyio.to_thread.run_sync(client.recv, 100) == b"3:OK ,"
        assert await anyio.to_thread.run_sync(client.recv, 100) == b""
        client.close()

    anyio.run(main, backend="asyncio", backend_options=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_reading_stops_at_the_read_limit_until_the_buffer_is_consumed(
    loop: dict[str, bool], tmp_path: Path
) -> None:
    async def main() -> None:
        client, served = await _accepted("tcp", tmp_path, b"", shut=False)
        assert isinstance(served, LeanStream)
        client.setblocking(False)
        sent = 0
        chunk = b"x" * 65536
        # The server stops reading beyond READ_LIMIT: the kernel buffers fill and
        # the client can no longer send; the server did not buffer it all.
        with anyio.fail_after(20):
            while True:
                try:
                    sent += client.send(chunk)
                except BlockingIOError:
                    await anyio.sleep(0.1)
                    try:
                        sent += client.send(chunk)
                    except BlockingIOError:
                        break
                await anyio.lowlevel.checkpoint()
        assert served._protocol.reading_paused
        # Reading pauses after the first read that crosses the limit; one read is
        # as large as the loop's read size (not the client's send size), so the
        # bound is: everything before the last read was within READ_LIMIT.
        chunks = served._protocol.chunks
        assert served._protocol.buffered - len(chunks[-1]) <= READ_LIMIT
        got = 0
        with anyio.fail_after(20):
            while got < sent:
                got += len(await served.receive())
                if got < sent and not served._protocol.chunks:
                    # Draining the buffer resumed reading: the rest arrives.
                    assert not served._protocol.reading_paused
        assert got == sent
        await served.aclose()
        client.close()

    anyio.run(main, backend="asyncio", backend_options=loop)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_closing_a_stream_whose_client_stops_reading_frees_its_socket_at_once(
    kind: str, loop: dict[str, bool], tmp_path: Path
) -> None:
    async def main() -> None:
        client, served = await _accepted(kind, tmp_path, b"", shut=False)
        assert isinstance(served, LeanStream)
        # The client reads nothing: the replies fill the kernel buffers and the rest
        # stays unsent in the transport.
        assert not served.write_now(b"x" * (8 << 20))
        before = _open_descriptors()
        await served.aclose()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        # The server decided to close: its socket and its unsent data are gone now,
        # not when (if ever) the client reads.
        assert _open_descriptors() == before - 1
        client.close()

    anyio.run(main, backend="asyncio", backend_options=loop)
