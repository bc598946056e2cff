"""A bounded, per-map cache of found and not-found answers, with stale-if-error."""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable

from sockmapd.protocol import NOTFOUND_FRAME, Reply, Status, decode_frame

# An entry is the time it was stored (a double) followed by the reply's frame, as
# it goes on the wire: a hit is answered without encoding, and an entry costs one
# object besides its key.
_STAMP = struct.Struct("=d")
_STAMP_SIZE = _STAMP.size
_NOTFOUND_ENTRY_SIZE = _STAMP_SIZE + len(NOTFOUND_FRAME)


def _is_notfound(entry: bytes) -> bool:
    return len(entry) == _NOTFOUND_ENTRY_SIZE and entry.endswith(NOTFOUND_FRAME)


class ReplyCache:
    """LRU cache of OK and NOTFOUND replies by key, kept as frames; failures are never stored."""

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
        self._entries: OrderedDict[str, bytes] = OrderedDict()
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

    def get(self, key: str, *, count_miss: bool = True) -> bytes | None:
        """Return the reply frame stored for key while it is fresh, else None; O(1).

        count_miss=False is for a first look that is followed by the real lookup
        on a miss, so that one request counts one miss.
        """
        entry = self._entries.get(key)
        if entry is None:
            if count_miss:
                self.misses += 1
            return None
        age = self._clock() - _STAMP.unpack_from(entry)[0]
        # _is_notfound(entry), written out: this is every cache hit.
        if len(entry) != _NOTFOUND_ENTRY_SIZE or not entry.endswith(NOTFOUND_FRAME):
            if age < self._ttl:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[_STAMP_SIZE:]
            if age >= self._keep:
                del self._entries[key]
            if count_miss:
                self.misses += 1
            return None
        if age < self._negative_ttl:
            self._entries.move_to_end(key)
            self.hits += 1
            return NOTFOUND_FRAME
        del self._entries[key]
        if count_miss:
            self.misses += 1
        return None

    def get_stale(self, key: str) -> Reply | None:
        """Return a found reply stored less than stale_ttl ago, else None; never a NOTFOUND."""
        entry = self._entries.get(key)
        if entry is None or _is_notfound(entry):
            return None
        if self._clock() - _STAMP.unpack_from(entry)[0] >= self._keep:
            del self._entries[key]
            return None
        return decode_frame(entry[_STAMP_SIZE:])

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
        # One bytes object per entry: when it was stored, then the frame to send.
        self._entries[key] = _STAMP.pack(self._clock()) + reply.frame()
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def clear(self) -> int:
        """Forget every entry and return how many there were."""
        count = len(self._entries)
        self._entries.clear()
        self._generation += 1
        return count
