"""Single-flight: concurrent lookups of one key share the first one's query."""

from __future__ import annotations

import asyncio

from sockmapd.protocol import Reply


class SingleFlight:
    """One computation per key at a time; callers that arrive meanwhile wait for it.

    No task and no frame of its own: the caller that leads a key computes in its
    own coroutine and lands the flight when done (in a ``finally``); others follow.
    If the leader gives up (cancelled: its request timed out, or shutdown), it
    lands with None, and each follower asks again, as the new leader or behind one.
    A key with no follower costs a dict entry and an empty list: a follower makes
    its own future, so that giving up (a cancel) touches nobody else's wait.

        while (followers := flights.lead(key)) is None:
            shared = await flights.follow(key)
            if shared is not None:
                return shared
        reply = None
        try:
            reply = await compute()
            return reply
        finally:
            flights.land(key, followers, reply)
    """

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        # The futures of the callers waiting for the key's computation.
        self._flights: dict[str, list[asyncio.Future[Reply | None]]] = {}

    @property
    def running(self) -> int:
        """Return how many keys are being computed now."""
        return len(self._flights)

    def lead(self, key: str) -> list[asyncio.Future[Reply | None]] | None:
        """Make the caller the key's leader and return its followers; None if one leads."""
        flights = self._flights
        if key in flights:
            return None
        followers: list[asyncio.Future[Reply | None]] = []
        flights[key] = followers
        return followers

    async def follow(self, key: str) -> Reply | None:
        """Wait for the leader of key: its reply, or None if it gave up (ask again)."""
        wait: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self._flights[key].append(wait)
        return await wait

    def land(
        self, key: str, followers: list[asyncio.Future[Reply | None]], reply: Reply | None
    ) -> None:
        """End the leader's flight: every follower gets reply (None: it gave up)."""
        if self._flights.get(key) is followers:
            del self._flights[key]
        for wait in followers:
            if not wait.done():
                wait.set_result(reply)
