"""One map: key transforms, domain filter, partial-key search, the query and its answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, bindparam, text
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from sockmapd.backends import DatabaseError
from sockmapd.backends.connectors import DatabaseUnavailable
from sockmapd.config import DatabaseConfig, MapConfig
from sockmapd.config.expansions import (
    RESULT_CODES,
    SEARCH_CODES,
    compile_query,
    parse_template,
)
from sockmapd.lookup.answers import format_rows
from sockmapd.lookup.keys import (
    Expander,
    KeyParts,
    ResultFormatter,
    apply_transforms,
    query_params,
)
from sockmapd.lookup.statements import KEY_PARAM, build_statement
from sockmapd.protocol import NOTFOUND_REPLY, Reply, Status

log = logging.getLogger(__name__)


class MapLookup:
    """One configured map, with everything that can be prepared prepared at load."""

    __slots__ = (
        "_codes",
        "_delimiters",
        "_domains",
        "_engine",
        "_expansion_limit",
        "_first_column_only",
        "_formatter",
        "_query_timeout",
        "_reason_column",
        "_search",
        "_statement",
        "_timed_out",
        "_transforms",
        "_unavailable",
        "database",
        "name",
    )

    def __init__(
        self, name: str, config: MapConfig, engine: AsyncEngine, database: DatabaseConfig
    ) -> None:
        self.name = name
        self.database = config.database
        self._engine = engine
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
        try:
            rows = await self._fetch(params)
        except TimeoutError:
            log.warning(
                "map %s: database %s: query exceeded query_timeout=%gs",
                self.name,
                self.database,
                self._query_timeout,
            )
            return self._timed_out
        except DatabaseError as exc:
            if may_retry and _lost_connection(exc):
                # The pooled connection died (server restart, failover, a cut
                # network): one more try on a fresh one, maybe on another host.
                log.info(
                    "map %s: database %s: connection lost (%s); retrying once",
                    self.name,
                    self.database,
                    _one_line(exc),
                )
                return await self._attempt(params, parts, may_retry=False)
            log.warning("map %s: database %s failed: %s", self.name, self.database, _one_line(exc))
            return self._unavailable
        return format_rows(
            rows,
            reason_column=self._reason_column,
            formatter=self._formatter,
            parts=parts,
            expansion_limit=self._expansion_limit,
            first_column_only=self._first_column_only,
        )

    async def _fetch(self, params: dict[str, str]) -> Sequence[Row[Any]]:
        async with self._engine.connect() as conn:
            try:
                async with asyncio.timeout(self._query_timeout):
                    result = await conn.execute(self._statement, params)
                    return result.all()
            except TimeoutError:
                # The connection is in the middle of a query: it cannot go back
                # to the pool. Invalidating closes it without a round trip.
                await conn.invalidate()
                raise


def _lost_connection(exc: BaseException) -> bool:
    """Return True for errors that mean the connection broke, not that the query failed."""
    if isinstance(exc, DatabaseUnavailable):
        return False
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, OSError | EOFError)


def _one_line(exc: BaseException) -> str:
    flat = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {flat[:300]}"
