"""DriverPool: reuse, limits, fair hand-over, bounded waits, retirement and disposal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sockmapd.backends.errors import (
    ConnectionLost,
    DatabaseError,
    DatabaseUnavailable,
    PoolClosed,
    PoolExhausted,
    QueryFailed,
    QueryTimeout,
)
from sockmapd.backends.pool import DriverPool, Lease

# Enough loop iterations for every task started by a test step to reach its next
# real wait (the fake connect yields once; hand-overs take a couple of steps).
SETTLE = 50


class FakeConn:
    """A connection that remembers how it ended."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.aborted = False
        self.closed = False
        self.stopped = False
        # What the next fetch on this connection raises, as the real driver would.
        self.fails_with: BaseException | None = None
        # How long each query on it takes.
        self.query_time = 0.0

    @property
    def ended(self) -> bool:
        return self.aborted or self.closed or self.stopped

    def __repr__(self) -> str:
        return f"FakeConn({self.number})"


class FakeDriver:
    """The Driver protocol over FakeConn; abort is synchronous, as asyncpg's and asyncmy's are.

    Like the real drivers, fetch raises only translated errors, and a timeout is
    an OSError subclass that must not be taken for a lost connection.
    """

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    async def fetch(
        self, conn: Any, sql: str, args: tuple[str, ...], query_timeout: float
    ) -> list[tuple[str]]:
        self.timeouts.append(query_timeout)
        await asyncio.sleep(conn.query_time)
        failure, conn.fails_with = conn.fails_with, None
        if failure is not None:
            raise self.translate(failure) from failure
        return [(sql,)]

    async def close(self, conn: Any) -> None:
        conn.closed = True

    def abort(self, conn: Any) -> None:
        conn.aborted = True

    def stop(self, conn: Any) -> Coroutine[Any, Any, None]:
        conn.stopped = True
        return asyncio.sleep(0)

    def translate(self, exc: BaseException) -> DatabaseError:
        if isinstance(exc, DatabaseError):
            # Already what a real driver's translate() would return (a hint, say).
            return exc
        if isinstance(exc, TimeoutError):
            return QueryTimeout("timed out")
        if isinstance(exc, ConnectionResetError):
            return ConnectionLost("reset")
        return QueryFailed(str(exc))


class Connector:
    """Opens FakeConns; can be told to fail or to hold a connect until released."""

    def __init__(self) -> None:
        self.opened: list[FakeConn] = []
        self.failures: list[BaseException] = []
        self.gate: asyncio.Event | None = None
        self.calls = 0

    async def __call__(self) -> FakeConn:
        self.calls += 1
        # A real connect always yields to the loop at least once.
        await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        conn = FakeConn(len(self.opened))
        self.opened.append(conn)
        return conn

    def live(self) -> list[FakeConn]:
        return [conn for conn in self.opened if not conn.ended]


class Clock:
    """A monotonic clock that moves on by one second each time it is read."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def later(seconds: float = 60.0) -> float:
    """Return a deadline seconds from now on the running loop's clock."""
    return asyncio.get_running_loop().time() + seconds


def make_pool(
    *,
    size: int = 2,
    overflow: int = 0,
    recycle: float = 1e9,
    connector: Connector | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[DriverPool, Connector]:
    connector = connector or Connector()
    pool = DriverPool(
        "main",
        FakeDriver(),
        connector,
        size=size,
        overflow=overflow,
        recycle=recycle,
        clock=clock or Clock(),
    )
    return pool, connector


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


async def settle() -> None:
    for _ in range(SETTLE):
        await asyncio.sleep(0)


async def acquire_all(pool: DriverPool, count: int) -> list[Lease]:
    """Acquire count connections, each of which must be free now (no one is released)."""
    tasks = [asyncio.create_task(pool.acquire(later())) for _ in range(count)]
    await settle()
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    assert not pending, f"{len(pending)} of {count} acquires had to wait"
    return [task.result() for task in tasks]


def test_an_idle_connection_is_reused() -> None:
    async def scenario() -> None:
        pool, connector = make_pool()
        lease = await pool.acquire(later())
        pool.release(lease)
        again = await pool.acquire(later())
        assert again.conn is lease.conn
        assert connector.calls == 1
        assert pool.in_use == 1
        pool.release(again)
        assert pool.in_use == 0
        assert not lease.conn.ended

    run(scenario)


def test_opens_up_to_size_plus_overflow() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=2, overflow=1)
        leases = await acquire_all(pool, 3)
        assert len({id(lease.conn) for lease in leases}) == 3
        assert connector.calls == 3
        assert pool.in_use == 3
        assert pool.size == 2
        assert pool.overflow == 1

    run(scenario)


