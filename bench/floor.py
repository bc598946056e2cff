"""The floor: the least a socketmap server can do, to show what the machine and generator allow.

A plain asyncio Protocol (on uvloop when installed) that parses netstrings and answers
each key from a dict built in memory: ``OK <value>`` for the keys that exist and
``NOTFOUND `` for the rest, so the generator's checks pass. No logging, no limits, no
timeouts, no framework.

    python -m bench.floor --port P
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import cast

from bench.common import FOUND_KEYS, NOTFOUND, rows


class FloorProtocol(asyncio.Protocol):
    """Answer every complete netstring from the dict."""

    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers = answers
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Answer every complete frame in the buffer."""
        buffer = self.buffer
        buffer += data
        out = []
        while True:
            colon = buffer.find(b":")
            if colon <= 0:
                break
            end = colon + 1 + int(buffer[:colon])
            if len(buffer) <= end:
                break
            payload = bytes(buffer[colon + 1 : end])
            del buffer[: end + 1]
            key = payload.partition(b" ")[2]
            reply = self.answers.get(key, NOTFOUND)
            out.append(b"%d:%b," % (len(reply), reply))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int, keys: int) -> None:
    """Serve forever."""
    answers = {k.encode(): b"OK " + v.encode() for k, v in rows(keys)}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FloorProtocol(answers), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", type=int, default=FOUND_KEYS)
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.keys))
    else:
        uvloop.run(serve(args.host, args.port, args.keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
