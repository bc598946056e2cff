"""Single-flight: concurrent lookups of one key share the first one's query."""

from __future__ import annotations

import asyncio

from sockmapd.protocol import Reply


class SingleFlight(dict[str, list["asyncio.Future[Reply | None]"]]):
    """One computation per key at a time; callers that arrive meanwhile wait for it.

    The keys being computed, each with the futures of the callers waiting for it.
    No task and no frame of its own, and no call at all for a key nobody follows:
    the caller that leads a key computes in its own coroutine and, when done (in a
    ``finally``), takes its key out and lands the flight if anyone follows. If the
    leader gives up (cancelled: its request timed out, or shutdown), it lands with
    None, and each follower asks again, as the new leader or behind one. A key
    with no follower costs a dict entry and an empty list: a follower makes its
    own future, so that giving up (a cancel) touches nobody else's wait.

        while key in flights:
            shared = await flights.follow(key)
            if shared is not None:
                return shared
        flights[key] = followers = []
        reply = None
        try:
            reply = await compute()
            return reply
        finally:
            # Only the leader takes its key out, and nothing awaits between its
            # check above and its entry: the entry is the leader's own.
            del flights[key]
            if followers:
                flights.land(followers, reply)
    """

    __slots__ = ()

    @property
    def running(self) -> int:
        """Return how many keys are being computed now."""
        return len(self)

    async def follow(self, key: str) -> Reply | None:
        """Wait for the leader of key: its reply, or None if it gave up (ask again)."""
        wait: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self[key].append(wait)
        return await wait

    @staticmethod
    def land(followers: list[asyncio.Future[Reply | None]], reply: Reply | None) -> None:
        """End a flight the leader took out: every follower gets reply (None: it gave up)."""
        for wait in followers:
            if not wait.done():
                wait.set_result(reply)
