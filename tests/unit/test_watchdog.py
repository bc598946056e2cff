"""The query watchdog: one timer for every query of a pool, and asyncio.timeout's semantics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from sockmapd.backends.errors import DatabaseError, QueryFailed, QueryTimeout
from sockmapd.backends.watchdog import Watchdog


def translate(exc: BaseException) -> DatabaseError:
    return QueryFailed(str(exc))


async def query(watchdog: Watchdog, seconds: float, work: Callable[[], Awaitable[str]]) -> str:
    """Run work as a driver runs a query under the watchdog."""
    with watchdog.watch(seconds):
        return await work()


def forever() -> Awaitable[str]:
    async def work() -> str:
        await asyncio.Event().wait()
        return "never"

    return work()


def test_one_timer_serves_every_running_query() -> None:
    async def scenario() -> None:
        watchdog = Watchdog("cut", translate)
        loop = asyncio.get_running_loop()
        first = asyncio.create_task(query(watchdog, 30.0, forever))
        await asyncio.sleep(0)
        armed = watchdog.armed_for
        assert armed is not None
        assert armed == pytest.approx(loop.time() + 30.0, abs=0.5)
        # A query that ends later does not move the timer.
        later = asyncio.create_task(query(watchdog, 60.0, forever))
        await asyncio.sleep(0)
        assert watchdog.armed_for == armed
        # One that ends sooner does.
        sooner = asyncio.create_task(query(watchdog, 10.0, forever))
        await asyncio.sleep(0)
        sooner_at = watchdog.armed_for
        assert sooner_at is not None
        assert sooner_at < armed
        assert watchdog.running == 3
        for task in (first, later, sooner):
            task.cancel()
        await asyncio.gather(first, later, sooner, return_exceptions=True)
        assert watchdog.running == 0

    asyncio.run(scenario())


def test_only_the_query_past_its_time_is_cut() -> None:
    async def scenario() -> None:
        watchdog = Watchdog("the query was cut", translate)
        gate = asyncio.Event()

        async def gated() -> str:
            await gate.wait()
            return "answer"

        slow = asyncio.create_task(query(watchdog, 0.02, forever))
        patient = asyncio.create_task(query(watchdog, 30.0, gated))
        with pytest.raises(QueryTimeout, match="the query was cut"):
            await slow
        # The other query runs on, and the timer is set again for its end.
        assert not patient.done()
        assert watchdog.running == 1
        assert watchdog.armed_for is not None
        gate.set()
        assert await patient == "answer"
        assert watchdog.running == 0

    asyncio.run(scenario())


def test_a_query_in_time_leaves_the_task_uncancelled() -> None:
    async def scenario() -> None:
        watchdog = Watchdog("cut", translate)

        async def quick() -> str:
            return "answer"

        assert await query(watchdog, 0.01, quick) == "answer"
        # The timer still fires for that query's end, finds nothing due and stops.
        await asyncio.sleep(0.03)
        assert watchdog.armed_for is None
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

    asyncio.run(scenario())


def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def scenario() -> None:
        watchdog = Watchdog("cut", translate)
        task = asyncio.create_task(query(watchdog, 30.0, forever))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert watchdog.running == 0

    asyncio.run(scenario())


def test_a_cancel_from_outside_after_the_cut_stays_a_cancel() -> None:
    async def scenario() -> None:
        watchdog = Watchdog("cut", translate)
        outside: asyncio.Task[str] | None = None

        async def cancelled_meanwhile() -> str:
            try:
                await asyncio.Event().wait()
            finally:
                # Shutdown cancels the task too, while the cut is being delivered.
                assert outside is not None
                outside.cancel()
            return "never"

        outside = asyncio.create_task(query(watchdog, 0.01, cancelled_meanwhile))
        with pytest.raises(asyncio.CancelledError):
            await outside

    asyncio.run(scenario())


def test_a_cut_the_driver_turns_into_its_own_error_is_still_a_timeout() -> None:
    async def scenario() -> None:
        watchdog = Watchdog("cut", translate)

        async def converts() -> str:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise RuntimeError("lost connection while reading") from None
            return "never"

        with pytest.raises(QueryTimeout):
            await query(watchdog, 0.01, converts)
        # Its cancel was taken back: the task goes on awaiting.
        await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

    asyncio.run(scenario())


def test_a_driver_error_is_translated() -> None:
    async def scenario() -> None:
        watchdog = Watchdog("cut", translate)

        async def fails() -> str:
            raise ValueError("no such table")

        with pytest.raises(QueryFailed, match="no such table"):
            await query(watchdog, 30.0, fails)
        assert watchdog.running == 0

    asyncio.run(scenario())


def test_a_watchdog_moves_to_a_new_loop_when_its_old_one_closed() -> None:
    watchdog = Watchdog("cut", translate)

    async def pending_on_old_loop() -> None:
        task = asyncio.create_task(query(watchdog, 30.0, forever))
        await asyncio.sleep(0)
        assert watchdog.armed_for is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def cut_on_new_loop() -> None:
        with pytest.raises(QueryTimeout):
            await query(watchdog, 0.01, forever)
        assert watchdog.running == 0

    asyncio.run(pending_on_old_loop())
    # The timer of the closed loop is forgotten: the new loop's query is still cut.
    asyncio.run(cut_on_new_loop())
