"""One map's query: its statement, compiled once, run on the lookup pool, and its answer."""

from __future__ import annotations

import logging
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
from sockmapd.lookup.recorder import DatabaseRecorder
from sockmapd.lookup.statements import KEY_PARAMETER, build_statement
from sockmapd.protocol import NOTFOUND_REPLY, Reply, Status

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
        "_plain_rows",
        "_pool",
        "_query_timeout",
        "_reason_column",
        "_recorder",
        "_sql",
        "_whole_key",
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
        self._recorder = recorder
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
        # The statement binds only the whole key and no result_format needs its parts.
        self._whole_key = self._key_only and self._formatter is None
        self._expansion_limit = config.expansion_limit
        self._first_column_only = config.result_columns == "first"
        # Each row's values are the answer as they are: no reason column, no result_format.
        self._plain_rows = not self._reason_column and self._formatter is None
        self._query_timeout = database.query_timeout
        self.unavailable = Reply.temp(f"database {config.database} unavailable, try again later")
        self.timed_out = Reply.timeout(
            f"database {config.database} did not answer within {database.query_timeout:g}s"
        )

    @property
    def timeout(self) -> float:
        """Return the database's query_timeout: the time one lookup may take."""
        return self._query_timeout

    async def fetch(self, key: str, deadline: float) -> Reply:
        """Return the answer of the database for key by deadline (the loop's clock).

        A key the query is not run for (see _arguments) is not found; a failure is
        TEMP or TIMEOUT, never NOTFOUND. One coroutine frame from the map to the
        pool: a lost connection is retried in it, not in a frame of its own.
        """
        if not key:
            # Postfix never queries an empty key ("empty query string -- ignored").
            return NOTFOUND_REPLY
        parts: KeyParts | None = None
        if self._whole_key:
            # The whole key, as many times as the statement binds it: the key's
            # parts are not needed, and not made.
            args = (key,) * self._width
        else:
            parts = KeyParts.of(key)
            found = self._arguments(parts)
            if found is None:
                return NOTFOUND_REPLY
            args = found
        pool = self._pool
        recorder = self._recorder
        may_retry = True
        while True:
            began = perf_counter()
            try:
                if pool is None:
                    # Only a map built without a database (a test double) gets here.
                    raise DatabaseUnavailable(f"database {self.database}: no connection pool")
                rows = await pool.fetch(self._sql, args, deadline)
            except DatabaseError as exc:
                if recorder is not None:
                    recorder.failed(exc, perf_counter() - began)
                if may_retry and isinstance(exc, ConnectionLost):
                    # The pooled connection died (server restart, failover, a cut
                    # network): one more try on a fresh one, maybe on another host.
                    self._log(exc.kind, ": connection lost (%s); retrying once", exc, logging.INFO)
                    may_retry = False
                    continue
                return self._failed(exc)
            if recorder is not None:
                recorder.answered(perf_counter() - began)
            if self._plain_rows:
                # The common answers, no row or one row of one text value, without
                # format_rows's walk.
                if not rows:
                    return NOTFOUND_REPLY
                if len(rows) == 1:
                    row = rows[0]
                    if len(row) == 1:
                        value = row[0]
                        if type(value) is str:
                            return Reply(Status.OK, value) if value else NOTFOUND_REPLY
            return format_rows(
                rows,
                reason_column=self._reason_column,
                formatter=self._formatter,
                parts=parts,
                expansion_limit=self._expansion_limit,
                first_column_only=self._first_column_only,
            )

    def _arguments(self, parts: KeyParts) -> tuple[str, ...] | None:
        """Return the bind values for a non-empty key in the statement's order, or None
        when the query is not run for it.

        Postfix never queries a key an expansion cannot fill (%d of an unqualified
        key, ...), nor one that lacks a part result_format uses: such a key is not found.
        """
        if self._formatter is not None and not self._formatter.usable_for(parts):
            return None
        if self._key_only:
            return (parts.key,) * self._width
        params = query_params(self._parameters, parts)
        if params is None:
            return None
        return self._order(params)

    def _failed(self, exc: DatabaseError) -> Reply:
        """Log a failed query (a lost connection: its retry) and return its answer."""
        if isinstance(exc, QueryTimeout):
            self._log(exc.kind, ": query exceeded query_timeout=%gs", self._query_timeout)
            return self.timed_out
        if isinstance(exc, ConnectionLost):
            self._log("lost_connection_on_retry", " failed: %s", exc)
            return self.unavailable
        self._log(exc.kind, " failed: %s", exc)
        return self.unavailable

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
