"""Merging the metrics and health of several workers (sockmapd.metrics_merge), and their link."""

from __future__ import annotations

import asyncio
import json
import os
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sockmapd.backends.health import HealthReport
from sockmapd.metrics import Metrics, _cache_families, _pool_families
from sockmapd.metrics_merge import GAUGE_RULES, MetricsMerger, WorkerHealth, merge_health
from sockmapd.protocol import Status
from sockmapd.server import workerlink


def page(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def value(families: list[Any], name: str, **labels: str) -> float:
    found = [
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def served(*seconds: float, status: Status = Status.OK) -> Metrics:
    metrics = Metrics()
    for taken in seconds:
        metrics.request(None, status, taken)
    return metrics


def test_counters_and_histogram_buckets_are_summed() -> None:
    one, two = served(0.001, 0.2), served(0.3, 0.4, 0.5)
    merged = MetricsMerger().merge({"1": (10, page(one)), "2": (20, page(two))})
    assert value(merged, "sockmapd_requests_total", map=":unknown", result="OK") == 5
    bucket = "sockmapd_request_duration_seconds_bucket"
    assert value(merged, bucket, map=":unknown", le="0.25") == 2
    assert value(merged, bucket, map=":unknown", le="+Inf") == 5
    assert value(merged, "sockmapd_request_duration_seconds_count", map=":unknown") == 5
    assert value(merged, "sockmapd_request_duration_seconds_sum", map=":unknown") == (
        pytest.approx(1.401)
    )
    assert value(merged, "sockmapd_workers_answering") == 2


def test_gauges_merge_by_meaning() -> None:
    one, two = Metrics(), Metrics()
    one.probed(HealthReport({"main": "ok"}, {"main": True}))
    two.probed(HealthReport({"main": "cannot connect"}, {"main": False}))
    one.listener("unix:/s").opened()
    two.listener("unix:/s").opened()
    two.reloaded(False)
    merged = MetricsMerger().merge({"1": (10, page(one)), "2": (20, page(two))})
    assert value(merged, "sockmapd_connections_active", listener="unix:/s") == 2
    assert value(merged, "sockmapd_last_reload_successful") == 0
    assert value(merged, "sockmapd_build_info", version=_version(merged)) == 1


def _version(families: list[Any]) -> str:
    (family,) = [f for f in families if f.name == "sockmapd_build_info"]
    return str(family.samples[0].labels["version"])


def test_database_up_is_down_if_any_worker_finds_it_down() -> None:
    one, two = Metrics(), Metrics()
    one.probed(HealthReport({"main": "ok"}, {"main": True}))
    two.probed(HealthReport({"main": "down"}, {"main": False}))
    for metrics, in_use in ((one, 3), (two, 4)):
        state = SimpleNamespace(pool=SimpleNamespace(in_use=in_use, overflow=1, size=5, limit=10))
        router = SimpleNamespace(map_names=[], cache_counts=lambda: [("alias", 7, 2, 4)])
        metrics.watch(lambda r=router, s=state: (r, {"main": s}))  # type: ignore[misc]
    merged = MetricsMerger().merge({"1": (10, page(one)), "2": (20, page(two))})
    assert value(merged, "sockmapd_database_up", database="main") == 0
    assert value(merged, "sockmapd_pool_connections_in_use", database="main") == 7
    assert value(merged, "sockmapd_pool_max_connections", database="main") == 20
    assert value(merged, "sockmapd_cache_hits_total", map="alias") == 14
    assert value(merged, "sockmapd_cache_entries", map="alias") == 8


def test_process_figures_are_labelled_by_worker_not_summed() -> None:
    merged = MetricsMerger().merge({"1": (10, page(Metrics())), "2": (20, page(Metrics()))})
    names = {
        sample.labels.get("worker")
        for family in merged
        if family.name == "process_start_time_seconds"
        for sample in family.samples
    }
    assert names == {"1", "2"}


def test_every_gauge_of_a_worker_has_a_merge_rule() -> None:
    metrics = Metrics()
    metrics.probed(HealthReport({"main": "ok"}, {"main": True}))
    router = SimpleNamespace(cache_counts=lambda: [("alias", 1, 1, 1)])
    pool = SimpleNamespace(pool=SimpleNamespace(in_use=0, overflow=0, size=1, limit=1))
    families = list(metrics.registry.collect())
    families += list(_cache_families(metrics, router))  # type: ignore[arg-type]
    families += list(_pool_families(metrics, {"main": pool}))  # type: ignore[arg-type]
    text = "".join(
        generate_latest(SimpleNamespace(collect=lambda f=f: [f])).decode()  # type: ignore[arg-type]
        for f in families
    )
    gauges = {
        family.name
        for family in text_string_to_metric_families(text)
        if family.type == "gauge" and not family.name.startswith("process_")
    }
    assert gauges
    assert gauges <= set(GAUGE_RULES), gauges - set(GAUGE_RULES)


def test_a_restarted_worker_does_not_make_counters_go_backwards() -> None:
    merger = MetricsMerger()
    merger.merge({"1": (10, page(served(0.1, 0.1))), "2": (20, page(served(0.1)))})
    # Worker 1 died; its replacement (pid 11) has counted one request so far.
    merged = merger.merge({"1": (11, page(served(0.1))), "2": (20, page(served(0.1, 0.1)))})
    assert value(merged, "sockmapd_requests_total", map=":unknown", result="OK") == 5
    bucket = "sockmapd_request_duration_seconds_bucket"
    assert value(merged, bucket, map=":unknown", le="+Inf") == 5
    # A second scrape of the same processes adds nothing twice.
    merged = merger.merge({"1": (11, page(served(0.1))), "2": (20, page(served(0.1, 0.1)))})
    assert value(merged, "sockmapd_requests_total", map=":unknown", result="OK") == 5


def test_a_worker_that_does_not_answer_keeps_its_last_counters_but_no_gauges() -> None:
    merger = MetricsMerger()
    busy = served(0.1, 0.1)
    busy.listener("unix:/s").opened()
    merger.merge({"1": (10, page(busy)), "2": (20, page(served(0.1)))})
    merged = merger.merge({"2": (20, page(served(0.1)))})
    assert value(merged, "sockmapd_requests_total", map=":unknown", result="OK") == 3
    assert value(merged, "sockmapd_connections_total", listener="unix:/s") == 1
    active = [f for f in merged if f.name == "sockmapd_connections_active"]
    assert all(not family.samples for family in active)
    assert value(merged, "sockmapd_workers_answering") == 1


def test_health_is_ok_only_when_every_worker_is() -> None:
    ok = WorkerHealth({"main": "ok", "other": "ok"})
    healthy, document = merge_health({"1": ok, "2": ok})
    assert healthy
    assert document["status"] == "ok"
    assert document["databases"] == {"main": "ok", "other": "ok"}


def test_health_names_the_worker_and_database_that_are_down() -> None:
    ok = WorkerHealth({"main": "ok", "other": "ok"})
    down = WorkerHealth({"main": "ok", "other": "cannot connect: refused"})
    healthy, document = merge_health({"1": ok, "2": down})
    assert not healthy
    assert document["status"] == "down"
    assert document["databases"] == {"main": "ok", "other": "worker 2: cannot connect: refused"}
    assert document["workers"]["2"]["status"] == "down"
    assert document["workers"]["1"]["status"] == "ok"


def test_a_worker_without_an_answer_is_down() -> None:
    ok = WorkerHealth({"main": "ok"})
    healthy, document = merge_health({"1": ok, "2": WorkerHealth({}, "no answer within 3s")})
    assert not healthy
    assert document["workers"]["2"] == {"status": "down", "error": "no answer within 3s"}
    assert not merge_health({})[0]


def test_the_link_carries_metrics_and_health_and_times_out_without_a_worker() -> None:
    metrics = served(0.1)

    async def health() -> HealthReport:
        return HealthReport({"main": "down"}, {"main": False})

    async def main() -> None:
        ours, theirs = workerlink.socketpair()
        link = workerlink.WorkerLink(ours)
        worker = asyncio.create_task(workerlink.answer(theirs, metrics, health))
        pid, body = await link.ask(workerlink.METRICS, 5.0)
        assert pid == os.getpid()
        assert "sockmapd_requests_total" in body.decode()
        replies = await workerlink.gather({"1": link}, workerlink.HEALTH, 5.0)
        assert workerlink.worker_health(replies["1"], 5.0) == WorkerHealth({"main": "down"})
        assert metrics.database_up("main") == 0.0
        assert json.loads(replies["1"][1]) == {"main": "down"}  # type: ignore[index]
        worker.cancel()
        replies = await workerlink.gather({"1": link}, workerlink.HEALTH, 0.1)
        assert workerlink.worker_health(replies["1"], 0.1).error == "no answer within 0.1s"
        ours.close()
        theirs.close()

    asyncio.run(main())


def test_merged_families_render_and_parse_in_both_formats() -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

    merged = MetricsMerger().merge({"1": (10, page(served(0.1))), "2": (20, page(served(0.2)))})
    collector = SimpleNamespace(collect=lambda: merged)
    text = generate_latest(collector).decode()  # type: ignore[arg-type]
    names = {family.name for family in text_string_to_metric_families(text)}
    om_names = {family.name for family in parse_om(openmetrics(collector).decode())}
    assert "sockmapd_requests" in names
    assert names == om_names
