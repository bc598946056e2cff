"""Route a request to its map and run the map's query."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from sockmapd.backends import DatabaseError, Engines
from sockmapd.backends.connectors import DatabaseUnavailable
from sockmapd.config import Config, DatabaseConfig, MapConfig
from sockmapd.lookup.answers import format_rows
from sockmapd.lookup.statements import KEY_PARAM, build_statement
from sockmapd.protocol import Reply, Request

log = logging.getLogger(__name__)


class MapLookup:
    """One configured map: its prepared statement and the engine it runs on."""

    __slots__ = (
        "_engine",
        "_query_timeout",
        "_statement",
        "_timed_out",
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
        self._statement = build_statement(config)
        self._query_timeout = database.query_timeout
        self._unavailable = Reply.temp(f"database {config.database} unavailable, try again later")
        self._timed_out = Reply.timeout(
            f"database {config.database} did not answer within {database.query_timeout:g}s"
        )

    async def lookup(self, key: str) -> Reply:
        """Return the reply for key; any database failure is TEMP or TIMEOUT, never NOTFOUND."""
        return await self._attempt({KEY_PARAM: key}, may_retry=True)

    async def _attempt(self, params: dict[str, str], *, may_retry: bool) -> Reply:
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
                return await self._attempt(params, may_retry=False)
            log.warning("map %s: database %s failed: %s", self.name, self.database, _one_line(exc))
            return self._unavailable
        return format_rows(rows)

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


class Router:
    """All maps of one loaded config."""

    def __init__(self, maps: Mapping[str, MapLookup]) -> None:
        self._maps = dict(maps)

    @property
    def map_names(self) -> list[str]:
        """Return the configured map names."""
        return list(self._maps)

    async def answer(self, request: Request) -> Reply:
        """Return the reply for one request; an unknown map is TEMP, as a config error."""
        lookup = self._maps.get(request.map_name)
        if lookup is None:
            # The name comes from the client: cap what of it is echoed back.
            name = request.map_name[:64]
            return Reply.temp(f"unknown map {name!r}, check the sockmapd configuration")
        return await lookup.lookup(request.key)


def build_router(config: Config, engines: Engines) -> Router:
    """Build every map's statement once for this config."""
    return Router(
        {
            name: MapLookup(
                name,
                map_config,
                engines[map_config.database],
                config.databases[map_config.database],
            )
            for name, map_config in config.maps.items()
        }
    )


def _lost_connection(exc: BaseException) -> bool:
    """Return True for errors that mean the connection broke, not that the query failed."""
    if isinstance(exc, DatabaseUnavailable):
        return False
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, OSError | EOFError)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
