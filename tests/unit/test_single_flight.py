"""SingleFlight: one computation per key at a time, and a cancelled leader hands over."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from sockmapd.lookup.single_flight import SingleFlight
from sockmapd.protocol import Reply


async def run(flights: SingleFlight, key: str, compute: Callable[[], Awaitable[Reply]]) -> Reply:
    """Compute key as a map does: lead it, or follow its leader."""
    while key in flights:
        shared = await flights.follow(key)
        if shared is not None:
            return shared
    followers: list[asyncio.Future[Reply | None]] = []
    flights[key] = followers
    reply: Reply | None = None
    try:
        reply = await compute()
        return reply
    finally:
        del flights[key]
        if followers:
            flights.land(followers, reply)


def test_concurrent_callers_share_one_computation() -> None:
    async def main() -> None:
        flights = SingleFlight()
        gate = asyncio.Event()
        calls = 0

        async def compute() -> Reply:
            nonlocal calls
            calls += 1
            await gate.wait()
            return Reply.ok("v")

        tasks = [asyncio.create_task(run(flights, "k", compute)) for _ in range(5)]
        await asyncio.sleep(0)
        assert flights.running == 1
        gate.set()
        assert await asyncio.gather(*tasks) == [Reply.ok("v")] * 5
        assert calls == 1
        assert flights.running == 0
        # Once landed, the next caller computes again.
        assert await run(flights, "k", compute) == Reply.ok("v")
        assert calls == 2

    asyncio.run(main())


def test_different_keys_do_not_wait_for_each_other() -> None:
    async def main() -> None:
        flights = SingleFlight()
        gate = asyncio.Event()

        async def slow() -> Reply:
            await gate.wait()
            return Reply.ok("slow")

        async def fast() -> Reply:
            return Reply.ok("fast")

        waiting = asyncio.create_task(run(flights, "a", slow))
        await asyncio.sleep(0)
        assert await run(flights, "b", fast) == Reply.ok("fast")
        gate.set()
        assert await waiting == Reply.ok("slow")

    asyncio.run(main())


def test_a_cancelled_leader_lets_a_follower_ask_again() -> None:
    async def main() -> None:
        flights = SingleFlight()
        first_gate = asyncio.Event()
        calls = 0

        async def compute() -> Reply:
            nonlocal calls
            calls += 1
            if calls == 1:
                await first_gate.wait()
            return Reply.ok(f"call {calls}")

        leader = asyncio.create_task(run(flights, "k", compute))
        await asyncio.sleep(0)
        follower = asyncio.create_task(run(flights, "k", compute))
        await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert await follower == Reply.ok("call 2")
        assert flights.running == 0

    asyncio.run(main())


def test_a_follower_that_gives_up_leaves_the_others_waiting() -> None:
    async def main() -> None:
        flights = SingleFlight()
        gate = asyncio.Event()

        async def compute() -> Reply:
            await gate.wait()
            return Reply.ok("v")

        leader = asyncio.create_task(run(flights, "k", compute))
        await asyncio.sleep(0)
        quitter = asyncio.create_task(run(flights, "k", compute))
        stayer = asyncio.create_task(run(flights, "k", compute))
        await asyncio.sleep(0)
        quitter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        gate.set()
        assert await leader == Reply.ok("v")
        assert await stayer == Reply.ok("v")
        assert flights.running == 0

    asyncio.run(main())
