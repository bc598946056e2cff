"""Create and drop the benchmark's own databases: one SQLite file, MariaDB and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import DB_NAME, FOUND_KEYS, TABLE, rows

SETUP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Backend:
    """One database the benchmark can use."""

    name: str
    sockmapd_url: str
    ceiling_dsn: str


def make_sqlite(path: Path, count: int = FOUND_KEYS, table: str = TABLE) -> Backend:
    """Create (or replace) a SQLite file with count rows in table."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"CREATE TABLE {table} (address TEXT PRIMARY KEY, maildir TEXT)")
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows(count))  # noqa: S608
        conn.commit()
    finally:
        conn.close()
    return Backend("sqlite", f"sqlite+aiosqlite:///{path}", str(path))


def _parts(url: str, default_port: int) -> tuple[str, int, str]:
    split = urlsplit(url)
    return split.hostname or "127.0.0.1", split.port or default_port, split.username or ""


async def _postgresql(admin_url: str, drop_only: bool) -> Backend:
    import asyncpg

    host, port, user = _parts(admin_url, 5432)
    admin: Any = await asyncpg.connect(admin_url, timeout=5)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        if not drop_only:
            await admin.execute(f"CREATE DATABASE {DB_NAME}")
    finally:
        await admin.close()
    dsn = f"postgresql://{user}@{host}:{port}/{DB_NAME}"
    if not drop_only:
        conn: Any = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(f"CREATE TABLE {TABLE} (address TEXT PRIMARY KEY, maildir TEXT)")
            await conn.copy_records_to_table(TABLE, records=list(rows()))
            await conn.execute(f"ANALYZE {TABLE}")
        finally:
            await conn.close()
    return Backend("postgresql", f"postgresql+asyncpg://{user}@{host}:{port}/{DB_NAME}", dsn)


async def _mariadb(admin_url: str, drop_only: bool) -> Backend:
    import asyncmy

    host, port, user = _parts(admin_url, 3306)
    password = urlsplit(admin_url).password or ""
    conn: Any = await asyncmy.connect(
        host=host, port=port, user=user, password=password, autocommit=True, connect_timeout=5
    )
    try:
        async with conn.cursor() as cursor:
            # Not "DROP ... IF EXISTS": asyncmy prints MariaDB's note about a missing one.
            await cursor.execute(
                "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (DB_NAME,)
            )
            if await cursor.fetchall():
                await cursor.execute(f"DROP DATABASE {DB_NAME}")
            if not drop_only:
                await cursor.execute(f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4")
                await cursor.execute(f"USE {DB_NAME}")
                await cursor.execute(
                    f"CREATE TABLE {TABLE} (address VARCHAR(255) PRIMARY KEY, maildir TEXT)"
                )
                await cursor.executemany(
                    f"INSERT INTO {TABLE} VALUES (%s, %s)",  # noqa: S608
                    list(rows()),
                )
                await cursor.execute(f"ANALYZE TABLE {TABLE}")
                await cursor.fetchall()
    finally:
        conn.close()
    secret = f":{password}" if password else ""
    return Backend(
        "mariadb",
        f"mysql+asyncmy://{user}{secret}@{host}:{port}/{DB_NAME}",
        f"{host}:{port}/{user}/{DB_NAME}",
    )


def create_server_backend(kind: str, admin_url: str) -> Backend:
    """Create the benchmark database on a MariaDB or PostgreSQL server (dropped first)."""
    work = _postgresql if kind == "postgresql" else _mariadb
    return asyncio.run(asyncio.wait_for(work(admin_url, False), SETUP_TIMEOUT))


def drop_server_backend(kind: str, admin_url: str) -> None:
    """Drop the benchmark database of a MariaDB or PostgreSQL server."""
    work = _postgresql if kind == "postgresql" else _mariadb
    asyncio.run(asyncio.wait_for(work(admin_url, True), SETUP_TIMEOUT))


async def _pg_sessions(admin_url: str) -> int:
    import asyncpg

    conn: Any = await asyncpg.connect(admin_url, timeout=5)
    try:
        value = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", DB_NAME
        )
    finally:
        await conn.close()
    return int(value or 0)


async def _mariadb_connections(admin_url: str) -> int:
    import asyncmy

    host, port, user = _parts(admin_url, 3306)
    conn: Any = await asyncmy.connect(
        host=host, port=port, user=user, password=urlsplit(admin_url).password or ""
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            row = await cursor.fetchone()
    finally:
        conn.close()
    return int(row[1])


def connections_opened(kind: str, admin_url: str) -> int:
    """Return the server's count of connections opened so far (PostgreSQL: to the bench DB).

    PostgreSQL's count is pg_stat_database.sessions of the benchmark database; MariaDB's
    is the global Connections status, which also counts this probe's own connection.
    """
    work = _pg_sessions if kind == "postgresql" else _mariadb_connections
    return asyncio.run(asyncio.wait_for(work(admin_url), SETUP_TIMEOUT))
