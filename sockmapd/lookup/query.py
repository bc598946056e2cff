"""One map's query: its statement, compiled once, run on the lookup pool, and its answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from time import perf_counter
from typing import cast

from sqlalchemy import String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement, Executable

from sockmapd.backends.drivers import PreparedLookup
from sockmapd.backends.errors import (
    ConnectionLost,
    DatabaseError,
    DatabaseUnavailable,
    QueryTimeout,
)
from sockmapd.backends.pool import DriverPool
from sockmapd.config import DatabaseConfig, MapConfig
from sockmapd.config.expansions import RESULT_CODES, compile_query, parse_template
from sockmapd.lookup.answers import format_rows
from sockmapd.lookup.failures import FailureLog
from sockmapd.lookup.keys import KeyParts, ResultFormatter, query_params
from sockmapd.lookup.recorder import NO_RECORDER, DatabaseRecorder
from sockmapd.lookup.statements import KEY_PARAMETER, build_statement
from sockmapd.protocol import Reply

log = logging.getLogger(__name__)
# One per process, shared by every map and generation; flushed at shutdown.
failures = FailureLog(log)


class MapQuery:
    """The statement of one map and how its rows become a reply."""

    __slots__ = (
        "_expansion_limit",
        "_first_column_only",
        "_formatter",
        "_key_only",
        "_order",
        "_parameters",
        "_pool",
        "_query_timeout",
        "_reason_column",
        "_recorder",
        "_sql",
        "_width",
        "database",
        "name",
        "statement",
        "timed_out",
        "unavailable",
    )

    def __init__(
        self,
        name: str,
        config: MapConfig,
        engine: AsyncEngine,
        database: DatabaseConfig,
        *,
        recorder: DatabaseRecorder | None = None,
        pool: DriverPool | None = None,
    ) -> None:
        self.name = name
        self.database = config.database
        self._recorder = NO_RECORDER if recorder is None else recorder
        self.statement: Executable
        if config.query is not None:
            bound = compile_query(config.query, database.dialect)
            self._parameters = bound.parameters
            # Every parameter is text, so that PostgreSQL can type it anywhere
            # (CONCAT($1, ...) cannot be typed from the query alone).
            self.statement = text(bound.sql).bindparams(
                *(bindparam(parameter.name, type_=String()) for parameter in bound.parameters)
            )
        else:
            self._parameters = (KEY_PARAMETER,)
            self.statement = build_statement(config)
        self._key_only = self._parameters == (KEY_PARAMETER,)
        # Lookups send the SQL compiled here for the database's dialect straight
        # to the driver; the key stays a bound parameter.
        self._pool = pool
        prepared = PreparedLookup(cast(ClauseElement, self.statement), engine.dialect)
        self._sql = prepared.sql
        self._order = prepared.arguments
        self._width = len(prepared.names)
        self._reason_column = config.reason is not None
        self._formatter = (
            ResultFormatter(parse_template(config.result_format, RESULT_CODES))
            if config.result_format is not None
            else None
        )
        self._expansion_limit = config.expansion_limit
        self._first_column_only = config.result_columns == "first"
        self._query_timeout = database.query_timeout
        self.unavailable = Reply.temp(f"database {config.database} unavailable, try again later")
        self.timed_out = Reply.timeout(
            f"database {config.database} did not answer within {database.query_timeout:g}s"
        )

    @property
    def timeout(self) -> float:
        """Return the database's query_timeout: the time one lookup may take."""
        return self._query_timeout

    def arguments(self, parts: KeyParts) -> tuple[str, ...] | None:
        """Return the bind values for one key in the statement's order, or None when the
        query is not run for it.

        Postfix never queries an empty key ("empty query string -- ignored"), nor a key
        an expansion cannot fill (%d of an unqualified key, ...), nor one that lacks a
        part result_format uses: such a key is not found.
        """
        key = parts.key
        if not key:
            return None
        if self._formatter is not None and not self._formatter.usable_for(parts):
            return None
        if self._key_only:
            # The whole key, as many times as the statement binds it.
            return (key,) * self._width
        params = query_params(self._parameters, parts)
        if params is None:
            return None
        return self._order(params)

    def fetch(self, args: tuple[str, ...], parts: KeyParts, deadline: float) -> Awaitable[Reply]:
        """Return the answer of the database for args by deadline (the loop's clock).

        A failure is TEMP or TIMEOUT, never NOTFOUND.
        """
        return self._attempt(args, parts, deadline, may_retry=True)

    async def _attempt(
        self, args: tuple[str, ...], parts: KeyParts, deadline: float, *, may_retry: bool
    ) -> Reply:
        pool = self._pool
        began = perf_counter()
        try:
            if pool is None:
                # Only a map built without a database (a test double) gets here.
                raise DatabaseUnavailable(f"database {self.database}: no connection pool")
            rows = await pool.fetch(self._sql, args, deadline)
        except DatabaseError as exc:
            self._recorder.failed(exc, perf_counter() - began)
            if isinstance(exc, QueryTimeout):
                self._log(exc.kind, ": query exceeded query_timeout=%gs", self._query_timeout)
                return self.timed_out
            if isinstance(exc, ConnectionLost):
                if may_retry:
                    # The pooled connection died (server restart, failover, a cut
                    # network): one more try on a fresh one, maybe on another host.
                    self._log(exc.kind, ": connection lost (%s); retrying once", exc, logging.INFO)
                    return await self._attempt(args, parts, deadline, may_retry=False)
                self._log("lost_connection_on_retry", " failed: %s", exc)
                return self.unavailable
            self._log(exc.kind, " failed: %s", exc)
            return self.unavailable
        self._recorder.answered(perf_counter() - began)
        return format_rows(
            rows,
            reason_column=self._reason_column,
            formatter=self._formatter,
            parts=parts,
            expansion_limit=self._expansion_limit,
            first_column_only=self._first_column_only,
        )

    def _log(self, cause: str, what: str, detail: object, level: int = logging.WARNING) -> None:
        """Log a failure of this map's database, at most once per cause and window."""
        failures.failed(
            self.database,
            cause,
            f"map %s: database %s{what}",
            self.name,
            self.database,
            detail,
            level=level,
        )