def test_one_more_acquire_waits_for_the_first_connection_released() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=2, overflow=1)
        leases = await acquire_all(pool, 3)
        waiting = asyncio.create_task(pool.acquire(later()))
        await settle()
        assert not waiting.done()
        assert connector.calls == 3
        pool.release(leases[1])
        got = await waiting
        assert got.conn is leases[1].conn
        assert pool.in_use == 3
        assert connector.calls == 3

    run(scenario)


def test_waiters_are_served_in_arrival_order() -> None:
    async def scenario() -> None:
        pool, _ = make_pool(size=1)
        held = await pool.acquire(later())
        served: list[int] = []

        async def client(number: int) -> None:
            lease = await pool.acquire(later())
            served.append(number)
            # Yield before giving it back, so that the others keep waiting meanwhile.
            await asyncio.sleep(0)
            pool.release(lease)

        tasks = []
        for number in range(8):
            tasks.append(asyncio.create_task(client(number)))
            await settle()
        pool.release(held)
        # A newcomer after the release does not overtake the waiters.
        tasks.append(asyncio.create_task(client(8)))
        await asyncio.gather(*tasks)
        assert served == list(range(9))
        assert pool.in_use == 0

    run(scenario)


def test_a_released_connection_goes_to_the_waiter_not_to_a_newcomer() -> None:
    async def scenario() -> None:
        pool, _ = make_pool(size=1)
        held = await pool.acquire(later())
        waiter = asyncio.create_task(pool.acquire(later()))
        await settle()
        pool.release(held)
        newcomer = asyncio.create_task(pool.acquire(later()))
        await settle()
        assert waiter.done()
        assert waiter.result().conn is held.conn
        assert not newcomer.done()
        newcomer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await newcomer

    run(scenario)


def test_no_connection_by_the_deadline_is_pool_timeout() -> None:
    async def scenario() -> None:
        pool, _ = make_pool(size=1)
        held = await pool.acquire(later())
        with pytest.raises(PoolExhausted) as caught:
            await pool.acquire(later(0.001))
        # TIMEOUT means a slow query; a busy pool is TEMP.
        assert not isinstance(caught.value, TimeoutError)
        assert pool.in_use == 1
        pool.release(held)
        again = await pool.acquire(later())
        assert again.conn is held.conn

    run(scenario)


def test_each_waiter_is_refused_at_its_own_deadline_in_any_order() -> None:
    async def scenario() -> None:
        pool, _ = make_pool(size=1)
        held = await pool.acquire(later())
        # A late deadline first, then two earlier ones (a retry keeps its lookup's
        # older deadline): each is refused when its own time is up, not before.
        patient = asyncio.create_task(pool.acquire(later(5.0)))
        await settle()
        second = asyncio.create_task(pool.acquire(later(0.06)))
        await settle()
        first = asyncio.create_task(pool.acquire(later(0.02)))
        await asyncio.wait({first}, timeout=2.0)
        with pytest.raises(PoolExhausted, match="no connection free within query_timeout"):
            first.result()
        assert not second.done()
        assert not patient.done()
        assert pool.waiting == 2
        await asyncio.wait({second}, timeout=2.0)
        with pytest.raises(PoolExhausted):
            second.result()
        assert not patient.done()
        assert pool.waiting == 1
        # The one left is served when the connection comes back.
        pool.release(held)
        lease = await asyncio.wait_for(patient, 2.0)
        assert lease.conn is held.conn
        assert pool.waiting == 0

    run(scenario)


def test_a_cancelled_waiter_leaks_neither_slot_nor_connection() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1, overflow=1)
        leases = await acquire_all(pool, 2)
        waiters = [asyncio.create_task(pool.acquire(later())) for _ in range(3)]
        await settle()
        waiters[1].cancel()
        await settle()
        assert waiters[1].cancelled()
        for lease in leases:
            pool.release(lease)
        await settle()
        # The two left got the two connections; the cancelled one none.
        assert waiters[0].done()
        assert waiters[2].done()
        for waiter in (waiters[0], waiters[2]):
            pool.release(waiter.result())
        assert pool.in_use == 0
        again = await acquire_all(pool, 2)
        assert pool.in_use == 2
        assert len(connector.live()) == 2
        for lease in again:
            pool.release(lease)

    run(scenario)


