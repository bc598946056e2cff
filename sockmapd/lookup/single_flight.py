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
        flights = self._flights
        while (flight := flights.get(key)) is not None:
            # Shielded: a follower that gives up must not cancel the others' wait.
            shared = await asyncio.shield(flight)
            if shared is not None:
                return shared
        # The leader computes in its own frame: every frame of an await chain is
        # walked again at each suspension of the query below it.
        lead: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        flights[key] = lead
        reply: Reply | None = None
        try:
            reply = await compute()
            return reply
        finally:
            if flights.get(key) is lead:
                del flights[key]
            lead.set_result(reply)
