"""The metrics registry: what each recorder counts, read back through the text exposition."""

from __future__ import annotations

import asyncio
import platform
import re
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from sockmapd import __version__
from sockmapd.backends import create_databases
from sockmapd.backends.errors import (
    ConnectionLost,
    DatabaseError,
    DatabaseUnavailable,
    PoolClosed,
    PoolExhausted,
    QueryFailed,
    QueryTimeout,
)
from sockmapd.backends.health import HealthReport
from sockmapd.backends.pool import DriverPool
from sockmapd.config import DatabaseConfig, MapConfig, parse_config
from sockmapd.lookup import build_router
from sockmapd.lookup.maps import MapLookup
from sockmapd.metrics import DATABASE_ERROR_KINDS, UNKNOWN_MAP, Metrics
from sockmapd.protocol import Reply, Status

Labels = tuple[tuple[str, str], ...]


def scrape(metrics: Metrics) -> dict[tuple[str, Labels], float]:
    """Return every sample of the exposition by (name, sorted labels)."""
    text = generate_latest(metrics.registry).decode()
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return scrape(metrics).get((name, tuple(sorted(labels.items()))))


CONFIG = """
[databases.main]
url = "sqlite+aiosqlite:///{db}"

[maps.users]
database = "main"
table = "users"
key = "address"
cache_ttl = 60.0

[maps.plain]
database = "main"
table = "users"
key = "address"
"""


def router_for(tmp_path: Path, metrics: Metrics) -> Any:
    config = parse_config(CONFIG.format(db=tmp_path / "unused.sqlite3"))
    engines = create_databases(config.databases)
    router = build_router(config, engines, metrics.database)
    return router, engines


def test_requests_are_counted_by_map_and_status(tmp_path: Path) -> None:
    metrics = Metrics()
    router, _ = router_for(tmp_path, metrics)
    metrics.serve(router)
    metrics.request("users", Status.OK, 0.001)
    metrics.request("users", Status.OK, 0.002)
    metrics.request("users", Status.NOTFOUND, 0.003)
    metrics.request("plain", Status.TIMEOUT, 2.0)
    assert value(metrics, "sockmapd_requests_total", map="users", result="OK") == 2
    assert value(metrics, "sockmapd_requests_total", map="users", result="NOTFOUND") == 1
    assert value(metrics, "sockmapd_requests_total", map="users", result="TEMP") == 0
    assert value(metrics, "sockmapd_requests_total", map="plain", result="TIMEOUT") == 1
    assert value(metrics, "sockmapd_request_duration_seconds_count", map="users") == 3
    assert value(metrics, "sockmapd_request_duration_seconds_sum", map="users") == pytest.approx(
        0.006
    )
    assert value(metrics, "sockmapd_request_duration_seconds_bucket", map="plain", le="2.5") == 1
    assert value(metrics, "sockmapd_request_duration_seconds_bucket", map="plain", le="1.0") == 0


def test_every_status_of_a_configured_map_is_exported_from_the_start(tmp_path: Path) -> None:
    metrics = Metrics()
    router, _ = router_for(tmp_path, metrics)
    metrics.serve(router)
    for status in Status:
        assert value(metrics, "sockmapd_requests_total", map="plain", result=status.value) == 0


@pytest.mark.parametrize("name", [None, "nosuchmap", "x" * 10_000])
def test_maps_not_configured_share_one_label(tmp_path: Path, name: str | None) -> None:
    metrics = Metrics()
    router, _ = router_for(tmp_path, metrics)
    metrics.serve(router)
    metrics.request(name, Status.PERM, 0.0)
    metrics.request("another", Status.TEMP, 0.0)
    samples = scrape(metrics)
    maps = {dict(labels).get("map") for (_, labels) in samples} - {None}
    assert maps == {"users", "plain", UNKNOWN_MAP}
    assert value(metrics, "sockmapd_requests_total", map=UNKNOWN_MAP, result="PERM") == 1
    assert value(metrics, "sockmapd_requests_total", map=UNKNOWN_MAP, result="TEMP") == 1


