"""The ceiling for misses: the least a socketmap server answering from SQL can do.

A plain asyncio Protocol (on uvloop when installed), no framework and no features:
it parses netstrings and answers each key with the same SELECT as sockmapd, through
the raw driver with the same number of database connections (asyncpg pool, asyncmy
pool, or a pool of aiosqlite connections). Requests on one connection are answered in
order, one at a time, like sockmapd.

    python -m bench.ceiling --port P --backend postgresql --dsn postgresql://...
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from bench.common import NOTFOUND, POOL_MAX, TABLE

Fetch = Callable[[str], Awaitable[str | None]]


class CeilingProtocol(asyncio.Protocol):
    """Answer every complete netstring with one query, in order."""

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self.buffer = bytearray()
        self.pending: deque[bytes] = deque()
        self.busy = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the transport."""
        self.transport = None

    def data_received(self, data: bytes) -> None:
        """Queue every complete frame; start answering if idle."""
        buffer = self.buffer
        buffer += data
        while True:
            colon = buffer.find(b":")
            if colon <= 0:
                break
            end = colon + 1 + int(buffer[:colon])
            if len(buffer) <= end:
                break
            self.pending.append(bytes(buffer[colon + 1 : end]))
            del buffer[: end + 1]
        if self.pending and not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self.drain())

    async def drain(self) -> None:
        """Answer the queued requests one after the other."""
        while self.pending and self.transport is not None:
            key = self.pending.popleft().partition(b" ")[2].decode()
            try:
                value = await self.fetch(key)
            except Exception as exc:
                reply = f"TEMP {type(exc).__name__}".encode()
            else:
                reply = NOTFOUND if value is None else b"OK " + value.encode()
            if self.transport is not None:
                self.transport.write(b"%d:%b," % (len(reply), reply))
        self.busy = False


async def postgresql(dsn: str, size: int) -> Fetch:
    """Return a lookup on an asyncpg pool."""
    import asyncpg

    async def keep_session(_conn: Any) -> None:
        # asyncpg resets a connection on every release (one more round trip:
        # pg_advisory_unlock_all, CLOSE ALL, UNLISTEN, RESET ALL); sockmapd's pool
        # does not, so neither does the ceiling it is measured against.
        return None

    pool: Any = await asyncpg.create_pool(dsn, min_size=1, max_size=size, reset=keep_session)
    query = f"SELECT maildir FROM {TABLE} WHERE address = $1"  # noqa: S608

    async def fetch(key: str) -> str | None:
        row = await pool.fetchrow(query, key)
        return None if row is None else str(row[0])

    return fetch


async def mariadb(dsn: str, size: int) -> Fetch:
    """Return a lookup on an asyncmy pool; dsn is host:port/user/database."""
    import asyncmy

    hostport, user, database = dsn.split("/")
    host, _, port = hostport.partition(":")
    pool: Any = await asyncmy.create_pool(
        host=host,
        port=int(port or 3306),
        user=user,
        db=database,
        minsize=1,
        maxsize=size,
        autocommit=True,
    )
    query = f"SELECT maildir FROM {TABLE} WHERE address = %s"  # noqa: S608

    async def fetch(key: str) -> str | None:
        async with pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(query, (key,))
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    return fetch


async def sqlite(path: str, size: int) -> Fetch:
    """Return a lookup on a pool of aiosqlite connections, opened as needed."""
    import aiosqlite

    idle: list[aiosqlite.Connection] = []
    opened = 0
    freed = asyncio.Condition()
    query = f"SELECT maildir FROM {TABLE} WHERE address = ?"  # noqa: S608

    async def acquire() -> aiosqlite.Connection:
        nonlocal opened
        async with freed:
            while not idle and opened >= size:
                await freed.wait()
            if idle:
                return idle.pop()
            opened += 1
        return await aiosqlite.connect(path)

    async def release(conn: aiosqlite.Connection) -> None:
        async with freed:
            idle.append(conn)
            freed.notify()

    async def fetch(key: str) -> str | None:
        conn = await acquire()
        try:
            async with conn.execute(query, (key,)) as cursor:
                row = await cursor.fetchone()
        finally:
            await release(conn)
        return None if row is None else str(row[0])

    return fetch


BACKENDS: dict[str, Callable[[str, int], Awaitable[Fetch]]] = {
    "postgresql": postgresql,
    "mariadb": mariadb,
    "sqlite": sqlite,
}


async def serve(host: str, port: int, backend: str, dsn: str, size: int) -> None:
    """Serve forever."""
    fetch = await BACKENDS[backend](dsn, size)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CeilingProtocol(fetch), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", choices=sorted(BACKENDS), required=True)
    parser.add_argument(
        "--dsn",
        required=True,
        help="postgresql: a libpq URL; mariadb: HOST:PORT/USER/DATABASE; sqlite: a file path",
    )
    parser.add_argument("--pool", type=int, default=POOL_MAX)
    args = parser.parse_args(argv)
    work = serve(args.host, args.port, args.backend, args.dsn, args.pool)
    try:
        import uvloop
    except ImportError:
        asyncio.run(work)
    else:
        uvloop.run(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