def test_a_waiter_cancelled_after_being_handed_a_connection_gives_it_back() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1)
        held = await pool.acquire(later())
        waiter = asyncio.create_task(pool.acquire(later()))
        await settle()
        pool.release(held)
        # The connection is handed over, but the waiter has not run yet.
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.in_use == 0
        again = await acquire_all(pool, 1)
        assert again[0].conn is held.conn
        assert connector.calls == 1

    run(scenario)


def test_a_waiter_cancelled_after_being_handed_a_slot_gives_it_back() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1)
        held = await pool.acquire(later())
        waiter = asyncio.create_task(pool.acquire(later()))
        await settle()
        # A broken connection leaves a free slot: the waiter may open one.
        pool.release(held, QueryTimeout("slow"))
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.in_use == 0
        assert pool.overflow == 0
        again = await acquire_all(pool, 1)
        assert not again[0].conn.ended
        assert connector.live() == [again[0].conn]

    run(scenario)


def test_a_failed_connect_passes_its_slot_to_the_next_waiter() -> None:
    async def scenario() -> None:
        connector = Connector()
        connector.gate = asyncio.Event()
        connector.failures.append(OSError("connection refused"))
        pool, _ = make_pool(size=1, connector=connector)
        first = asyncio.create_task(pool.acquire(later()))
        await settle()
        second = asyncio.create_task(pool.acquire(later()))
        await settle()
        assert not first.done()
        assert not second.done()
        connector.gate.set()
        with pytest.raises(DatabaseUnavailable, match="connection refused"):
            await first
        lease = await second
        assert connector.calls == 2
        assert connector.live() == [lease.conn]
        assert pool.in_use == 1

    run(scenario)


def test_a_lost_connection_retires_the_ones_opened_before_it() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=3)
        old, older_busy, lost = await acquire_all(pool, 3)
        pool.release(old)
        pool.release(lost, ConnectionLost("reset"))
        assert lost.conn.aborted
        # The idle one opened before it is not handed out again: a fresh one is opened.
        fresh = await pool.acquire(later())
        assert old.conn.aborted
        assert fresh.conn not in (old.conn, older_busy.conn, lost.conn)
        # A busy one opened before it is closed when it comes back.
        pool.release(older_busy)
        assert older_busy.conn.aborted
        # A connection opened after the loss is kept.
        pool.release(fresh)
        assert not fresh.conn.ended
        assert (await pool.acquire(later())).conn is fresh.conn
        assert connector.live() == [fresh.conn]

    run(scenario)


def test_a_lost_connection_retires_the_ones_opened_after_it_too() -> None:
    # After a database restart every connection open at that moment is dead,
    # whichever one a lookup happens to find lost first.
    async def scenario() -> None:
        pool, connector = make_pool(size=3)
        lost, younger_idle, younger_busy = await acquire_all(pool, 3)
        pool.release(younger_idle)
        pool.release(lost, ConnectionLost("reset"))
        assert lost.conn.aborted
        fresh = await pool.acquire(later())
        assert younger_idle.conn.aborted
        assert fresh.conn not in (lost.conn, younger_idle.conn, younger_busy.conn)
        pool.release(younger_busy)
        assert younger_busy.conn.aborted
        assert connector.live() == [fresh.conn]

    run(scenario)


def test_a_broken_connection_is_closed_alone() -> None:
    # Left in the middle of a query (a timeout): the database itself is fine.
    async def scenario() -> None:
        pool, connector = make_pool(size=3)
        old, broken, young = await acquire_all(pool, 3)
        pool.release(old)
        pool.release(broken, QueryTimeout("slow"))
        pool.release(young)
        assert broken.conn.stopped
        assert not broken.conn.aborted
        assert not old.conn.ended
        assert not young.conn.ended
        again = await acquire_all(pool, 3)
        assert {id(lease.conn) for lease in again} >= {id(old.conn), id(young.conn)}
        assert connector.calls == 4

    run(scenario)