def test_protocol_errors_are_counted_by_kind() -> None:
    metrics = Metrics()
    metrics.protocol_error("invalid_length")
    metrics.protocol_error("invalid_length")
    metrics.protocol_error("malformed_request")
    assert value(metrics, "sockmapd_protocol_errors_total", kind="invalid_length") == 2
    assert value(metrics, "sockmapd_protocol_errors_total", kind="malformed_request") == 1


def test_connections_are_counted_per_listener() -> None:
    metrics = Metrics()
    first = metrics.listener("tcp://127.0.0.1:2224")
    second = metrics.listener("unix:///run/sockmapd.sock")
    first.opened()
    first.opened()
    second.opened()
    first.closed()
    assert value(metrics, "sockmapd_connections_total", listener="tcp://127.0.0.1:2224") == 2
    assert value(metrics, "sockmapd_connections_active", listener="tcp://127.0.0.1:2224") == 1
    assert value(metrics, "sockmapd_connections_active", listener="unix:///run/sockmapd.sock") == 1


def test_reloads_are_counted_and_timed() -> None:
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    assert value(metrics, "sockmapd_last_reload_success_timestamp_seconds") == 1000.0
    assert value(metrics, "sockmapd_last_reload_successful") == 1
    now[0] = 2000.0
    metrics.reloaded(False)
    assert value(metrics, "sockmapd_reloads_total", result="failed") == 1
    assert value(metrics, "sockmapd_last_reload_success_timestamp_seconds") == 1000.0
    assert value(metrics, "sockmapd_last_reload_successful") == 0
    metrics.reloaded(True)
    assert value(metrics, "sockmapd_reloads_total", result="ok") == 1
    assert value(metrics, "sockmapd_last_reload_success_timestamp_seconds") == 2000.0
    assert value(metrics, "sockmapd_last_reload_successful") == 1


def test_build_info_names_the_version() -> None:
    assert scrape(Metrics())[("sockmapd_build_info", (("version", __version__),))] == 1


def test_process_and_python_figures_are_exported() -> None:
    samples = scrape(Metrics())
    names = {name for name, _ in samples}
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert name in names, name
    python = {dict(labels)["version"] for name, labels in samples if name == "python_info"}
    assert python == {platform.python_version()}


def test_no_created_series_are_exported(tmp_path: Path) -> None:
    metrics = Metrics()
    router, _ = router_for(tmp_path, metrics)
    metrics.serve(router)
    metrics.request("users", Status.OK, 0.001)
    metrics.database("main").answered(0.001)
    metrics.reloaded(True)
    text = generate_latest(metrics.registry).decode()
    assert "sockmapd_requests_total{" in text
    assert "sockmapd_database_query_duration_seconds_bucket{" in text
    assert "_created" not in text


def test_cache_figures_are_read_at_scrape_time_and_survive_a_reload(tmp_path: Path) -> None:
    metrics = Metrics()
    router, engines = router_for(tmp_path, metrics)
    metrics.serve(router)
    state = [(router, engines)]
    metrics.watch(lambda: state[0])
    cache = router.maps["users"].cache
    cache.get("a")
    cache.put("a", Reply.ok("v"))
    cache.get("a")
    cache.get("a")
    assert value(metrics, "sockmapd_cache_hits_total", map="users") == 2
    assert value(metrics, "sockmapd_cache_misses_total", map="users") == 1
    assert value(metrics, "sockmapd_cache_entries", map="users") == 1
    # A map without a cache exports no cache series.
    assert value(metrics, "sockmapd_cache_hits_total", map="plain") is None

    new_router, new_engines = router_for(tmp_path, metrics)
    metrics.serve(new_router)
    metrics.retire(router)
    state[0] = (new_router, new_engines)
    new_router.maps["users"].cache.get("b")
    assert value(metrics, "sockmapd_cache_hits_total", map="users") == 2
    assert value(metrics, "sockmapd_cache_misses_total", map="users") == 2
    assert value(metrics, "sockmapd_cache_entries", map="users") == 0


def test_request_counters_survive_a_reload(tmp_path: Path) -> None:
    metrics = Metrics()
    router, _ = router_for(tmp_path, metrics)
    metrics.serve(router)
    metrics.request("users", Status.OK, 0.0)
    new_router, _ = router_for(tmp_path, metrics)
    metrics.serve(new_router)
    metrics.request("users", Status.OK, 0.0)
    assert value(metrics, "sockmapd_requests_total", map="users", result="OK") == 2


