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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from sockmapd.backends.errors import (
    ConnectionLost,
    DatabaseError,
    QueryFailed,
    QueryTimeout,
)
from sockmapd.backends.watchdog import Watchdog

log = logging.getLogger(__name__)

Rows = Sequence[Sequence[object]]

# MySQL client errors (CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED)
# and the server's "disconnected for inactivity": the connection is gone.
_MYSQL_LOST = frozenset({2006, 2013, 2055, 4031})
# PostgreSQL SQLSTATE classes and codes that end the session: connection
# exceptions (08) and an administrator or crash shutdown (57P01..57P03).
_PG_LOST = ("08", "57P01", "57P02", "57P03")
_PG_QUERY_CANCELED = "57014"
# A named prepared statement that does not exist (invalid_sql_statement_name) or exists
# already (duplicate_prepared_statement) on the server: behind PgBouncer in transaction
# or statement pooling, each transaction may run on another server connection, and
# asyncpg's named statements do not follow.
_PG_STATEMENT_ELSEWHERE = frozenset({"26000", "42P05"})
# PgBouncer refuses a startup parameter it does not track with protocol_violation and
# "unsupported startup parameter: NAME"; the code alone is too broad to tell.
_PG_PROTOCOL_VIOLATION = "08P01"
_PG_REFUSED_STARTUP = "startup parameter"
# Query execution was interrupted (KILL QUERY), maximum statement execution time
# exceeded (max_statement_time): the statement stopped, the connection is fine.
_MYSQL_INTERRUPTED = frozenset({1317, 1969, 3024})
# Closing politely: a server that does not answer within this is dropped.
_CLOSE_TIMEOUT = 2.0


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
    """What the connection pool needs from one database driver.

    fetch raises only the errors of sockmapd.backends.errors: the driver is the one
    place that says what its own exceptions mean.
    """

    async def fetch(self, conn: Any, sql: str, args: tuple[str, ...], query_timeout: float) -> Rows:
        """Run sql with args on conn within query_timeout seconds and return every row."""

    async def close(self, conn: Any) -> None:
        """Close conn politely; never raises."""

    def abort(self, conn: Any) -> Awaitable[None] | None:
        """Drop conn at once; never raises."""

    def stop(self, conn: Any) -> Awaitable[None]:
        """Stop the statement conn may still be running on the server, then close conn."""

    def translate(self, exc: BaseException) -> DatabaseError:
        """Return what exc, raised by this driver during a query, means."""


def _one_line(exc: BaseException) -> str:
    flat = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {flat[:300]}" if flat else type(exc).__name__


def _unknown(exc: BaseException) -> DatabaseError:
    # Nothing says what state the connection is in: it is not reused.
    return QueryFailed(_one_line(exc), reusable=False)


class PostgresDriver:
    """asyncpg: Connection.fetch keeps the statement prepared on each connection.

    Behind PgBouncer (pgbouncer = true) the connector turns asyncpg's statement cache
    off, and fetch then uses the unnamed statement: asyncpg parses and describes it,
    then parses it again together with its execution, two round trips where a cached
    statement takes one, and both in one pooled transaction (the first ends in Flush,
    not Sync), so PgBouncer keeps them on one server connection.

    asyncpg's own timeout sends the server a cancel request when it passes, and
    closing the connection politely waits for that cancel to be acknowledged, so a
    timed-out query stops on the server too.

    database and pgbouncer only shape the hint of an error that shows PgBouncer in
    front of a database not configured for it.
    """

    def __init__(self, database: str = "NAME", *, pgbouncer: bool = False) -> None:
        self._pooler_advice = (
            None if pgbouncer else f"set pgbouncer = true in [databases.{database}]"
        )

    async def fetch(self, conn: Any, sql: str, args: tuple[str, ...], query_timeout: float) -> Rows:
        """Run sql with args on conn within query_timeout seconds and return every row."""
        try:
            rows: Rows = await conn.fetch(sql, *args, timeout=query_timeout)
        except Exception as exc:
            raise self.translate(exc) from exc
        return rows

    async def close(self, conn: Any) -> None:
        """Close conn politely; never raises."""
        try:
            await conn.close(timeout=_CLOSE_TIMEOUT)
        except Exception as exc:
            log.debug("closing a database connection failed: %s", exc)
            conn.terminate()

    def abort(self, conn: Any) -> None:
        """Drop conn at once; never raises."""
        try:
            conn.terminate()
        except Exception as exc:
            log.debug("dropping a database connection failed: %s", exc)

    def stop(self, conn: Any) -> Awaitable[None]:
        """Wait for asyncpg's cancel request to be acknowledged, then close conn."""
        return self.close(conn)

    def translate(self, exc: BaseException) -> DatabaseError:
        """Return what an asyncpg exception means."""
        import asyncpg

        if isinstance(exc, TimeoutError):
            return QueryTimeout("the query ran past query_timeout and was cancelled")
        if isinstance(exc, OSError | EOFError | asyncpg.InterfaceError):
            # A broken socket, "connection is closed", "another operation is in
            # progress": the connection cannot serve the next lookup.
            return ConnectionLost(_one_line(exc))
        if isinstance(exc, asyncpg.InternalClientError):
            # After pg_terminate_backend asyncpg's protocol state machine can fail
            # first ("cannot switch to state 12"): the connection is unusable.
            return ConnectionLost(_one_line(exc))
        if isinstance(exc, asyncpg.PostgresError):
            state = str(getattr(exc, "sqlstate", "") or "")
            if state.startswith(_PG_LOST):
                return ConnectionLost(_one_line(exc), hint=self._pooler_hint(state, exc))
            if state == _PG_QUERY_CANCELED:
                # statement_timeout on the server, or a cancel request.
                return QueryTimeout(_one_line(exc))
            return QueryFailed(_one_line(exc), hint=self._pooler_hint(state, exc))
        return _unknown(exc)

    def _pooler_hint(self, state: str, exc: BaseException) -> str | None:
        """Return what to set when exc shows a pooler the database is not configured for."""
        if self._pooler_advice is None:
            return None
        # The first line: asyncpg appends its own hint on further lines.
        first = " ".join(str(exc).split("\n", 1)[0].split())[:200]
        if state in _PG_STATEMENT_ELSEWHERE:
            return (
                f"a prepared statement is not on the server connection it was made on "
                f"({first}); if this is PgBouncer in transaction or statement pooling, "
                f"{self._pooler_advice}"
            )
        if state == _PG_PROTOCOL_VIOLATION and _PG_REFUSED_STARTUP in first:
            return (
                f"the server refused a startup setting ({first}); if this is PgBouncer, "
                f"{self._pooler_advice}"
            )
        return None