def test_a_connection_older_than_recycle_is_replaced() -> None:
    async def scenario() -> None:
        clock = Clock()
        pool, connector = make_pool(size=2, recycle=100.0, clock=clock)
        idle, busy = await acquire_all(pool, 2)
        pool.release(idle)
        clock.now += 1000.0
        fresh = await pool.acquire(later())
        assert idle.conn.aborted
        assert fresh.conn is not idle.conn
        pool.release(busy)
        assert busy.conn.aborted
        pool.release(fresh)
        assert not fresh.conn.ended
        assert connector.live() == [fresh.conn]

    run(scenario)


def test_overflow_connections_close_when_nobody_waits() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1, overflow=2)
        leases = await acquire_all(pool, 3)
        assert pool.overflow == 2
        pool.release(leases[0])
        pool.release(leases[1])
        assert pool.overflow == 0
        assert leases[0].conn.ended
        assert leases[1].conn.ended
        pool.release(leases[2])
        assert not leases[2].conn.ended
        assert connector.live() == [leases[2].conn]
        assert pool.in_use == 0

    run(scenario)


def test_an_overflow_connection_goes_to_a_waiter_first() -> None:
    async def scenario() -> None:
        pool, _ = make_pool(size=1, overflow=1)
        leases = await acquire_all(pool, 2)
        waiter = asyncio.create_task(pool.acquire(later()))
        await settle()
        pool.release(leases[1])
        got = await waiter
        assert got.conn is leases[1].conn
        assert not got.conn.ended
        assert pool.overflow == 1

    run(scenario)


def test_dispose_closes_idle_connections_now_and_busy_ones_when_released() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=3)
        idle, other_idle, busy = await acquire_all(pool, 3)
        pool.release(idle)
        pool.release(other_idle)
        await pool.dispose()
        assert idle.conn.ended
        assert other_idle.conn.ended
        assert not busy.conn.ended
        with pytest.raises(PoolClosed):
            await pool.acquire(later())
        pool.release(busy)
        assert busy.conn.ended
        assert pool.in_use == 0
        assert connector.live() == []

    run(scenario)


def test_dispose_fails_the_waiters() -> None:
    async def scenario() -> None:
        pool, _ = make_pool(size=1)
        held = await pool.acquire(later())
        waiters = [asyncio.create_task(pool.acquire(later())) for _ in range(3)]
        await settle()
        await pool.dispose()
        for waiter in waiters:
            with pytest.raises(PoolClosed):
                await waiter
        pool.release(held)
        assert held.conn.ended
        assert pool.in_use == 0

    run(scenario)


def test_a_connect_that_finishes_after_dispose_is_closed() -> None:
    async def scenario() -> None:
        connector = Connector()
        connector.gate = asyncio.Event()
        pool, _ = make_pool(size=1, connector=connector)
        opening = asyncio.create_task(pool.acquire(later()))
        await settle()
        await pool.dispose()
        connector.gate.set()
        with pytest.raises(PoolClosed):
            await opening
        await settle()
        assert connector.opened
        assert connector.live() == []
        assert pool.in_use == 0

    run(scenario)


def test_drain_closes_idle_connections_now_and_keeps_serving_without_keeping() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=3)
        idle, other_idle, busy = await acquire_all(pool, 3)
        pool.release(idle)
        pool.release(other_idle)
        pool.drain()
        assert idle.conn.ended
        assert other_idle.conn.ended
        assert connector.live() == [busy.conn]
        # A lookup that started before the reload still gets a connection...
        late = await pool.acquire(later())
        assert len(connector.live()) == 2
        # ...and no connection stays once its lookup is done.
        pool.release(late)
        pool.release(busy)
        assert connector.live() == []
        assert pool.in_use == 0
        await pool.dispose()

    run(scenario)


def test_a_draining_pool_hands_a_returned_connection_to_its_waiter() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1)
        held = await pool.acquire(later())
        waiter = asyncio.create_task(pool.acquire(later()))
        await settle()
        assert pool.waiting == 1
        assert pool.exhausted
        pool.drain()
        pool.release(held)
        lease = await waiter
        assert lease.conn is held.conn
        assert pool.waiting == 0
        pool.release(lease)
        assert connector.live() == []
        assert not pool.exhausted

    run(scenario)


