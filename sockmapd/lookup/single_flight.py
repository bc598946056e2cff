"""Single-flight: concurrent lookups of one key share the first one's query."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sockmapd.protocol import Reply


class SingleFlight:
    """Runs one computation per key at a time; callers that arrive meanwhile wait for it.

    No task per lookup: the first caller runs the computation in its own task. If
    it is cancelled (its request timed out, or shutdown), the waiting callers are
    woken and each asks again, as the new leader or behind one.
    """

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[Reply | None]] = {}

    @property
    def running(self) -> int:
        """Return how many keys are being computed now."""
        return len(self._flights)

    async def run(self, key: str, compute: Callable[[], Awaitable[Reply]]) -> Reply:
        """Return compute()'s reply for key, computed once for all concurrent callers."""
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, compute)
            # Shielded: a follower that gives up must not cancel the others' wait.
            reply = await asyncio.shield(flight)
            if reply is not None:
                return reply

    async def _lead(self, key: str, compute: Callable[[], Awaitable[Reply]]) -> Reply:
        flight: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        reply: Reply | None = None
        try:
            reply = await compute()
            return reply
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.set_result(reply)
