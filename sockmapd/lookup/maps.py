"""One map: key transforms, domain filter, partial-key search, the query and its answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
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
from sockmapd.config.expansions import (
    RESULT_CODES,
    SEARCH_CODES,
    compile_query,
    parse_template,
)
from sockmapd.lookup.answers import format_rows
from sockmapd.lookup.cache import ReplyCache
from sockmapd.lookup.failures import FailureLog
from sockmapd.lookup.keys import (
    Expander,
    KeyParts,
    ResultFormatter,
    apply_transforms,
    query_params,
)
from sockmapd.lookup.recorder import NO_RECORDER, ErrorRecorder
from sockmapd.lookup.statements import KEY_PARAM, build_statement
from sockmapd.protocol import NOTFOUND_REPLY, Reply, Status

log = logging.getLogger(__name__)
# One per process, shared by every map and generation; flushed at shutdown.
failures = FailureLog(log)

_INTERNAL_ERROR = Reply.temp("internal error, try again later")


class MapLookup:
    """One configured map, with everything that can be prepared prepared at load."""

    __slots__ = (
        "_cache",
        "_codes",
        "_delimiters",
        "_domains",
        "_engine",
        "_errors",
        "_expansion_limit",
        "_first_column_only",
        "_flights",
        "_formatter",
        "_pool",
        "_prepared",
        "_query_timeout",
        "_reason_column",
        "_search",
        "_serve_stale",
        "_statement",
        "_timed_out",
        "_transforms",
        "_unavailable",
        "database",
        "name",
    )

    def __init__(
        self,
        name: str,
        config: MapConfig,
        engine: AsyncEngine,
        database: DatabaseConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        errors: ErrorRecorder | None = None,
        pool: DriverPool | None = None,
    ) -> None:
        self.name = name
        self.database = config.database
        self._engine = engine
        self._errors = NO_RECORDER if errors is None else errors
        self._statement: Executable
        if config.query is not None:
            bound = compile_query(config.query)
            self._codes = bound.codes
            self._statement = text(bound.sql).bindparams(
                *(bindparam(f"x_{code}", type_=String()) for code in bound.codes)
            )
        else:
            self._codes = ("s",)
            self._statement = build_statement(config)
        # With a pool, lookups send the SQL compiled here for the database's
        # dialect straight to the driver; the key stays a bound parameter.
        self._pool = pool
        self._prepared = (
            PreparedLookup(cast(ClauseElement, self._statement), engine.dialect)
            if pool is not None
            else None
        )
        self._reason_column = config.reason is not None
        self._formatter = (
            ResultFormatter(parse_template(config.result_format, RESULT_CODES))
            if config.result_format is not None
            else None
        )
        self._expansion_limit = config.expansion_limit
        self._first_column_only = config.result_columns == "first"
        self._transforms = tuple(config.key_transform)
        self._delimiters = config.recipient_delimiter
        # An empty domain file still filters: Postfix then queries nothing.
        self._domains = config.domains() if config.domain else None
        self._search = tuple(
            Expander(parse_template(entry, SEARCH_CODES), config.recipient_delimiter)
            for entry in config.search
        )
        self._query_timeout = database.query_timeout
        self._unavailable = Reply.temp(f"database {config.database} unavailable, try again later")
        self._timed_out = Reply.timeout(
            f"database {config.database} did not answer within {database.query_timeout:g}s"
        )
        # None when both ttls are 0: the lookup then pays one attribute check.
        self._cache = (
            ReplyCache(
                ttl=config.cache_ttl,
                negative_ttl=config.negative_cache_ttl,
                stale_ttl=config.stale_ttl,
                max_size=config.cache_size,
                clock=clock,
            )
            if config.cache_ttl > 0 or config.negative_cache_ttl > 0
            else None
        )
        self._serve_stale = config.stale_ttl > 0
        # Lookups running now, by key: a second request for the same key waits for
        # the first one's query instead of sending its own.
        self._flights: dict[str, asyncio.Future[Reply | None]] = {}

    def answer_now(self, key: str) -> Reply | None:
        """Return the reply if it is known without the database (cached, filtered), else None.

        For answering in the event loop's callback, with no task switch; a None
        is followed by lookup(key), which counts the cache miss.
        """
        cache = self._cache
        if cache is None and self._domains is None:
            return None
        if self._transforms:
            try:
                key = apply_transforms(key, self._transforms, self._delimiters)
            except Exception:
                return None  # lookup() reports it
        if self._domains is not None:
            parts = KeyParts.of(key)
            if parts.domain is None or not parts.local or parts.domain.lower() not in self._domains:
                return NOTFOUND_REPLY
        return None if cache is None else cache.get(key, count_miss=False)

    async def lookup(self, key: str) -> Reply:
        """Return the reply for key; any database failure is TEMP or TIMEOUT, never NOTFOUND."""
        if self._transforms:
            key = apply_transforms(key, self._transforms, self._delimiters)
        parts = KeyParts.of(key)
        if self._domains is not None and (
            parts.domain is None or not parts.local or parts.domain.lower() not in self._domains
        ):
            # Postfix's `domain` setting: only user@listed-domain keys are queried.
            # It applies to the key asked for, so a search may still derive
            # "@domain" from an eligible key.
            return NOTFOUND_REPLY
        cache = self._cache
        if cache is not None:
            cached = cache.get(key)
            if cached is not None:
                return cached
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, parts)
            # Shielded: a follower that gives up must not cancel the others' wait.
            reply = await asyncio.shield(flight)
            if reply is not None:
                return reply
            # The caller whose query this was was cancelled, and the query with
            # it: ask again, as the new leader or behind one.

    def clear_cache(self) -> int:
        """Forget every cached answer of this map and return how many there were."""
        return 0 if self._cache is None else self._cache.clear()

    @property
    def cache(self) -> ReplyCache | None:
        """Return this map's answer cache, or None when it caches nothing."""
        return self._cache

    async def _lead(self, key: str, parts: KeyParts) -> Reply:
        """Run the query in the caller's own task; concurrent callers of key wait for it.

        No task per lookup: the first caller runs the query itself. If it is
        cancelled (its request timed out, or shutdown), the waiting callers get
        None and each asks again.
        """
        flight: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        reply: Reply | None = None
        try:
            reply = await self._resolve(key, parts)
            return reply
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.set_result(reply)

    async def _resolve(self, key: str, parts: KeyParts) -> Reply:
        cache = self._cache
        generation = 0 if cache is None else cache.generation
        try:
            reply = await self._search_key(parts)
        except Exception:
            # Nobody may be waiting any more: log here, or the error is lost.
            log.exception("map %s: lookup failed unexpectedly", self.name)
            return _INTERNAL_ERROR
        if cache is None:
            return reply
        status = reply.status
        if status is Status.OK or status is Status.NOTFOUND:
            cache.put(key, reply, generation)
        elif self._serve_stale and (reply is self._unavailable or reply is self._timed_out):
            # Only a database failure may fall back to an older answer; a result
            # over expansion_limit is the truth about the data, not an outage.
            stale = cache.get_stale(key)
            if stale is not None:
                log.info("map %s: database failed, serving a cached answer", self.name)
                return stale
        return reply

    async def _search_key(self, parts: KeyParts) -> Reply:
        if not self._search:
            return await self._lookup_one(parts)
        tried: set[str] = set()
        for expander in self._search:
            candidate = expander.expand(parts)
            if candidate is None or candidate in tried:
                continue
            tried.add(candidate)
            reply = await self._lookup_one(KeyParts.of(candidate))
            # The first answer that is not "not found" ends the search. A TEMP or
            # TIMEOUT must not fall through to a wider key: the narrower key might
            # exist, and a catch-all answer in its place could misroute mail.
            if reply.status is not Status.NOTFOUND:
                return reply
        return NOTFOUND_REPLY

    async def _lookup_one(self, parts: KeyParts) -> Reply:
        if not parts.key:
            # Postfix never queries an empty key ("empty query string -- ignored").
            return NOTFOUND_REPLY
        if self._codes == ("s",):
            params = {KEY_PARAM: parts.key}
        else:
            found = query_params(self._codes, parts)
            if found is None:
                # An expansion the key cannot fill (%d of an unqualified key, ...):
                # Postfix suppresses the query and the key is not found.
                return NOTFOUND_REPLY
            params = found
        if self._formatter is not None and not self._formatter.usable_for(parts):
            return NOTFOUND_REPLY
        return await self._attempt(params, parts, may_retry=True)

    async def _attempt(self, params: dict[str, str], parts: KeyParts, *, may_retry: bool) -> Reply:
        pool = self._pool
        prepared = self._prepared
        try:
            if pool is None or prepared is None:
                # Only a map built without a database (a test double) gets here.
                raise DatabaseUnavailable(f"database {self.database}: no connection pool")
            rows = await pool.fetch(prepared.sql, prepared.arguments(params), self._query_timeout)
        except QueryTimeout as exc:
            self._errors.failed(exc)
            failures.failed(
                self.database,
                exc.kind,
                "map %s: database %s: query exceeded query_timeout=%gs",
                self.name,
                self.database,
                self._query_timeout,
            )
            return self._timed_out
        except ConnectionLost as exc:
            self._errors.failed(exc)
            if may_retry:
                # The pooled connection died (server restart, failover, a cut
                # network): one more try on a fresh one, maybe on another host.
                failures.failed(
                    self.database,
                    exc.kind,
                    "map %s: database %s: connection lost (%s); retrying once",
                    self.name,
                    self.database,
                    exc,
                    level=logging.INFO,
                )
                return await self._attempt(params, parts, may_retry=False)
            failures.failed(
                self.database,
                "lost_connection_on_retry",
                "map %s: database %s failed: %s",
                self.name,
                self.database,
                exc,
            )
            return self._unavailable
        except DatabaseError as exc:
            self._errors.failed(exc)
            failures.failed(
                self.database,
                exc.kind,
                "map %s: database %s failed: %s",
                self.name,
                self.database,
                exc,
            )
            return self._unavailable
        return format_rows(
            rows,
            reason_column=self._reason_column,
            formatter=self._formatter,
            parts=parts,
            expansion_limit=self._expansion_limit,
            first_column_only=self._first_column_only,
        )