def test_limit_is_size_plus_overflow() -> None:
    pool, _ = make_pool(size=2, overflow=3)
    assert pool.limit == 5


# Property-based: random interleavings of acquires, releases (plain, broken, lost),
# cancellations, failed connects and clock jumps keep the books straight.

OPERATIONS = st.lists(
    st.one_of(
        # Acquires weigh more, so that waiters (and the races around them) occur often.
        st.just(("acquire", 0)),
        st.just(("acquire", 0)),
        st.just(("acquire", 0)),
        st.tuples(st.just("release"), st.integers(0, 7)),
        st.tuples(st.just("break"), st.integers(0, 7)),
        st.tuples(st.just("lose"), st.integers(0, 7)),
        st.tuples(st.just("cancel"), st.integers(0, 7)),
        # Give one back and cancel the waiter it goes to before that waiter runs.
        st.tuples(st.just("hand_and_cancel"), st.integers(0, 7)),
        st.just(("fail_next_connect", 0)),
        st.just(("age", 0)),
    ),
    max_size=40,
)


@example(size=1, overflow=0, operations=[("acquire", 0), ("acquire", 0), ("hand_and_cancel", 0)])
@example(size=1, overflow=0, operations=[("acquire", 0), ("acquire", 0), ("hand_and_cancel", 1)])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 3), overflow=st.integers(0, 2), operations=OPERATIONS)
def test_random_use_keeps_the_pool_consistent(
    size: int, overflow: int, operations: list[tuple[str, int]]
) -> None:
    limit = size + overflow

    async def scenario() -> None:
        clock = Clock()
        pool, connector = make_pool(size=size, overflow=overflow, recycle=10_000.0, clock=clock)
        pending: list[asyncio.Task[Lease]] = []
        held: list[Lease] = []

        async def step() -> None:
            await settle()
            for task in list(pending):
                if not task.done():
                    continue
                pending.remove(task)
                if task.cancelled() or task.exception() is not None:
                    continue
                held.append(task.result())
            check()

        def check() -> None:
            assert pool.in_use == len(held)
            assert pool.in_use <= limit
            assert 0 <= pool.overflow <= overflow
            assert len(connector.live()) <= limit
            # A connection is never handed to two holders, and never closed while held.
            conns = [lease.conn for lease in held]
            assert len({id(conn) for conn in conns}) == len(conns)
            assert not any(conn.ended for conn in conns)
            # Once settled, nobody waits while a connection could be given or opened.
            if pending:
                assert len(held) == limit

        for name, index in operations:
            if name == "acquire":
                pending.append(asyncio.create_task(pool.acquire(later())))
            elif name in ("release", "break", "lose") and held:
                lease = held.pop(index % len(held))
                failure: DatabaseError | None = None
                if name == "break":
                    failure = QueryTimeout("slow")
                elif name == "lose":
                    failure = ConnectionLost("reset")
                pool.release(lease, failure)
            elif name == "cancel" and pending:
                pending[index % len(pending)].cancel()
            elif name == "hand_and_cancel" and held and pending:
                pool.release(
                    held.pop(index % len(held)), QueryTimeout("slow") if index % 2 else None
                )
                for task in pending:
                    task.cancel()
            elif name == "fail_next_connect":
                connector.failures.append(OSError("refused"))
            elif name == "age":
                clock.now += 20_000.0
            await step()

        # Every waiter is served once the holders let go: nothing is stuck.
        while held or pending:
            while held:
                pool.release(held.pop())
            await step()
            if not held:
                assert not pending, "waiters left with nothing held"
        assert pool.in_use == 0
        connector.failures.clear()
        # No slot leaked: the full size + overflow can be acquired at once.
        leases = await acquire_all(pool, limit)
        assert len({id(lease.conn) for lease in leases}) == limit
        assert len(connector.live()) == limit
        for lease in leases:
            pool.release(lease)
        await pool.dispose()
        await settle()
        assert connector.live() == []

    run(scenario)


