"""Which database host to try next: in order or shuffled, skipping recently failed hosts."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Generic, Literal, TypeVar

H = TypeVar("H")


class HostList(Generic[H]):
    """The hosts of one database and when each may be tried again after a failure.

    A failed host is skipped for retry_interval, unless every host has failed:
    then all are tried again, because a database that may be back is better than
    a certain TEMP.
    """

    __slots__ = ("_clock", "_hosts", "_order", "_retry_interval", "_shuffle", "_skip_until")

    def __init__(
        self,
        hosts: Sequence[H],
        *,
        order: Literal["in_order", "random"],
        retry_interval: float,
        clock: Callable[[], float] = time.monotonic,
        shuffle: Callable[[list[H]], None] = random.shuffle,
    ) -> None:
        if not hosts:
            raise ValueError("a host list needs at least one host")
        self._hosts = list(hosts)
        self._order = order
        self._retry_interval = retry_interval
        self._clock = clock
        self._shuffle = shuffle
        self._skip_until: dict[int, float] = {}

    @property
    def hosts(self) -> list[H]:
        """Return the hosts in config order."""
        return list(self._hosts)

    def candidates(self) -> list[H]:
        """Return the hosts to try now, best first."""
        indexes = list(range(len(self._hosts)))
        if self._order == "random":
            self._shuffle(indexes)  # type: ignore[arg-type]
        now = self._clock()
        usable = [i for i in indexes if self._skip_until.get(i, 0.0) <= now]
        if not usable:
            # Everything failed recently: try all, soonest-to-recover first.
            usable = sorted(indexes, key=lambda i: self._skip_until.get(i, 0.0))
        return [self._hosts[i] for i in usable]

    def failed(self, host: H) -> None:
        """Record that host could not be used; it is skipped for retry_interval."""
        self._skip_until[self._index(host)] = self._clock() + self._retry_interval

    def succeeded(self, host: H) -> None:
        """Record that host answered; it is preferred again at once."""
        self._skip_until.pop(self._index(host), None)

    def is_skipped(self, host: H) -> bool:
        """Return True while host is inside its retry_interval."""
        return self._skip_until.get(self._index(host), 0.0) > self._clock()

    def _index(self, host: H) -> int:
        for i, known in enumerate(self._hosts):
            if known is host or known == host:
                return i
        raise KeyError(host)
