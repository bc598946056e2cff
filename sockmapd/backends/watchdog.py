"""Query timeouts for drivers without their own: one loop timer for all of a pool's queries.

asyncmy and aiosqlite take no per-query timeout, so the query's task is cancelled
when its time is up, as asyncio.timeout would. A loop timer per query costs more
than the rest of the driver call (a uvloop TimerHandle is made, scheduled and
cancelled for every lookup); the queries of one pool are at most pool_size +
max_overflow at a time, so one timer serves them all: it is armed for the earliest
end among the queries running, and moved only when a query that must end sooner
starts. A query that ends in time only leaves the set; the timer that finds
nothing due re-arms for the next end, if any.

The semantics are asyncio.timeout's: when a query's time is up its task is
cancelled, and the CancelledError this caused leaves the driver as a
QueryTimeout; a cancel from anywhere else stays a cancel.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from sockmapd.backends.errors import DatabaseError, QueryTimeout

_RESOLUTION = 0.001


class Watch:
    """One query being watched: its task, when it must end, and whether it was cut.

    Made by Watchdog.watch(), watched from that moment; a context manager around the
    query: ``with watchdog.watch(seconds): rows = await ...``. It leaves as what the
    watchdog says the query's end means (its answer, a QueryTimeout, a translated
    error, a cancel), and leaves the watchdog's running set itself, so that a query
    that ends in time makes no call into the watchdog.
    """

    __slots__ = ("cancelling", "due", "expired", "running", "task", "watchdog")

    watchdog: Watchdog
    # The watchdog's set of queries running, which this one leaves at its end.
    running: set[Watch]
    task: asyncio.Task[object]
    due: float
    # Cancels already asked of the task, so that ours is told apart from theirs.
    cancelling: int
    expired: bool

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        self.running.discard(self)
        if exc is None:
            if self.expired:
                # Its answer came with the cancel, which the driver took in: the task
                # is not left counting a cancel that nobody will see.
                self.task.uncancel()
            return
        error = self.watchdog.failed(self, exc)
        if error is not None:
            raise error from exc


# A Watch is made without an __init__: a class called from the interpreter runs its
# __init__ in a frame of its own on 3.11, which costs more than the rest of the setup.
_new_watch = object.__new__


class Watchdog:
    """Cancels the task of a query that runs past its time; one timer for every query."""

    __slots__ = ("_at", "_loop", "_running", "_timeout", "_timer", "_translate")

    def __init__(self, timeout: str, translate: Callable[[BaseException], DatabaseError]) -> None:
        # What a cut query says happened ("... was interrupted", "... was stopped").
        self._timeout = timeout
        self._translate = translate
        self._running: set[Watch] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> int:
        """Return how many queries are being watched now."""
        return len(self._running)

    @property
    def armed_for(self) -> float | None:
        """Return when the timer fires next (the loop's clock), or None when it is not set."""
        return None if self._timer is None else self._at

    def watch(self, seconds: float) -> Watch:
        """Watch the current task's query, which must end within seconds."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._attach()
        task = asyncio.current_task(loop)
        assert task is not None
        watch: Watch = _new_watch(Watch)
        watch.watchdog = self
        watch.running = running = self._running
        watch.task = task
        watch.due = due = loop.time() + seconds
        watch.cancelling = task.cancelling()
        watch.expired = False
        running.add(watch)
        if due < self._at:
            self._arm(due)
        return watch

    def failed(self, watch: Watch, exc: BaseException) -> DatabaseError | None:
        """Watch's query ended with exc: return what to raise in its place, None to raise exc.

        Past its time, whatever the driver made of the cancel is a QueryTimeout,
        unless the task was also cancelled from elsewhere: that cancel goes on.
        """
        if watch.expired and watch.task.uncancel() <= watch.cancelling:
            return QueryTimeout(self._timeout)
        if isinstance(exc, Exception):
            return self._translate(exc)
        return None

    def _attach(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, kept for the queries to come; forget a closed loop's timer.

        Looked up once: asking for the running loop asks the OS for the process
        id (Python 3.11), and this would be every query.
        """
        loop = self._loop = asyncio.get_running_loop()
        self._timer = None
        self._at = math.inf
        return loop

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._at = math.inf
        assert self._loop is not None
        # The loop's clock moves in milliseconds (uvloop): a query due within one
        # is due now, or the timer would be set again for a moment already here.
        now = self._loop.time() + _RESOLUTION
        following = math.inf
        for watch in self._running:
            if watch.expired:
                continue
            if watch.due <= now:
                watch.expired = True
                watch.task.cancel()
            elif watch.due < following:
                following = watch.due
        if following < math.inf:
            self._arm(following)