def test_a_query_timeout_replaces_only_its_own_connection() -> None:
    # TimeoutError is an OSError: once it was taken for a lost connection and
    # retired the whole pool on every slow query.
    async def scenario() -> None:
        pool, connector = make_pool(size=3)
        leases = await acquire_all(pool, 3)
        for lease in leases:
            pool.release(lease)
        conns = [lease.conn for lease in leases]
        conns[-1].fails_with = TimeoutError()  # the next fetch takes the last released
        with pytest.raises(QueryTimeout):
            await pool.fetch("SELECT 1", (), later())
        assert conns[-1].stopped
        assert not any(conn.ended for conn in conns[:-1])
        # The other connections serve the next lookups; one new one replaces the stopped.
        again = await acquire_all(pool, 3)
        assert {id(lease.conn) for lease in again} >= {id(conn) for conn in conns[:-1]}
        assert connector.calls == 4

    run(scenario)


def test_a_query_error_keeps_the_connection() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1)
        lease = (await acquire_all(pool, 1))[0]
        pool.release(lease)
        lease.conn.fails_with = ValueError("no such table")
        with pytest.raises(QueryFailed):
            await pool.fetch("SELECT 1", (), later())
        assert not lease.conn.ended
        assert await pool.fetch("SELECT 2", (), later()) == [("SELECT 2",)]
        assert connector.calls == 1

    run(scenario)


def test_a_lost_connection_in_fetch_retires_the_pool() -> None:
    async def scenario() -> None:
        pool, _connector = make_pool(size=2)
        leases = await acquire_all(pool, 2)
        for lease in leases:
            pool.release(lease)
        leases[-1].conn.fails_with = ConnectionResetError()
        with pytest.raises(ConnectionLost):
            await pool.fetch("SELECT 1", (), later())
        assert leases[-1].conn.aborted
        fresh = await acquire_all(pool, 2)
        assert not {id(lease.conn) for lease in fresh} & {id(lease.conn) for lease in leases}

    run(scenario)


def test_a_cancelled_fetch_stops_its_query() -> None:
    async def scenario() -> None:
        pool, _connector = make_pool(size=1)
        gate = asyncio.Event()
        lease = (await acquire_all(pool, 1))[0]
        pool.release(lease)

        async def hang(conn: Any, sql: str, args: tuple[str, ...], limit: float) -> Any:
            await gate.wait()

        pool.driver.fetch = hang  # type: ignore[method-assign]
        task = asyncio.create_task(pool.fetch("SELECT 1", (), later()))
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert lease.conn.stopped
        assert pool.in_use == 0

    run(scenario)


HINT = "set pgbouncer = true in [databases.main]"


def test_a_hint_is_logged_once_per_pool_whatever_fails(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        connector = Connector()
        connector.failures += [
            DatabaseUnavailable("no usable host", hint=HINT),
            DatabaseUnavailable("no usable host", hint=HINT),
        ]
        pool, _ = make_pool(size=1, connector=connector)
        for _ in range(2):
            with pytest.raises(DatabaseUnavailable):
                await pool.fetch("SELECT 1", (), later())
        for _ in range(3):
            lease = await pool.acquire(later())
            pool.release(lease)
            lease.conn.fails_with = QueryFailed("prepared statement missing", hint=HINT)
            with pytest.raises(QueryFailed):
                await pool.fetch("SELECT 1", (), later())
        # The failures themselves still say only what they are: TEMP for each lookup.
        assert connector.calls == 3

    with caplog.at_level("WARNING", logger="sockmapd.backends.pool"):
        run(scenario)
    hinted = [r.getMessage() for r in caplog.records if HINT in r.getMessage()]
    assert hinted == [f"database main: {HINT}"]


def test_no_hint_no_log(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        pool, _ = make_pool(size=1)
        lease = await pool.acquire(later())
        pool.release(lease)
        lease.conn.fails_with = ValueError("no such table")
        with pytest.raises(QueryFailed):
            await pool.fetch("SELECT 1", (), later())

    with caplog.at_level("WARNING", logger="sockmapd.backends.pool"):
        run(scenario)
    assert caplog.records == []


def test_the_wait_and_the_query_share_the_deadline() -> None:
    async def scenario() -> None:
        pool, _ = make_pool(size=1)
        driver = cast(FakeDriver, pool.driver)
        held = await pool.acquire(later())
        fetching = asyncio.create_task(pool.fetch("SELECT 1", (), later(10.0)))
        await settle()
        pool.release(held)
        assert await fetching == [("SELECT 1",)]
        # The query got what the wait left of the ten seconds, not ten more.
        assert 0 < driver.timeouts[-1] < 10.0

    run(scenario)


def test_no_time_left_after_connecting_runs_no_query_and_keeps_the_connection() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1)
        driver = cast(FakeDriver, pool.driver)
        with pytest.raises(PoolExhausted, match="no time left for a query within query_timeout"):
            await pool.fetch("SELECT 1", (), later(-1.0))
        assert driver.timeouts == []
        (conn,) = connector.opened
        assert not conn.ended  # nothing ran on it: it is not stopped
        assert pool.in_use == 0
        # It went back idle: the next lookup takes it without connecting.
        assert (await pool.acquire(later())).conn is conn
        assert len(connector.opened) == 1

    run(scenario)


def test_opening_a_connection_does_not_eat_the_query_time() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1)
        driver = cast(FakeDriver, pool.driver)
        connector.gate = asyncio.Event()
        # Failing over to a second host may take longer than query_timeout itself.
        fetching = asyncio.create_task(pool.fetch("SELECT 1", (), later(0.5)))
        await asyncio.sleep(0.6)
        connector.gate.set()
        assert await fetching == [("SELECT 1",)]
        assert 0 < driver.timeouts[-1] <= 0.5
        # Only the first lookup on it: reused, the connection brings no extra time.
        assert await pool.fetch("SELECT 2", (), later(0.5)) == [("SELECT 2",)]
        assert 0 < driver.timeouts[-1] <= 0.5

    run(scenario)


