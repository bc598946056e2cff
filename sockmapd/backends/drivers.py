"""Run one prepared lookup on a raw driver connection: asyncpg, asyncmy or aiosqlite.

The lookup path sends the SQL that SQLAlchemy compiled for the database's dialect
once at load, with the key as a bound parameter, straight to the driver. This is
the same text and the same parameter binding that SQLAlchemy itself would hand
the driver, without the per-execute work of its Core layer (about two thirds of
the CPU time of a lookup on this path, measured per lookup).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

log = logging.getLogger(__name__)

Rows = Sequence[Sequence[object]]

# MySQL client errors (CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED)
# and the server's "disconnected for inactivity": the connection is gone.
_MYSQL_LOST = frozenset({2006, 2013, 2055, 4031})
# PostgreSQL SQLSTATE classes and codes that end the session: connection
# exceptions (08) and an administrator or crash shutdown (57P01..57P03).
_PG_LOST_CLASSES = ("08", "57P01", "57P02", "57P03")


class PreparedLookup:
    """A statement compiled once for one dialect: its SQL text and parameter order."""

    __slots__ = ("names", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        # Positional paramstyles (asyncpg $1, asyncmy %s, sqlite ?) take the values
        # in this order; the names are the bind names (x_s, x_d, ...).
        self.names: tuple[str, ...] = tuple(getattr(compiled, "positiontup", None) or ())

    def arguments(self, params: dict[str, str]) -> tuple[str, ...]:
        """Return the values of params in the statement's positional order."""
        return tuple(params[name] for name in self.names)


class Driver(Protocol):
    """What the connection pool and the lookup need from one database driver."""

    async def fetch(self, conn: Any, sql: str, args: tuple[str, ...]) -> Rows:
        """Run sql with args on conn and return every row."""

    async def close(self, conn: Any) -> None:
        """Close conn politely; never raises."""

    def abort(self, conn: Any) -> Awaitable[None] | None:
        """Drop conn at once (it may be in the middle of a query); never raises."""

    def is_lost(self, exc: BaseException) -> bool:
        """Return True if exc means the connection broke, not that the query failed."""


class PostgresDriver:
    """asyncpg: Connection.fetch keeps the statement prepared on each connection."""

    async def fetch(self, conn: Any, sql: str, args: tuple[str, ...]) -> Rows:
        """Run sql with args on conn and return every row."""
        rows: Rows = await conn.fetch(sql, *args)
        return rows

    async def close(self, conn: Any) -> None:
        """Close conn politely; never raises."""
        try:
            await asyncio.wait_for(conn.close(), timeout=1.0)
        except Exception as exc:
            log.debug("closing a database connection failed: %s", exc)
            conn.terminate()

    def abort(self, conn: Any) -> None:
        """Drop conn at once; never raises."""
        try:
            conn.terminate()
        except Exception as exc:
            log.debug("dropping a database connection failed: %s", exc)

    def is_lost(self, exc: BaseException) -> bool:
        """Return True if exc means the connection broke."""
        import asyncpg

        if isinstance(exc, OSError | EOFError | asyncpg.ConnectionDoesNotExistError):
            return True
        if isinstance(exc, asyncpg.InterfaceError):
            # "connection is closed", "another operation is in progress": the
            # connection cannot be trusted for the next lookup.
            return True
        if isinstance(exc, asyncpg.PostgresError):
            state = str(getattr(exc, "sqlstate", "") or "")
            return state.startswith(_PG_LOST_CLASSES)
        return False


class MysqlDriver:
    """asyncmy: the driver escapes the key into the statement, as SQLAlchemy does."""

    async def fetch(self, conn: Any, sql: str, args: tuple[str, ...]) -> Rows:
        """Run sql with args on conn and return every row."""
        async with conn.cursor() as cursor:
            await cursor.execute(sql, args)
            rows: Rows = await cursor.fetchall()
            return rows

    async def close(self, conn: Any) -> None:
        """Close conn politely; never raises."""
        try:
            await asyncio.wait_for(conn.ensure_closed(), timeout=1.0)
        except Exception as exc:
            log.debug("closing a database connection failed: %s", exc)
            self.abort(conn)

    def abort(self, conn: Any) -> None:
        """Drop conn at once; never raises."""
        try:
            conn.close()
        except Exception as exc:
            log.debug("dropping a database connection failed: %s", exc)

    def is_lost(self, exc: BaseException) -> bool:
        """Return True if exc means the connection broke."""
        from asyncmy import errors

        if isinstance(exc, OSError | EOFError | errors.InterfaceError):
            return True
        if isinstance(exc, errors.OperationalError):
            code = exc.args[0] if exc.args else None
            return code in _MYSQL_LOST
        return False


class SqliteDriver:
    """aiosqlite: one thread per connection; a read-only file database."""

    def __init__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        # The arguments SQLAlchemy's dialect derives from the url (file or URI mode).
        self._args = tuple(args)
        self._kwargs = {**kwargs, "isolation_level": None}

    async def connect(self) -> Any:
        """Return a new read-only connection to the database file."""
        import aiosqlite

        conn = await aiosqlite.connect(*self._args, **self._kwargs)
        try:
            # Every lookup connection refuses writes, so a mistaken query cannot write.
            await conn.execute("PRAGMA query_only = ON")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def fetch(self, conn: Any, sql: str, args: tuple[str, ...]) -> Rows:
        """Run sql with args on conn and return every row."""
        rows: Rows = await conn.execute_fetchall(sql, args)
        return rows

    async def close(self, conn: Any) -> None:
        """Close conn; never raises."""
        try:
            await conn.close()
        except Exception as exc:
            log.debug("closing a database connection failed: %s", exc)

    def abort(self, conn: Any) -> Awaitable[None]:
        """Interrupt a running statement, then close conn; never raises."""
        raw: sqlite3.Connection | None = getattr(conn, "_connection", None)
        if raw is not None:
            try:
                # sqlite3's interrupt() is safe from any thread: the statement
                # running in aiosqlite's thread stops with "interrupted".
                raw.interrupt()
            except Exception as exc:
                log.debug("interrupting a SQLite statement failed: %s", exc)
        return self.close(conn)

    def is_lost(self, exc: BaseException) -> bool:
        """A local file has no connection to lose."""
        return False


def driver_errors() -> tuple[type[BaseException], ...]:
    """Return the base classes of every installed driver's errors."""
    found: list[type[BaseException]] = [sqlite3.Error]
    try:
        import asyncpg
    except ImportError:
        pass
    else:
        found += [asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError]
    try:
        from asyncmy import errors
    except ImportError:
        pass
    else:
        found.append(errors.Error)
    return tuple(found)


_DRIVERS: tuple[Driver, ...] = (PostgresDriver(), MysqlDriver())


def is_lost_connection(exc: BaseException) -> bool:
    """Return True if exc, from any driver, means the connection broke."""
    if isinstance(exc, OSError | EOFError):
        return True
    module = type(exc).__module__
    if module.startswith("asyncpg"):
        return _DRIVERS[0].is_lost(exc)
    if module.startswith("asyncmy"):
        return _DRIVERS[1].is_lost(exc)
    return False
