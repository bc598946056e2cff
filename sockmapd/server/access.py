"""Which TCP clients may connect, and logging denials without flooding the log."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Log a denied address at most once per this many seconds.
DENIAL_LOG_INTERVAL = 60.0
# Remember at most this many denied addresses: a scan from many addresses must
# not grow memory without bound. Past it, the oldest entries are dropped.
MAX_REMEMBERED_DENIALS = 4096


class AccessList:
    """The networks allowed to connect over TCP."""

    __slots__ = ("_clock", "_last_logged", "_v4", "_v6")

    def __init__(
        self, networks: Sequence[Network], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._v4 = tuple(n for n in networks if isinstance(n, ipaddress.IPv4Network))
        self._v6 = tuple(n for n in networks if isinstance(n, ipaddress.IPv6Network))
        self._clock = clock
        self._last_logged: dict[str, float] = {}

    def allows(self, host: str) -> bool:
        """Return True if a client at host (an IP address as text) may connect."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # An IPv4 client on a dual-stack socket is judged by its IPv4 address.
            address = address.ipv4_mapped
        if isinstance(address, ipaddress.IPv4Address):
            return any(address in network for network in self._v4)
        return any(address in network for network in self._v6)

    def log_denied(self, host: str) -> None:
        """Log a denied client, once per address per DENIAL_LOG_INTERVAL."""
        now = self._clock()
        last = self._last_logged.get(host)
        if last is not None and now - last < DENIAL_LOG_INTERVAL:
            return
        if last is None and len(self._last_logged) >= MAX_REMEMBERED_DENIALS:
            oldest = min(self._last_logged, key=self._last_logged.__getitem__)
            del self._last_logged[oldest]
        self._last_logged[host] = now
        log.warning("client %s denied by server.allow; connection closed", host)