class MysqlDriver:
    """asyncmy: the driver escapes the key into the statement, as SQLAlchemy does.

    A query past its timeout is stopped with KILL QUERY from a side connection to
    the same server (the MySQL protocol has no cancel request), opened by beside.
    """

    def __init__(self, beside: Callable[[Any], Awaitable[Any]] | None = None) -> None:
        self._beside = beside
        self._killing = asyncio.Lock()
        self._watchdog = Watchdog(
            "the query ran past query_timeout and was stopped", self.translate
        )

    async def fetch(self, conn: Any, sql: str, args: tuple[str, ...], query_timeout: float) -> Rows:
        """Run sql with args on conn within query_timeout seconds and return every row."""
        with self._watchdog.watch(query_timeout):
            async with conn.cursor() as cursor:
                await cursor.execute(sql, args)
                rows: Rows = await cursor.fetchall()
        return rows

    async def close(self, conn: Any) -> None:
        """Close conn politely; never raises."""
        try:
            await asyncio.wait_for(conn.ensure_closed(), timeout=_CLOSE_TIMEOUT)
        except Exception as exc:
            log.debug("closing a database connection failed: %s", exc)
            self.abort(conn)

    def abort(self, conn: Any) -> None:
        """Drop conn at once; never raises."""
        try:
            conn.close()
        except Exception as exc:
            log.debug("dropping a database connection failed: %s", exc)

    async def stop(self, conn: Any) -> None:
        """KILL QUERY conn's statement from a side connection, then drop conn; never raises."""
        try:
            thread_id = conn.thread_id()
        except Exception:
            thread_id = None
        # Dropped first: the server ends the statement's session once the statement
        # stops, and nothing will read its answer.
        self.abort(conn)
        if self._beside is None or not thread_id:
            return
        side = None
        try:
            # One side connection at a time per database: when a stalled server
            # cuts many queries at once, the kills queue up instead of each
            # opening a connection to a server that may be near max_connections.
            async with asyncio.timeout(_CLOSE_TIMEOUT * 5), self._killing:
                side = await self._beside(conn)
                async with side.cursor() as cursor:
                    await cursor.execute(f"KILL QUERY {int(thread_id)}")
        except Exception as exc:
            log.warning("could not stop a timed-out query on the server: %s", _one_line(exc))
        finally:
            if side is not None:
                self.abort(side)

    def translate(self, exc: BaseException) -> DatabaseError:
        """Return what an asyncmy exception means."""
        from asyncmy import errors

        if isinstance(exc, TimeoutError):
            return QueryTimeout("the query ran past query_timeout and was stopped")
        if isinstance(exc, OSError | EOFError | errors.InterfaceError):
            return ConnectionLost(_one_line(exc))
        if isinstance(exc, errors.Error):
            code = exc.args[0] if exc.args else None
            if code in _MYSQL_LOST:
                return ConnectionLost(_one_line(exc))
            if code in _MYSQL_INTERRUPTED:
                return QueryTimeout(_one_line(exc))
            return QueryFailed(_one_line(exc))
        return _unknown(exc)


class SqliteDriver:
    """aiosqlite: one thread per connection; a read-only file database."""

    def __init__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        # The arguments SQLAlchemy's dialect derives from the url (file or URI mode).
        self._args = tuple(args)
        self._kwargs = {**kwargs, "isolation_level": None}
        self._watchdog = Watchdog(
            "the query ran past query_timeout and was interrupted", self.translate
        )

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

    async def fetch(self, conn: Any, sql: str, args: tuple[str, ...], query_timeout: float) -> Rows:
        """Run sql with args on conn within query_timeout seconds and return every row."""
        with self._watchdog.watch(query_timeout):
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
        return self.stop(conn)

    async def stop(self, conn: Any) -> None:
        """Interrupt a running statement, then close conn; never raises."""
        try:
            # sqlite3's interrupt() is safe from any thread: the statement running
            # in aiosqlite's thread stops with "interrupted".
            await conn.interrupt()
        except Exception as exc:
            log.debug("interrupting a SQLite statement failed: %s", exc)
        await self.close(conn)

    def translate(self, exc: BaseException) -> DatabaseError:
        """Return what an aiosqlite exception means; a local file has no connection to lose."""
        if isinstance(exc, TimeoutError):
            return QueryTimeout("the query ran past query_timeout and was interrupted")
        if isinstance(exc, sqlite3.Error):
            return QueryFailed(_one_line(exc))
        if isinstance(exc, ValueError) and "closed" in str(exc):
            # aiosqlite: "Connection closed" once its thread has stopped.
            return ConnectionLost(_one_line(exc))
        return _unknown(exc)


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