def test_pool_figures_are_read_at_scrape_time(tmp_path: Path) -> None:
    metrics = Metrics()
    router, engines = router_for(tmp_path, metrics)
    metrics.watch(lambda: (router, engines))
    assert value(metrics, "sockmapd_pool_connections_in_use", database="main") == 0
    assert value(metrics, "sockmapd_pool_overflow_connections", database="main") == 0
    assert value(metrics, "sockmapd_pool_size", database="main") == 10

    async def hold_one() -> tuple[float | None, float | None]:
        pool = engines["main"].pool
        lease = await pool.acquire(asyncio.get_running_loop().time() + 60)
        try:
            return (
                value(metrics, "sockmapd_pool_connections_in_use", database="main"),
                value(metrics, "sockmapd_pool_overflow_connections", database="main"),
            )
        finally:
            pool.release(lease)

    assert asyncio.run(hold_one()) == (1, 0)
    assert value(metrics, "sockmapd_pool_max_connections", database="main") == 10
    asyncio.run(engines.dispose())


def test_query_times_are_a_histogram_per_database() -> None:
    metrics = Metrics()
    recorder = metrics.database("main")
    recorder.answered(0.004)
    recorder.answered(0.2)
    recorder.failed(QueryTimeout("slow"), 5.0)
    bucket = "sockmapd_database_query_duration_seconds_bucket"
    assert value(metrics, bucket, database="main", le="0.005") == 1
    assert value(metrics, bucket, database="main", le="0.25") == 2
    assert value(metrics, bucket, database="main", le="5.0") == 3
    assert value(
        metrics, "sockmapd_database_query_duration_seconds_sum", database="main"
    ) == pytest.approx(5.204)
    assert value(metrics, "sockmapd_database_errors_total", database="main", kind="timeout") == 1
    # Every map of a database shares its recorder, across reloads too.
    assert metrics.database("main") is recorder


def up_of(tmp_path: Path, metrics: Metrics) -> float | None:
    router, engines = router_for(tmp_path, metrics)
    metrics.watch(lambda: (router, engines))
    return value(metrics, "sockmapd_database_up", database="main")


@pytest.mark.parametrize(
    ("events", "up"),
    [
        ([], None),
        (["answered"], 1.0),
        ([QueryTimeout("slow")], 0.0),
        ([ConnectionLost("reset")], 0.0),
        ([DatabaseUnavailable("refused")], 0.0),
        # The database answered, with an error: it is up.
        (["answered", QueryTimeout("slow"), QueryFailed("no such table")], 1.0),
        # Waiting for a pooled connection or a closed pool never asked the database.
        ([PoolExhausted("busy")], None),
        (["answered", PoolExhausted("busy"), PoolClosed("closed")], 1.0),
        ([DatabaseUnavailable("refused"), PoolExhausted("busy")], 0.0),
        (["answered", "probe down"], 0.0),
        ([QueryTimeout("slow"), "probe up"], 1.0),
        (["probe up", "probe busy"], 1.0),
    ],
)
def test_database_up_is_what_the_database_did_when_last_asked(
    tmp_path: Path, events: list[str | DatabaseError], up: float | None
) -> None:
    metrics = Metrics()
    recorder = metrics.database("main")
    for event in events:
        if event == "answered":
            recorder.answered(0.001)
        elif event == "probe up":
            metrics.probed(HealthReport({"main": "ok"}, {"main": True}))
        elif event == "probe down":
            metrics.probed(HealthReport({"main": "cannot connect: x"}, {"main": False}))
        elif event == "probe busy":
            metrics.probed(HealthReport({"main": "pool exhausted: ..."}, {}))
        else:
            assert isinstance(event, DatabaseError)
            recorder.failed(event, 0.001)
    assert up_of(tmp_path, metrics) == up


