"""One map: its key policy, its answer cache with single-flight, and its query."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from sockmapd.backends.pool import DriverPool
from sockmapd.config import DatabaseConfig, MapConfig
from sockmapd.lookup.cache import ReplyCache
from sockmapd.lookup.policy import KeyPolicy
from sockmapd.lookup.query import MapQuery
from sockmapd.lookup.recorder import DatabaseRecorder
from sockmapd.lookup.single_flight import SingleFlight
from sockmapd.protocol import NOTFOUND_FRAME, NOTFOUND_REPLY, Reply, Status, decode_frame

log = logging.getLogger(__name__)

_INTERNAL_ERROR = Reply.temp("internal error, try again later")


async def answered(reply: Reply) -> Reply:
    """Return reply as an awaitable, for an answer known without waiting."""
    return reply


class MapLookup:
    """One configured map, with everything that can be prepared prepared at load."""

    __slots__ = (
        "_cache",
        "_flights",
        "_loop",
        "_plain",
        "_policy",
        "_query",
        "_searches",
        "_serve_stale",
        "_timeout",
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
        recorder: DatabaseRecorder | None = None,
        pool: DriverPool | None = None,
    ) -> None:
        self.name = name
        self.database = config.database
        self._policy = KeyPolicy(config)
        # No transform, no filter: the key asked for is the key looked up.
        self._plain = not config.key_transform and not self._policy.filters
        # With search entries the keys queried are derived from the key; without,
        # the key itself is queried.
        self._searches = self._policy.searches
        self._query = MapQuery(name, config, engine, database, recorder=recorder, pool=pool)
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
        self._timeout = self._query.timeout
        # The event loop the lookups run on, once one has run.
        self._loop: asyncio.AbstractEventLoop | None = None
        # A second request for a key being looked up waits for the first one's query.
        self._flights = SingleFlight()

    def answer_now(self, key: str) -> bytes | None:
        """Return the reply's frame if known without the database (cached, filtered), else None.

        For answering in the event loop's callback, with no task switch; a None
        is followed by lookup(key), which counts the cache miss.
        """
        cache = self._cache
        if not self._plain:
            policy = self._policy
            try:
                key = policy.transform(key)
            except Exception:
                return None  # lookup() reports it
            if policy.filters and not policy.queried(key):
                return NOTFOUND_FRAME
        return None if cache is None else cache.get(key, count_miss=False)

    def lookup(self, key: str) -> Awaitable[Reply]:
        """Return the reply for key; any database failure is TEMP or TIMEOUT, never NOTFOUND.

        A plain function returning the awaitable: a frame fewer in the chain that
        every suspension of the query walks.
        """
        if not self._plain:
            policy = self._policy
            key = policy.transform(key)
            if policy.filters and not policy.queried(key):
                # Postfix's `domain` setting: only user@listed-domain keys are queried.
                return answered(NOTFOUND_REPLY)
        cache = self._cache
        if cache is not None:
            cached = cache.get(key)
            if cached is not None:
                return answered(decode_frame(cached))
        return self._resolve(key)

    def clear_cache(self) -> int:
        """Forget every cached answer of this map and return how many there were."""
        return 0 if self._cache is None else self._cache.clear()

    @property
    def cache(self) -> ReplyCache | None:
        """Return this map's answer cache, or None when it caches nothing."""
        return self._cache

    @property
    def running(self) -> int:
        """Return how many keys of this map are being looked up now."""
        return self._flights.running

    async def _resolve(self, key: str) -> Reply:
        """Look key up once for every concurrent caller, in one coroutine frame.

        Every frame of an await chain is walked again at each suspension of the
        query below it, so single-flight's bookkeeping lives here, not in a frame
        of its own around the query.
        """
        flights = self._flights
        while key in flights:
            shared = await flights.follow(key)
            if shared is not None:
                return shared
        cache = self._cache
        generation = 0 if cache is None else cache.generation
        query = self._query
        reply: Reply | None = None
        # Leading the key from here: nothing between this and the finally below can fail.
        followers: list[asyncio.Future[Reply | None]] = []
        flights[key] = followers
        try:
            try:
                # One deadline for the whole lookup: its waits, its queries and a retry
                # share query_timeout, so that an overloaded database answers in that time.
                loop = self._loop
                if loop is None or loop.is_closed():
                    # Looked up once: asking for the running loop asks the OS for
                    # the process id (Python 3.11), and this is every lookup.
                    loop = self._loop = asyncio.get_running_loop()
                deadline = loop.time() + self._timeout
                if not self._searches:
                    found = await query.fetch(key, deadline)
                else:
                    found = NOTFOUND_REPLY
                    for candidate in self._policy.candidates(key):
                        found = await query.fetch(candidate, deadline)
                        # The first answer that is not "not found" ends the search. A TEMP
                        # or TIMEOUT must not fall through to a wider key: the narrower key
                        # might exist, and a catch-all answer in its place could misroute mail.
                        if found.status is not Status.NOTFOUND:
                            break
            except Exception:
                # Nobody may be waiting any more: log here, or the error is lost.
                log.exception("map %s: lookup failed unexpectedly", self.name)
                found = _INTERNAL_ERROR
            reply = found if cache is None else self._remember(cache, key, found, generation)
            return reply
        finally:
            # The entry is this lookup's own (see SingleFlight); a lookup nobody
            # followed lands without a call. None (cancelled) sends every
            # follower round again.
            del flights[key]
            if followers:
                flights.land(followers, reply)

    def _remember(self, cache: ReplyCache, key: str, reply: Reply, generation: int) -> Reply:
        """Cache a found or not-found reply; for a database failure, a stale answer if kept."""
        status = reply.status
        query = self._query
        if status is Status.OK or status is Status.NOTFOUND:
            cache.put(key, reply, generation)
        elif self._serve_stale and (reply is query.unavailable or reply is query.timed_out):
            # Only a database failure may fall back to an older answer; a result
            # over expansion_limit is the truth about the data, not an outage.
            stale = cache.get_stale(key)
            if stale is not None:
                log.info("map %s: database failed, serving a cached answer", self.name)
                return stale
        return reply
