"""Single-flight: concurrent lookups of one key share the first one's query."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVarTuple

from sockmapd.protocol import Reply

Args = TypeVarTuple("Args")


class SingleFlight:
    """Runs one computation per key at a time; callers that arrive meanwhile wait for it.

    No task per lookup: the first caller runs the computation in its own task. If
    it is cancelled (its request timed out, or shutdown), the waiting callers are
    woken and each asks again, as the new leader or behind one.

    A key with no follower costs a dict entry and an empty list: a follower makes
    its own future, so that giving up (a cancel) touches nobody else's wait.
    """

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        # The futures of the callers waiting for the key's computation.
        self._flights: dict[str, list[asyncio.Future[Reply | None]]] = {}

    @property
    def running(self) -> int:
        """Return how many keys are being computed now."""
        return len(self._flights)

    async def run(
        self, key: str, compute: Callable[[*Args], Awaitable[Reply]], *args: *Args
    ) -> Reply:
        """Return compute(*args)'s reply for key, computed once for all concurrent callers."""
        flights = self._flights
        while (followers := flights.get(key)) is not None:
            wait: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
            followers.append(wait)
            shared = await wait
            if shared is not None:
                return shared
        # The leader computes in its own frame: every frame of an await chain is
        # walked again at each suspension of the query below it.
        mine: list[asyncio.Future[Reply | None]] = []
        flights[key] = mine
        reply: Reply | None = None
        try:
            reply = await compute(*args)
            return reply
        finally:
            if flights.get(key) is mine:
                del flights[key]
            # None (the leader gave up) sends each follower round again.
            for wait in mine:
                if not wait.done():
                    wait.set_result(reply)
