"""Route a request to its map."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping

from sockmapd.backends import Databases
from sockmapd.config import Config
from sockmapd.lookup.maps import MapLookup, answered
from sockmapd.lookup.recorder import DatabaseRecorder
from sockmapd.protocol import Reply, Request


class Router:
    """All maps of one loaded config."""

    def __init__(self, maps: Mapping[str, MapLookup]) -> None:
        # The maps by name, for reading: a connection finds each request's map here
        # (a dict lookup, not a call, on every request).
        self.maps: Mapping[str, MapLookup] = dict(maps)

    @property
    def map_names(self) -> list[str]:
        """Return the configured map names."""
        return list(self.maps)

    def answer(self, request: Request) -> Awaitable[Reply]:
        """Return the reply for one request; an unknown map is TEMP, as a config error."""
        lookup = self.maps.get(request.map_name)
        if lookup is None:
            return answered(unknown_map(request.map_name))
        # The map's own coroutine, not one more frame around it.
        return lookup.lookup(request.key)

    def clear_caches(self) -> int:
        """Forget every map's cached answers and return how many there were."""
        return sum(lookup.clear_cache() for lookup in self.maps.values())

    def cache_counts(self) -> Iterator[tuple[str, int, int, int]]:
        """Yield (map, hits, misses, entries) for every map that has a cache."""
        for name, lookup in self.maps.items():
            cache = lookup.cache
            if cache is not None:
                yield name, cache.hits, cache.misses, len(cache)


def unknown_map(map_name: str) -> Reply:
    """Return the answer to a request for a map that is not configured (TEMP)."""
    # The name comes from the client: cap what of it is echoed back.
    name = map_name[:64]
    return Reply.temp(f"unknown map {name!r}, check the sockmapd configuration")


def build_router(
    config: Config,
    databases: Databases,
    recorders: Callable[[str], DatabaseRecorder] | None = None,
) -> Router:
    """Build every map's statement once; recorders(database) records that database's queries."""
    return Router(
        {
            name: MapLookup(
                name,
                map_config,
                databases[map_config.database].engine,
                config.databases[map_config.database],
                recorder=None if recorders is None else recorders(map_config.database),
                pool=databases[map_config.database].pool,
            )
            for name, map_config in config.maps.items()
        }
    )
