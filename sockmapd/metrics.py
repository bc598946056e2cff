"""Prometheus metrics: one registry per daemon, with recorders resolved before the request path.

Recording a request costs two dict lookups and two prometheus_client calls: the
counter and histogram children of every configured map are resolved when the maps
are loaded, never per request; a lookup query adds one histogram observation on
the child of its database, resolved the same way. Pool and cache figures are not
recorded at all: the collector reads them from the current maps and databases at
scrape time.

Label values never come from a client: a request for a map that is not configured,
or a payload that is not a request, is counted under UNKNOWN_MAP, so a hostile
client cannot create series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sockmapd import __version__
from sockmapd.backends.errors import DatabaseError
from sockmapd.backends.health import HealthReport
from sockmapd.protocol import Status

if TYPE_CHECKING:
    from sockmapd.backends import Databases
    from sockmapd.lookup import Router

# A map name can never contain ':' (Postfix could not ask for it), so this label
# value cannot collide with a configured map.
UNKNOWN_MAP = ":unknown"
# From a cached answer (well under a millisecond) to request_timeout (up to 100 s).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    100.0,
)
DATABASE_ERROR_KINDS = ("timeout", "lost_connection", "unavailable", "pool_timeout", "query_error")

# What the collector reads at scrape time: the maps and databases currently served.
StateSource = Callable[[], "tuple[Router, Databases]"]


class DatabaseMetrics:
    """The query times, failures and last known state of one database (a DatabaseRecorder).

    One per database name, shared by its maps and kept across reloads.
    """

    __slots__ = ("_kinds", "_latency", "up")

    def __init__(self, errors: Counter, latency: Histogram, database: str) -> None:
        self._kinds = {kind: errors.labels(database, kind) for kind in DATABASE_ERROR_KINDS}
        self._latency = latency.labels(database)
        # 1.0 if the database answered the last time it was asked (by a lookup or
        # the health check), 0.0 if it did not, None while it was never asked.
        self.up: float | None = None

    def answered(self, seconds: float) -> None:
        """Record one lookup query that the database answered."""
        self._latency.observe(seconds)
        self.up = 1.0

    def failed(self, error: DatabaseError, seconds: float) -> None:
        """Record one failed lookup query under its kind."""
        self._kinds[error.kind].inc()
        self._latency.observe(seconds)
        if error.answered is not None:
            self.up = 1.0 if error.answered else 0.0

    def probed(self, answered: bool) -> None:
        """Record whether the database answered the health check."""
        self.up = 1.0 if answered else 0.0


class ListenerMetrics:
    """The connection counters of one socketmap listener."""

    __slots__ = ("_active", "_total")

    def __init__(self, total: Counter, active: Gauge, listener: str) -> None:
        self._total = total.labels(listener)
        self._active = active.labels(listener)

    def opened(self) -> None:
        """Count a connection accepted for serving."""
        self._total.inc()
        self._active.inc()

    def closed(self) -> None:
        """Count a connection that ended."""
        self._active.dec()


class _MapRecorder:
    __slots__ = ("by_status", "latency")

    def __init__(self, requests: Counter, latency: Histogram, name: str) -> None:
        self.by_status = {status: requests.labels(name, status.value) for status in Status}
        self.latency = latency.labels(name)


class Metrics:
    """Every metric of one daemon, in a registry of its own; counters outlive reloads."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        # A _created series per counter and histogram child doubles the exposition
        # and tells nothing process_start_time_seconds does not. The switch is
        # process-wide; the daemon has one registry.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self._clock = clock
        registry = self.registry
        self._requests = Counter(
            "sockmapd_requests",
            "Socketmap requests answered, by map and reply status.",
            ["map", "result"],
            registry=registry,
        )
        self._latency = Histogram(
            "sockmapd_request_duration_seconds",
            "Time from a whole request read to its reply encoded, by map.",
            ["map"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._connections = Counter(
            "sockmapd_connections",
            "Client connections accepted, by listener.",
            ["listener"],
            registry=registry,
        )
        self._active = Gauge(
            "sockmapd_connections_active",
            "Client connections open now, by listener.",
            ["listener"],
            registry=registry,
        )
        self._protocol_errors = Counter(
            "sockmapd_protocol_errors",
            "Frames or payloads that broke the socketmap protocol, by kind.",
            ["kind"],
            registry=registry,
        )
        self._database_errors = Counter(
            "sockmapd_database_errors",
            "Failed database lookups, by database and kind.",
            ["database", "kind"],
            registry=registry,
        )
        self._query_latency = Histogram(
            "sockmapd_database_query_duration_seconds",
            "Time of each lookup query, from asking the pool for a connection to the rows"
            " or the failure, by database.",
            ["database"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        reloads = Counter(
            "sockmapd_reloads",
            "Configuration reloads, by result.",
            ["result"],
            registry=registry,
        )
        self._reloads_ok = reloads.labels("ok")
        self._reloads_failed = reloads.labels("failed")
        self._last_reload = Gauge(
            "sockmapd_last_reload_success_timestamp_seconds",
            "When the configuration in force was loaded (start or reload), in Unix time.",
            registry=registry,
        )
        self._last_reload.set(clock())
        self._reload_ok = Gauge(
            "sockmapd_last_reload_successful",
            "1 if the last reload applied (or there was none since the start), 0 if it failed.",
            registry=registry,
        )
        self._reload_ok.set(1)
        Info("sockmapd_build", "sockmapd version.", registry=registry).info(
            {"version": __version__}
        )
        # process_* (CPU, memory, file descriptors, start time) and python_info.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self._maps: dict[str, _MapRecorder] = {}
        self._databases: dict[str, DatabaseMetrics] = {}
        self._unknown = _MapRecorder(self._requests, self._latency, UNKNOWN_MAP)
        self._protocol_kinds: dict[str, Counter] = {}
        # Cache hits and misses of maps whose caches were replaced by a reload: the
        # exported counters go on from there instead of falling back to zero.
        self._retired_cache: dict[str, list[int]] = {}
        self._source: StateSource | None = None
        registry.register(_StateCollector(self))

    def watch(self, source: StateSource) -> None:
        """Read pool and cache state from source() at every scrape."""
        self._source = source

    def state(self) -> tuple[Router, Databases] | None:
        """Return the maps and databases served now, or None before watch()."""
        return None if self._source is None else self._source()

    def serve(self, router: Router) -> None:
        """Resolve the recorders of the maps of router, before any request reaches it."""
        self._maps = {
            name: self._maps.get(name) or _MapRecorder(self._requests, self._latency, name)
            for name in router.map_names
        }

    def retire(self, router: Router) -> None:
        """Keep the cache counts of a router being replaced, so the counters stay monotonic."""
        for name, hits, misses, _entries in router.cache_counts():
            counts = self._retired_cache.setdefault(name, [0, 0])
            counts[0] += hits
            counts[1] += misses

    def request(self, map_name: str | None, status: Status, seconds: float) -> None:
        """Count one answered request; map_name None or not configured counts as UNKNOWN_MAP."""
        recorder = self._maps.get(map_name) if map_name is not None else None
        if recorder is None:
            recorder = self._unknown
        recorder.by_status[status].inc()
        recorder.latency.observe(seconds)

    def protocol_error(self, kind: str) -> None:
        """Count one protocol error; kind is a class constant, never peer data."""
        child = self._protocol_kinds.get(kind)
        if child is None:
            child = self._protocol_kinds[kind] = self._protocol_errors.labels(kind)
        child.inc()

    def listener(self, name: str) -> ListenerMetrics:
        """Return the connection counters of the listener called name."""
        return ListenerMetrics(self._connections, self._active, name)

    def database(self, name: str) -> DatabaseMetrics:
        """Return the recorder of the database called name, to hand to its maps."""
        recorder = self._databases.get(name)
        if recorder is None:
            recorder = self._databases[name] = DatabaseMetrics(
                self._database_errors, self._query_latency, name
            )
        return recorder

    def probed(self, report: HealthReport) -> None:
        """Record which databases answered a health check."""
        for name, answered in report.answered.items():
            self.database(name).probed(answered)

    def database_up(self, name: str) -> float | None:
        """Return 1.0 if name answered when last asked, 0.0 if not, None if never asked."""
        recorder = self._databases.get(name)
        return None if recorder is None else recorder.up

    def reloaded(self, ok: bool) -> None:
        """Count a reload; a successful one also sets the last reload time."""
        self._reload_ok.set(1 if ok else 0)
        if ok:
            self._reloads_ok.inc()
            self._last_reload.set(self._clock())
        else:
            self._reloads_failed.inc()

    def retired_cache_counts(self, name: str) -> tuple[int, int]:
        """Return the hits and misses of name's caches replaced by reloads."""
        counts = self._retired_cache.get(name)
        return (0, 0) if counts is None else (counts[0], counts[1])


class _StateCollector(Collector):
    """Reads pool and cache state of the current generation at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        state = self._metrics.state()
        if state is None:
            return
        router, databases = state
        yield from _cache_families(self._metrics, router)
        yield from _pool_families(self._metrics, databases)


def _cache_families(metrics: Metrics, router: Router) -> Iterator[Metric]:
    hits = CounterMetricFamily(
        "sockmapd_cache_hits", "Lookups answered from a map's cache.", labels=["map"]
    )
    misses = CounterMetricFamily(
        "sockmapd_cache_misses", "Lookups a map's cache could not answer.", labels=["map"]
    )
    entries = GaugeMetricFamily(
        "sockmapd_cache_entries", "Answers held in a map's cache now.", labels=["map"]
    )
    for name, hit_count, miss_count, size in router.cache_counts():
        old_hits, old_misses = metrics.retired_cache_counts(name)
        hits.add_metric([name], hit_count + old_hits)
        misses.add_metric([name], miss_count + old_misses)
        entries.add_metric([name], size)
    yield hits
    yield misses
    yield entries


def _pool_families(metrics: Metrics, databases: Databases) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "sockmapd_database_up",
        "1 if the database answered the last lookup or health check that asked it, else 0;"
        " absent until one did.",
        labels=["database"],
    )
    in_use = GaugeMetricFamily(
        "sockmapd_pool_connections_in_use",
        "Database connections checked out of the pool now.",
        labels=["database"],
    )
    overflow = GaugeMetricFamily(
        "sockmapd_pool_overflow_connections",
        "Database connections open beyond pool_size now (up to max_overflow).",
        labels=["database"],
    )
    size = GaugeMetricFamily(
        "sockmapd_pool_size", "The pool_size of each database.", labels=["database"]
    )
    limit = GaugeMetricFamily(
        "sockmapd_pool_max_connections",
        "The most connections the pool of each database opens (pool_size + max_overflow).",
        labels=["database"],
    )
    for name, database in databases.items():
        pool = database.pool
        in_use.add_metric([name], pool.in_use)
        overflow.add_metric([name], pool.overflow)
        size.add_metric([name], pool.size)
        limit.add_metric([name], pool.limit)
        state = metrics.database_up(name)
        if state is not None:
            up.add_metric([name], state)
    yield up
    yield in_use
    yield overflow
    yield size
    yield limit
