"""The shipped monitoring files against the real tools and a real sockmapd.

promtool (Debian's prometheus package) checks and unit-tests the alerting rules of
contrib/prometheus/ and lints a live scrape of a running sockmapd; the Grafana
dashboard of contrib/grafana/ is checked as a dashboard (schema version, layout,
data source) and every query of it, and of the alerts, must parse (promtool) and
name metrics that the live scrape has.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import _daemon_factory, make_sqlite
from tests.integration.daemon import free_port
from tests.integration.test_metrics import SQLITE_CONFIG

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "contrib" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "contrib" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "sockmapd.json"
WAIT = 30.0
# Grafana 10.4 and 11 write schema version 39; older ones migrate a newer
# dashboard badly, newer ones migrate this one on load.
SCHEMA_VERSION = 39
# Every metric a query can name: sockmapd's own and the process and platform collectors'.
METRIC = re.compile(r"\b(?:sockmapd|process|python)_[a-z0-9_]+\b")
# The Grafana variables the queries use, and what stands for them in a rule file.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$instance": ".+"}


def promtool_binary() -> str:
    """Return promtool; fail under SOCKMAPD_REQUIRE_PROMTOOL=1, else skip, if absent."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("SOCKMAPD_REQUIRE_PROMTOOL") == "1":
        pytest.fail("promtool is not installed, and SOCKMAPD_REQUIRE_PROMTOOL=1 requires it")
    pytest.skip("promtool is not installed (Debian package prometheus)")


@pytest.fixture(scope="module")
def promtool() -> str:
    """Return the path of promtool."""
    return promtool_binary()


def run(command: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """Run a command to its end and return what it printed."""
    return subprocess.run(
        command, input=stdin.decode(), capture_output=True, text=True, timeout=120, check=False
    )


def get(port: int, path: str, headers: dict[str, str], method: str = "GET") -> Any:
    """Return the response of one HTTP request, read whole."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        response.body = response.read()
        return response
    finally:
        conn.close()


@pytest.fixture(scope="module")
def live_scrape(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Scrapes of a running sockmapd after some traffic: text, OpenMetrics, gzipped text."""
    tmp_path = tmp_path_factory.mktemp("monitoring")
    metrics_port = free_port()
    text = SQLITE_CONFIG.format(metrics_port=metrics_port, db=make_sqlite(tmp_path / "m.sqlite3"))
    with _daemon_factory(tmp_path) as start_daemon:
        daemon = start_daemon(config_text=text, name="monitoring.toml")
        client = daemon.client()
        try:
            assert client.ask("recipient", "alice@example.com") == b"OK alice@example.com"
            assert client.ask("recipient", "nobody@example.com") == b"NOTFOUND "
            assert client.ask("broken", "k").startswith(b"TEMP ")
            assert client.ask("nosuchmap", "k").startswith(b"TEMP ")
            for _ in range(2):
                assert client.ask("cached", "bob@example.com") == b"OK bob@example.com"
        finally:
            client.close()
        plain = get(metrics_port, "/metrics", {})
        openmetrics = get(
            metrics_port,
            "/metrics",
            {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"},
        )
        zipped = get(metrics_port, "/metrics", {"Accept-Encoding": "gzip"})
        head = get(metrics_port, "/metrics", {}, method="HEAD")
    assert plain.status == openmetrics.status == zipped.status == head.status == 200
    assert plain.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    assert openmetrics.getheader("Content-Type").startswith("application/openmetrics-text;")
    assert zipped.getheader("Content-Encoding") == "gzip"
    assert head.body == b""
    assert int(head.getheader("Content-Length")) > 0
    return {
        "text": plain.body,
        "openmetrics": openmetrics.body,
        "gzip": gzip.decompress(zipped.body),
    }


@pytest.fixture(scope="module")
def scraped_names(live_scrape: dict[str, bytes]) -> set[str]:
    """Return the name of every sample of the live text scrape."""
    return {
        sample.name
        for family in text_string_to_metric_families(live_scrape["text"].decode())
        for sample in family.samples
    }


def test_alert_rules_pass_promtool_check_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(ALERTS)])
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_alert_rules_pass_their_promtool_tests(promtool: str) -> None:
    result = run([promtool, "test", "rules", str(ALERT_TESTS)])
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_metrics_finds_no_problem_in_a_live_scrape(
    promtool: str, live_scrape: dict[str, bytes]
) -> None:
    result = run([promtool, "check", "metrics"], live_scrape["text"])
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_the_live_scrape_is_the_same_in_every_encoding(live_scrape: dict[str, bytes]) -> None:
    def names(families: Iterable[Metric]) -> set[str]:
        return {sample.name for family in families for sample in family.samples}

    text = names(text_string_to_metric_families(live_scrape["text"].decode()))
    zipped = names(text_string_to_metric_families(live_scrape["gzip"].decode()))
    # The OpenMetrics parser refuses anything that is not valid OpenMetrics.
    openmetrics = names(openmetrics_families(live_scrape["openmetrics"].decode()))
    assert text == zipped == openmetrics
    assert "_created" not in live_scrape["text"].decode()


