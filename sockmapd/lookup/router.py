"""Route a request to its map and run the map's query."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from sockmapd.backends import DatabaseError, Engines
from sockmapd.config import Config, MapConfig
from sockmapd.lookup.answers import format_rows
from sockmapd.lookup.statements import KEY_PARAM, build_statement
from sockmapd.protocol import Reply, Request

log = logging.getLogger(__name__)


class MapLookup:
    """One configured map: its prepared statement and the engine it runs on."""

    __slots__ = ("_engine", "_statement", "_unavailable", "database", "name")

    def __init__(self, name: str, config: MapConfig, engine: AsyncEngine) -> None:
        self.name = name
        self.database = config.database
        self._engine = engine
        self._statement = build_statement(config)
        self._unavailable = Reply.temp(f"database {config.database} unavailable, try again later")

    async def lookup(self, key: str) -> Reply:
        """Return the reply for key; any database failure is TEMP, never NOTFOUND."""
        try:
            async with self._engine.connect() as conn:
                result = await conn.execute(self._statement, {KEY_PARAM: key})
                rows = result.all()
        except DatabaseError as exc:
            log.warning("map %s: database %s failed: %s", self.name, self.database, _one_line(exc))
            return self._unavailable
        return format_rows(rows)


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
            name: MapLookup(name, map_config, engines[map_config.database])
            for name, map_config in config.maps.items()
        }
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
