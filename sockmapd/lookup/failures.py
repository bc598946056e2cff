"""Failure logs that inform without flooding.

The first failure per (database, cause) is logged at once. Repeats within the
next `window` seconds are only counted; when the window has ended, one summary
line gives their number and the last message. The summary is written at the
next failure logged after the window (of any key) or at `flush()`, so nothing
is hidden. No timer and no sleep: the clock is a parameter, and the tests
drive it by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 10.0


@dataclass
class _Window:
    started: float
    level: int
    repeats: int = 0
    last: str = ""


class FailureLog:
    """Log failures of one process, at most one line per key and window plus a summary."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._window = window
        self._clock = clock
        self._open: dict[tuple[str, str], _Window] = {}

    def failed(
        self,
        database: str,
        cause: str,
        msg: str,
        *args: object,
        level: int = logging.WARNING,
    ) -> None:
        """Log msg % args at once if it is the first of its key in the window, else count it."""
        now = self._clock()
        self._close_ended(now)
        key = (database, cause)
        window = self._open.get(key)
        if window is None:
            self._open[key] = _Window(started=now, level=level)
            self._logger.log(level, msg, *args)
            return
        window.repeats += 1
        window.level = max(window.level, level)
        window.last = msg % args if args else msg

    def flush(self) -> None:
        """Write the summary of every window with repeats (at shutdown)."""
        now = self._clock()
        for key, window in list(self._open.items()):
            self._summarise(key, window, now)
        self._open.clear()

    def _close_ended(self, now: float) -> None:
        for key, window in list(self._open.items()):
            if now - window.started >= self._window:
                del self._open[key]
                self._summarise(key, window, now)

    def _summarise(self, key: tuple[str, str], window: _Window, now: float) -> None:
        if not window.repeats:
            return
        seconds = min(now - window.started, self._window)
        self._logger.log(
            window.level,
            "database %s: %s more like this in the last %g s (%s); last: %s",
            key[0],
            f"{window.repeats:,}",
            round(seconds, 1),
            key[1],
            window.last,
        )
