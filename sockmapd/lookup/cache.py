"""A bounded, per-map cache of found and not-found answers, with stale-if-error."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from sockmapd.protocol import Reply, Status


class ReplyCache:
    """LRU cache of OK and NOTFOUND replies by key; failures are never stored."""

    __slots__ = (
        "_clock",
        "_entries",
        "_generation",
        "_keep",
        "_max_size",
        "_negative_ttl",
        "_ttl",
        "hits",
        "misses",
    )

    def __init__(
        self,
        *,
        ttl: float,
        negative_ttl: float,
        stale_ttl: float = 0.0,
        max_size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        # An OK entry is kept past its ttl only to be served if the database fails.
        self._keep = max(ttl, stale_ttl)
        self._max_size = max_size
        self._clock = clock
        # Insertion order is recency order: the first entry is the least recently used.
        self._entries: OrderedDict[str, tuple[Reply, float]] = OrderedDict()
        self._generation = 0
        # Plain ints, read by the metrics collector at scrape time: free when unscraped.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def generation(self) -> int:
        """Return a number that changes at every clear()."""
        return self._generation

    def get(self, key: str, *, count_miss: bool = True) -> Reply | None:
        """Return the reply stored for key while it is fresh, else None; O(1).

        count_miss=False is for a first look that is followed by the real lookup
        on a miss, so that one request counts one miss.
        """
        entry = self._entries.get(key)
        if entry is None:
            if count_miss:
                self.misses += 1
            return None
        reply, stored = entry
        age = self._clock() - stored
        if reply.status is Status.OK:
            if age < self._ttl:
                self._entries.move_to_end(key)
                self.hits += 1
                return reply
            if age >= self._keep:
                del self._entries[key]
            if count_miss:
                self.misses += 1
            return None
        if age < self._negative_ttl:
            self._entries.move_to_end(key)
            self.hits += 1
            return reply
        del self._entries[key]
        if count_miss:
            self.misses += 1
        return None

    def get_stale(self, key: str) -> Reply | None:
        """Return a found reply stored less than stale_ttl ago, else None; never a NOTFOUND."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        reply, stored = entry
        if reply.status is not Status.OK:
            return None
        if self._clock() - stored >= self._keep:
            del self._entries[key]
            return None
        return reply

    def put(self, key: str, reply: Reply, generation: int | None = None) -> None:
        """Store an OK or NOTFOUND reply; anything else is ignored; O(1).

        A reply looked up before the last clear() (generation given and no longer
        current) is dropped, so that a clear is never undone by a query in flight.
        """
        if generation is not None and generation != self._generation:
            return
        status = reply.status
        if status is Status.OK:
            ttl = self._ttl
        elif status is Status.NOTFOUND:
            ttl = self._negative_ttl
        else:
            # TEMP, TIMEOUT and PERM say nothing about the key: never reused.
            return
        if ttl <= 0:
            # The database's newest answer replaces what was stored, even when it
            # is not cached itself: a key now not found must not be served stale.
            self._entries.pop(key, None)
            return
        self._entries[key] = (reply, self._clock())
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def clear(self) -> int:
        """Forget every entry and return how many there were."""
        count = len(self._entries)
        self._entries.clear()
        self._generation += 1
        return count
