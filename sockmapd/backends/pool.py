"""A small, fair pool of raw driver connections for the lookup path.

Lookups wait in arrival order: a connection given back goes straight to the
longest waiter, so under load no client connection is starved by luckier ones.
Each lookup has one deadline for its wait and its queries (its query_timeout; the
time spent opening a connection comes on top, bounded by connect_timeout per host),
so an overloaded database turns into TEMP and TIMEOUT answers within that time
instead of an unbounded queue. The pool keeps a moving average of how long a
query takes: a lookup whose place in the queue cannot be reached in its time is
refused at once, and one that got its connection too late to run a query runs
none, so that under overload the lookups that can be served are, the rest are
answered TEMP early, and the database does not run queries that will be cut.

What happens to a connection after a lookup depends only on the type of the
error its driver translated (sockmapd.backends.errors): a query error leaves it
as it was; a query that timed out or was cancelled is stopped on the server and
only that connection is replaced; a lost connection also retires every
connection open at that moment (after a database restart they are all dead,
and finding that out one lookup at a time would fail lookups one at a time). A
connection that outlived `recycle` seconds is closed, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sockmapd.backends.drivers import Driver, Rows
from sockmapd.backends.errors import (
    ConnectionLost,
    DatabaseError,
    DatabaseUnavailable,
    PoolClosed,
    PoolExhausted,
    QueryFailed,
)

log = logging.getLogger(__name__)

# The weight of the newest query in the moving average of query times.
_SMOOTHING = 0.1
# The loop's clock resolution (uvloop: a millisecond): a waiter due within it is due.
_RESOLUTION = 0.001


class Lease:
    """One checked-out connection; give it back with DriverPool.release."""

    __slots__ = ("born", "conn", "handed", "opening")

    def __init__(self, conn: Any, born: float, opening: float = 0.0) -> None:
        self.conn = conn
        self.born = born
        # Seconds spent opening it, until its first lookup takes them off its deadline.
        self.opening = opening
        # When it was handed to a waiting lookup (the loop's clock), 0 otherwise.
        self.handed = 0.0


class DriverPool:
    """Up to size + overflow connections of one database, handed out first come, first served."""

    def __init__(
        self,
        name: str,
        driver: Driver,
        connect: Callable[[], Awaitable[Any]],
        *,
        size: int,
        overflow: int,
        recycle: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.driver = driver
        self._connect = connect
        self._size = size
        self._limit = size + overflow
        self._recycle = recycle
        self._clock = clock
        self._idle: deque[Lease] = deque()
        # Lookups waiting for a connection, first come first served, each with its
        # deadline (the loop's clock). A waiter's future gets a Lease, or None: "a
        # slot is yours, open a connection"; or PoolExhausted when its time is up.
        self._waiters: deque[tuple[asyncio.Future[Lease | None], float]] = deque()
        # One loop timer for every waiter, armed for the earliest deadline among
        # them, instead of a timeout (a timer and a context manager) per wait.
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = math.inf
        # Connections open, being opened, or reserved for a waiter to open.
        self._open = 0
        self._in_use = 0
        self._retired_before = float("-inf")
        self._closing: set[asyncio.Future[None]] = set()
        self._closed = False
        self._draining = False
        # A hint (the option a database behind PgBouncer needs) is logged once per pool.
        self._hinted = False
        # The event loop the lookups run on, once one has run.
        self._loop: asyncio.AbstractEventLoop | None = None
        # How long a lookup holds a connection here (seconds, a moving average of
        # answered ones, from the hand-over of the connection to its return; 0 until
        # one answered): what a lookup needs left of its time to be worth running,
        # and how fast the queue for connections moves.
        self._query_time = 0.0

    @property
    def size(self) -> int:
        """Return the number of connections kept open when idle (pool_size)."""
        return self._size

    @property
    def in_use(self) -> int:
        """Return how many connections are checked out now."""
        return self._in_use

    @property
    def overflow(self) -> int:
        """Return how many connections are open beyond size now."""
        return max(0, self._open - self._size)

    @property
    def limit(self) -> int:
        """Return the most connections this pool opens at once (pool_size + max_overflow)."""
        return self._limit

    @property
    def waiting(self) -> int:
        """Return how many lookups wait for a connection now."""
        return sum(1 for waiter, _ in self._waiters if not waiter.done())

    @property
    def query_time(self) -> float:
        """Return the moving average of a lookup's hold on a connection, in seconds.

        From the hand-over (or the start of its query) to the connection's return,
        over answered queries; 0 before the first.
        """
        return self._query_time

    @property
    def exhausted(self) -> bool:
        """Return True when every connection the pool may open is checked out."""
        return self._in_use >= self._limit

    async def fetch(self, sql: str, args: tuple[str, ...], deadline: float) -> Rows:
        """Run sql with args on a pooled connection by deadline (the loop's clock).

        The wait for a connection and the query share the time left; raise only
        DatabaseError (or a cancel).
        """
        # An idle connection is taken without a coroutine of its own.
        lease = self._take_idle()
        if lease is None:
            lease = await self.acquire(deadline)
            # Opening a connection (failing over between hosts, each with its own
            # connect_timeout) does not eat the query's time: the deadline moves by
            # it. Only a connection from acquire() may be new: an idle one's first
            # lookup is over.
            deadline += lease.opening
            lease.opening = 0.0
        loop = self._loop
        if loop is None or loop.is_closed():
            # Looked up once: asking for the running loop asks the OS for the
            # process id (Python 3.11), and this is every lookup.
            loop = self._loop = asyncio.get_running_loop()
        started = loop.time()
        left = deadline - started
        if left <= self._query_time:
            # The wait took the time: a query started now would most likely be cut,
            # costing the database a query and a reconnect for nothing.
            self.release(lease)
            raise PoolExhausted(
                f"database {self.name}: no time left for a query within query_timeout"
            )
        try:
            rows = await self.driver.fetch(lease.conn, sql, args, left)
        except BaseException as exc:
            self.release(lease, exc)
            raise
        # Timed from the hand-over when it waited: the waiter's wake-up is part of
        # what a connection takes per lookup, and of how fast the queue moves.
        took = loop.time() - (lease.handed or started)
        average = self._query_time
        self._query_time = took if not average else average + (took - average) * _SMOOTHING
        self.release(lease)
        return rows

    async def acquire(self, deadline: float) -> Lease:
        """Return a connection, waiting until deadline at most (the loop's clock).

        Raise PoolExhausted, PoolClosed or DatabaseUnavailable.
        """
        lease = self._take_idle()
        if lease is not None:
            return lease
        if self._closed:
            raise PoolClosed(f"database {self.name}: the pool is closed")
        if self._open < self._limit:
            self._open += 1
            return await self._open_reserved()
        return await self._wait(deadline)

    def _take_idle(self) -> Lease | None:
        """Return an idle connection checked out, or None; closes the stale ones met."""
        idle = self._idle
        while idle:
            lease = idle.pop()
            # Usable: opened after the last retirement and younger than recycle.
            if lease.born > self._retired_before and self._clock() - lease.born < self._recycle:
                self._in_use += 1
                return lease
            self._discard(lease)
        return None

    def release(self, lease: Lease, failure: BaseException | None = None) -> None:
        """Give a connection back after a lookup that ended with failure (None: it answered)."""
        self._in_use -= 1
        lease.handed = 0.0
        if failure is not None:
            if isinstance(failure, DatabaseError) and failure.hint is not None:
                self._hint(failure.hint)
            if not (isinstance(failure, QueryFailed) and failure.reusable):
                if isinstance(failure, ConnectionLost):
                    # After a database restart or failover every connection open at
                    # this moment is dead, younger ones than this too: retiring only
                    # those opened before it would leave the next lookup (and its one
                    # retry) to find the rest dead one at a time.
                    self._retired_before = max(self._retired_before, self._clock())
                    self._discard(lease)
                else:
                    # A timeout, a cancel or the unknown may have left the connection
                    # in the middle of a query: the query is stopped on the server and
                    # this connection replaced. It says nothing about the others.
                    self._open -= 1
                    self._close_later(self.driver.stop(lease.conn))
                self._pass_slot()
                return
        if (
            self._closed
            or lease.born <= self._retired_before
            or self._clock() - lease.born >= self._recycle
        ):
            # Closed, retired or older than recycle: not used again.
            self._discard(lease)
            self._pass_slot()
            return
        if self._waiters and self._hand_over(lease):
            return
        if self._draining or self._open > self._size:
            # An overflow connection nobody waits for, or a replaced pool: do not keep it.
            self._discard(lease)
            return
        self._idle.append(lease)

    def drain(self) -> None:
        """Close every idle connection now and every busy one when it comes back.

        For a pool that a reload replaced: lookups that started before the reload
        may still take a connection from it, but it keeps none.
        """
        self._draining = True
        while self._idle:
            self._discard(self._idle.pop())

    async def dispose(self) -> None:
        """Close every idle connection now and every busy one when it comes back."""
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop())
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        while self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed(f"database {self.name}: the pool is closed"))
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=2.0)

    def _hint(self, hint: str) -> None:
        """Log, once, the configuration change that would prevent this pool's failures."""
        if not self._hinted:
            self._hinted = True
            log.warning("database %s: %s", self.name, hint)

    async def _open_reserved(self) -> Lease:
        """Open a connection in a slot already counted in _open."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            conn = await self._connect()
        except BaseException as exc:
            self._open -= 1
            self._pass_slot()
            if isinstance(exc, DatabaseError) and exc.hint is not None:
                self._hint(exc.hint)
            if isinstance(exc, Exception) and not isinstance(exc, DatabaseError):
                raise DatabaseUnavailable(f"database {self.name}: {exc}") from exc
            raise
        if self._closed:
            self._open -= 1
            self._close_later(self.driver.close(conn))
            raise PoolClosed(f"database {self.name}: the pool is closed")
        self._in_use += 1
        return Lease(conn, self._clock(), loop.time() - began)

    async def _wait(self, deadline: float) -> Lease:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
            self._expiry = None
            self._expiry_at = math.inf
        query_time = self._query_time
        if query_time:
            # Every connection frees up about once per query_time, so the queue
            # ahead moves by `limit` lookups each time. A lookup that cannot be
            # served within its time is told so now, not when its time is up.
            ahead = len(self._waiters)
            expected = (ahead // self._limit + 2) * query_time
            if loop.time() + expected > deadline:
                raise PoolExhausted(
                    f"database {self.name}: {ahead} lookups wait for a connection; "
                    f"this one would not be served within query_timeout "
                    f"(pool_size={self._size}, max_overflow={self._limit - self._size})"
                )
        waiter: asyncio.Future[Lease | None] = loop.create_future()
        entry = (waiter, deadline)
        self._waiters.append(entry)
        if deadline < self._expiry_at:
            self._arm_expiry(loop, deadline)
        try:
            lease = await waiter
        except PoolExhausted:
            raise  # its time was up (_expire): already out of the queue
        except BaseException:
            self._give_back(entry)
            raise
        if lease is None:
            return await self._open_reserved()
        self._in_use += 1
        return lease

    def _arm_expiry(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_at = at
        self._expiry = loop.call_at(at, self._expire)

    def _expire(self) -> None:
        """The timer: tell the waiters whose time is up; re-arm for the next deadline."""
        self._expiry = None
        self._expiry_at = math.inf
        loop = self._loop
        assert loop is not None
        # The loop's clock moves in milliseconds (uvloop): a deadline within one is
        # due now, or the timer would be set again for a moment already here.
        now = loop.time() + _RESOLUTION
        waiting: deque[tuple[asyncio.Future[Lease | None], float]] = deque()
        following = math.inf
        for entry in self._waiters:
            waiter, due = entry
            if waiter.done():
                continue
            if due <= now:
                waiter.set_exception(
                    PoolExhausted(
                        f"database {self.name}: no connection free within query_timeout "
                        f"(pool_size={self._size}, max_overflow={self._limit - self._size})"
                    )
                )
            else:
                waiting.append(entry)
                following = min(following, due)
        self._waiters = waiting
        if following < math.inf:
            self._arm_expiry(loop, following)

    def _give_back(self, entry: tuple[asyncio.Future[Lease | None], float]) -> None:
        """Undo a wait that ended without using what it was handed."""
        waiter = entry[0]
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
            return
        if waiter.cancelled() or waiter.exception() is not None:
            return
        handed = waiter.result()
        if handed is None:
            self._open -= 1
            self._pass_slot()
        else:
            # Counted as in use by release().
            self._in_use += 1
            self.release(handed)

    def _hand_over(self, item: Lease | None) -> bool:
        waiters = self._waiters
        while waiters:
            waiter, _ = waiters.popleft()
            if not waiter.done():
                if item is not None:
                    item.handed = waiter.get_loop().time()
                waiter.set_result(item)
                return True
        return False

    def _pass_slot(self) -> None:
        """A connection closed: let the longest waiter open one in its place."""
        if self._closed or self._open >= self._limit:
            return
        self._open += 1
        if not self._hand_over(None):
            self._open -= 1

    def _discard(self, lease: Lease) -> None:
        self._open -= 1
        closing = self.driver.abort(lease.conn)
        if closing is not None:
            self._close_later(closing)

    def _close_later(self, closing: Awaitable[None]) -> None:
        task = asyncio.ensure_future(closing)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
