"""Merge the metrics and health reports of several worker processes into one (no I/O).

With server.workers > 1 each worker keeps its own registry; the metrics process
asks every worker for its exposition (Prometheus text format) and health report
and merges them here:

- counters, histograms and summaries: summed over the workers, sample by sample;
- gauges: by what they mean (GAUGE_RULES): connections, cache entries and pool
  figures are summed (every worker has its own pools and caches), the up and
  reload-success gauges take the minimum (down if any worker finds it down),
  build and platform info take one value;
- process_*: one series per process, under a worker label, never summed.

Counters never go backwards in the merged view: the last values a worker process
reported stay counted after it dies, and its replacement's counts are added to
them. Whatever it counted between its last report and its death is lost.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from sockmapd.backends.health import OK


class Merge(enum.Enum):
    """How the values of a gauge from several workers make one."""

    SUM = "sum"
    MIN = "min"
    ONE = "one"


GAUGE_RULES: dict[str, Merge] = {
    "sockmapd_connections_active": Merge.SUM,
    "sockmapd_cache_entries": Merge.SUM,
    "sockmapd_pool_connections_in_use": Merge.SUM,
    "sockmapd_pool_overflow_connections": Merge.SUM,
    # Each worker has a pool of its own: the database sees the sum.
    "sockmapd_pool_size": Merge.SUM,
    "sockmapd_pool_max_connections": Merge.SUM,
    "sockmapd_database_up": Merge.MIN,
    "sockmapd_last_reload_successful": Merge.MIN,
    # The oldest configuration still in force in some worker.
    "sockmapd_last_reload_success_timestamp_seconds": Merge.MIN,
    "sockmapd_build_info": Merge.ONE,
    "python_info": Merge.ONE,
}
# Summed sample by sample; a dead worker's last values stay in the sum.
ADDITIVE = ("counter", "histogram", "summary")
PROCESS_PREFIX = "process_"
WORKER_LABEL = "worker"

_Key = tuple[str, tuple[tuple[str, str], ...]]


def _key(sample: Sample) -> _Key:
    return sample.name, tuple(sorted(sample.labels.items()))


@dataclass(slots=True)
class _Family:
    name: str
    documentation: str
    typ: str
    values: dict[_Key, list[float]] = field(default_factory=dict)


@dataclass(slots=True)
class _Report:
    pid: int
    counts: dict[_Key, float]


class MetricsMerger:
    """Merges worker expositions; remembers each worker's last counts across restarts."""

    def __init__(self) -> None:
        # The last additive samples each worker slot reported, and from which process.
        self._last: dict[str, _Report] = {}
        # What dead worker processes counted, by sample.
        self._retired: dict[_Key, float] = {}
        # Type and help of every additive family seen, so retired counts outlive them.
        self._known: dict[str, tuple[str, str]] = {}
        self._sample_family: dict[str, str] = {}

    def merge(self, expositions: Mapping[str, tuple[int, str]]) -> list[Metric]:
        """Return the merged families of expositions: {worker: (pid, text format)}.

        A worker missing from expositions (dead, or it did not answer in time)
        still counts with its last reported counters.
        """
        families: dict[str, _Family] = {}
        for worker, (pid, text) in sorted(expositions.items()):
            counts: dict[_Key, float] = {}
            for parsed in text_string_to_metric_families(text):
                self._take(families, parsed, worker, counts)
            last = self._last.get(worker)
            if last is not None and last.pid != pid:
                self._retire(last.counts)
            self._last[worker] = _Report(pid, counts)
        answered = set(expositions)
        frozen = dict(self._retired)
        for worker, report in self._last.items():
            if worker not in answered:
                for key, value in report.counts.items():
                    frozen[key] = frozen.get(key, 0.0) + value
        for key, value in frozen.items():
            family_name = self._sample_family[key[0]]
            typ, documentation = self._known[family_name]
            family = families.setdefault(family_name, _Family(family_name, documentation, typ))
            family.values.setdefault(key, []).append(value)
        merged = [_combine(family) for family in families.values()]
        merged.append(_answering(len(answered)))
        return merged

    def _take(
        self, families: dict[str, _Family], parsed: Metric, worker: str, counts: dict[_Key, float]
    ) -> None:
        family = families.setdefault(
            parsed.name, _Family(parsed.name, parsed.documentation, parsed.type)
        )
        is_process = parsed.name.startswith(PROCESS_PREFIX)
        additive = parsed.type in ADDITIVE and not is_process
        if additive:
            self._known[parsed.name] = (parsed.type, parsed.documentation)
        for sample in parsed.samples:
            if is_process:
                sample = sample._replace(labels={**sample.labels, WORKER_LABEL: worker})
            key = _key(sample)
            family.values.setdefault(key, []).append(sample.value)
            if additive:
                counts[key] = sample.value
                self._sample_family[sample.name] = parsed.name

    def _retire(self, counts: dict[_Key, float]) -> None:
        for key, value in counts.items():
            self._retired[key] = self._retired.get(key, 0.0) + value


def _combine(family: _Family) -> Metric:
    metric = Metric(family.name, family.documentation, family.typ)
    rule = Merge.SUM
    if family.typ == "gauge":
        rule = GAUGE_RULES.get(family.name, Merge.SUM)
    for (name, labels), values in family.values.items():
        if rule is Merge.SUM:
            value = sum(values)
        elif rule is Merge.MIN:
            value = min(values)
        else:
            value = max(values)
        metric.add_sample(name, dict(labels), value)
    return metric


def _answering(count: int) -> Metric:
    family = GaugeMetricFamily(
        "sockmapd_workers_answering",
        "Worker processes whose figures are in this scrape (the others count with their"
        " last reported counters).",
    )
    family.add_metric([], count)
    return family


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """What one worker's health check found, or why it gave no answer (error)."""

    databases: dict[str, str]
    error: str | None = None

    @property
    def healthy(self) -> bool:
        """Return True when the worker answered and every database answered it."""
        return self.error is None and all(state == OK for state in self.databases.values())


def merge_health(workers: Mapping[str, WorkerHealth]) -> tuple[bool, dict[str, object]]:
    """Return whether every worker is healthy, and the /healthz document.

    databases holds, per database, "ok" only if every worker that answered found
    it ok, else the first worker's reason prefixed by "worker N: ".
    """
    databases: dict[str, str] = {}
    report: dict[str, object] = {}
    for worker, health in sorted(workers.items(), key=lambda item: _order(item[0])):
        if health.error is not None:
            report[worker] = {"status": "down", "error": health.error}
            continue
        report[worker] = {
            "status": "ok" if health.healthy else "down",
            "databases": health.databases,
        }
        for name, state in health.databases.items():
            if state != OK and databases.get(name, OK) == OK:
                databases[name] = f"worker {worker}: {state}"
            else:
                databases.setdefault(name, state)
    healthy = bool(workers) and all(health.healthy for health in workers.values())
    return healthy, {
        "status": "ok" if healthy else "down",
        "databases": databases,
        "workers": report,
    }


def _order(worker: str) -> tuple[int, str]:
    return (int(worker), "") if worker.isdigit() else (1 << 30, worker)