async def learn_query_time(pool: DriverPool, seconds: float) -> None:
    """Have the pool's one connection take seconds per query, and run one."""
    lease = await pool.acquire(later())
    lease.conn.query_time = seconds
    pool.release(lease)
    await pool.fetch("SELECT 1", (), later())


def test_the_pool_learns_how_long_a_query_takes() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1)
        assert pool.query_time == 0.0
        lease = await pool.acquire(later())
        lease.conn.query_time = 0.05
        pool.release(lease)
        await pool.fetch("SELECT 1", (), later())
        first = pool.query_time
        assert first >= 0.04
        # A moving average: one quick query moves it a tenth of the way.
        connector.opened[0].query_time = 0.0
        await pool.fetch("SELECT 1", (), later())
        assert 0.8 * first <= pool.query_time < first

    run(scenario)


def test_a_lookup_the_queue_cannot_serve_in_time_is_refused_at_once() -> None:
    async def scenario() -> None:
        pool, _ = make_pool(size=1)
        driver = cast(FakeDriver, pool.driver)
        await learn_query_time(pool, 0.05)
        held = await pool.acquire(later())
        queued = [asyncio.create_task(pool.fetch("SELECT 2", (), later())) for _ in range(3)]
        await settle()
        ran = len(driver.timeouts)
        # Three lookups ahead on one connection: about four queries' time before
        # its own, more than the 0.1 s it has. It is told so without waiting.
        with pytest.raises(PoolExhausted, match="3 lookups wait for a connection"):
            await pool.fetch("SELECT 3", (), later(0.1))
        assert pool.waiting == 3
        assert len(driver.timeouts) == ran
        # With time enough it queues behind them.
        patient = asyncio.create_task(pool.fetch("SELECT 4", (), later(10.0)))
        pool.release(held)
        assert await asyncio.gather(*queued, patient) == [[("SELECT 2",)]] * 3 + [[("SELECT 4",)]]

    run(scenario)


def test_a_connection_got_too_late_for_a_query_runs_none() -> None:
    async def scenario() -> None:
        pool, connector = make_pool(size=1)
        driver = cast(FakeDriver, pool.driver)
        await learn_query_time(pool, 0.05)
        held = await pool.acquire(later())
        # Admitted: nothing ahead, two queries' time fits in 0.2 s.
        waiting = asyncio.create_task(pool.fetch("SELECT 2", (), later(0.2)))
        await asyncio.sleep(0.18)
        ran = len(driver.timeouts)
        pool.release(held)
        # The connection came with less time left than a query takes.
        with pytest.raises(PoolExhausted, match="no time left for a query"):
            await waiting
        assert len(driver.timeouts) == ran
        (conn,) = connector.opened
        assert not conn.ended  # no query was cut on it: it stays
        assert pool.in_use == 0

    run(scenario)