def test_database_up_is_exported_only_for_the_databases_served(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.database("main").answered(0.001)
    metrics.database("gone").answered(0.001)
    assert up_of(tmp_path, metrics) == 1.0
    assert value(metrics, "sockmapd_database_up", database="gone") is None


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (DatabaseUnavailable("no usable host"), "unavailable"),
        (PoolClosed("closed"), "unavailable"),
        (PoolExhausted("no connection free"), "pool_timeout"),
        (QueryTimeout("too slow"), "timeout"),
        (ConnectionLost("reset by peer"), "lost_connection"),
        (QueryFailed("no such table"), "query_error"),
    ],
)
def test_every_database_error_has_a_kind_label(error: DatabaseError, kind: str) -> None:
    assert error.kind == kind
    assert kind in DATABASE_ERROR_KINDS


class FailingPool:
    """A lookup pool whose every fetch raises the failures given, one per attempt."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures

    async def fetch(self, sql: str, args: tuple[str, ...], query_timeout: float) -> list[Any]:
        raise self.failures.pop(0)


class FailingLookup(MapLookup):
    """A map whose every query raises the failures given, one per attempt."""

    def __init__(self, failures: list[BaseException], metrics: Metrics) -> None:
        config = MapConfig(database="db", table="t", key="k")
        database = DatabaseConfig(url="sqlite+aiosqlite:///unused.sqlite3")
        recorder = metrics.database("db")
        engine = create_async_engine("sqlite+aiosqlite:///unused.sqlite3")
        pool = cast(DriverPool, FailingPool(failures))
        super().__init__("m", config, engine, database, recorder=recorder, pool=pool)


@pytest.mark.parametrize(
    ("failures", "counted"),
    [
        ([QueryTimeout("slow")], {"timeout": 1}),
        ([QueryFailed("no such table")], {"query_error": 1}),
        ([DatabaseUnavailable("x")], {"unavailable": 1}),
        ([PoolExhausted("x")], {"pool_timeout": 1}),
        # A lost connection is tried once more; the second failure is counted too.
        ([ConnectionLost("x"), QueryFailed("y")], {"lost_connection": 1, "query_error": 1}),
        ([ConnectionLost("x"), QueryTimeout("y")], {"lost_connection": 1, "timeout": 1}),
        ([ConnectionLost("x"), ConnectionLost("y")], {"lost_connection": 2}),
    ],
)
def test_a_map_counts_its_database_failures(
    failures: list[BaseException], counted: dict[str, int]
) -> None:
    metrics = Metrics()
    lookup = FailingLookup(failures, metrics)
    reply = asyncio.run(lookup.lookup("k"))
    assert reply.status in (Status.TEMP, Status.TIMEOUT)
    for kind in ("timeout", "lost_connection", "unavailable", "pool_timeout", "query_error"):
        got = value(metrics, "sockmapd_database_errors_total", database="db", kind=kind)
        assert got == counted.get(kind, 0), kind
    # Every attempt is timed, the retry too.
    count = value(metrics, "sockmapd_database_query_duration_seconds_count", database="db")
    assert count == sum(counted.values())


class AnsweringPool:
    """A lookup pool that finds every key."""

    async def fetch(self, sql: str, args: tuple[str, ...], query_timeout: float) -> list[Any]:
        return [(args[0],)]


def test_an_answered_lookup_is_timed_and_shows_the_database_up() -> None:
    metrics = Metrics()
    config = MapConfig(database="db", table="t", key="k")
    database = DatabaseConfig(url="sqlite+aiosqlite:///unused.sqlite3")
    engine = create_async_engine("sqlite+aiosqlite:///unused.sqlite3")
    pool = cast(DriverPool, AnsweringPool())
    lookup = MapLookup("m", config, engine, database, recorder=metrics.database("db"), pool=pool)
    assert asyncio.run(lookup.lookup("k")) == Reply.ok("k")
    count = value(metrics, "sockmapd_database_query_duration_seconds_count", database="db")
    assert count == 1
    assert metrics.database_up("db") == 1.0


def test_every_sockmapd_metric_is_documented(tmp_path: Path) -> None:
    metrics = Metrics()
    router, engines = router_for(tmp_path, metrics)
    metrics.serve(router)
    metrics.watch(lambda: (router, engines))
    metrics.database("main").answered(0.001)
    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(sockmapd_[a-z_]+)` \|", operations, re.MULTILINE))
    exposed = set()
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        if family.name.startswith("sockmapd_"):
            suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
            exposed.add(family.name + suffix)
    assert exposed == documented