def test_the_live_scrape_has_the_process_and_database_figures(scraped_names: set[str]) -> None:
    for name in (
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
        "sockmapd_database_up",
        "sockmapd_database_query_duration_seconds_bucket",
        "sockmapd_pool_max_connections",
        "sockmapd_last_reload_successful",
    ):
        assert name in scraped_names, name


def dashboard() -> dict[str, Any]:
    """Return the shipped dashboard."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    """Return every panel of the dashboard that is not a row."""
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["schemaVersion"] == SCHEMA_VERSION
    assert board["uid"] == "sockmapd"
    assert board["title"]
    assert board["id"] is None  # Grafana assigns it on import
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert min(grid["w"], grid["h"]) > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        taken = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not taken & cells, f"panel {panel['title']!r} overlaps another"
        cells |= taken
    for panel in panels():
        assert panel["type"] in ("timeseries", "stat"), panel["title"]
        assert panel["title"]
        assert panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    queries = " ".join(t["expr"] for panel in panels() for t in panel["targets"])
    for needed in (
        "sockmapd_requests_total",
        "histogram_quantile(0.99, sum by (le) (rate(sockmapd_request_duration_seconds_bucket",
        "sockmapd_cache_hits_total",
        "sockmapd_pool_connections_in_use",
        "sockmapd_database_errors_total",
        "sockmapd_database_query_duration_seconds_bucket",
    ):
        assert needed in queries, needed


def rule_queries() -> list[tuple[str, str]]:
    """Return (where, PromQL) of every dashboard query and every alert expression."""
    queries = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in panels()
        for target in panel["targets"]
    ]
    instance = dashboard()["templating"]["list"][1]
    queries.append(("variable instance", instance["definition"].removeprefix("label_values(")))
    for group in _alert_groups():
        for rule in group["rules"]:
            queries.append((f"alert {rule['alert']}", rule["expr"]))
    return queries


def _alert_groups() -> list[dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    groups: list[dict[str, Any]] = loaded["groups"]
    return groups


def test_every_query_names_only_metrics_of_the_live_scrape(scraped_names: set[str]) -> None:
    for where, query in rule_queries():
        names = set(METRIC.findall(query))
        assert names, f"{where}: names no metric: {query}"
        assert names <= scraped_names, f"{where}: not in a live scrape: {names - scraped_names}"


def test_every_dashboard_query_parses_as_promql(promtool: str, tmp_path: Path) -> None:
    rules = []
    for index, panel in enumerate(panels()):
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, stand_in in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, stand_in)
            assert "$" not in expr, f"{panel['title']!r}: unknown variable in {expr}"
            rules.append({"record": f"sockmapd:panel{index}:{target['refId']}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
