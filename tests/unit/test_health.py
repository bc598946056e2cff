"""The database health check: SELECT 1 per database, and one probe for concurrent callers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from sockmapd.backends import Engines, create_engines
from sockmapd.backends.health import OK, HealthCheck, HealthReport
from sockmapd.config import DatabaseConfig, parse_config

CONFIG = """
[databases.good]
url = "sqlite+aiosqlite:///{good}"

[databases.bad]
url = "sqlite+aiosqlite:///{bad}"
"""


def databases(tmp_path: Path) -> tuple[Engines, dict[str, DatabaseConfig]]:
    good = tmp_path / "good.sqlite3"
    good.touch()
    # SQLite cannot create a file in a directory that does not exist.
    bad = tmp_path / "missing" / "bad.sqlite3"
    config = parse_config(CONFIG.format(good=good, bad=bad))
    return create_engines(config.databases), dict(config.databases)


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for a test: pooled connections are closed on the loop that opened them."""
    with asyncio.Runner() as running:
        yield running


def test_report_names_the_database_that_does_not_answer(
    tmp_path: Path, runner: asyncio.Runner
) -> None:
    engines, configs = databases(tmp_path)
    report = runner.run(HealthCheck(lambda: (engines, configs)).check())
    assert report.databases["good"] == OK
    assert report.databases["bad"].startswith("cannot connect: database bad: ")
    assert "unable to open database file" in report.databases["bad"]
    assert "\n" not in report.databases["bad"]
    assert not report.healthy
    runner.run(engines.dispose())


def test_healthy_only_when_every_database_is_ok() -> None:
    assert HealthReport({"a": OK, "b": OK}).healthy
    assert HealthReport({}).healthy
    assert not HealthReport({"a": OK, "b": "no answer within 8s"}).healthy


def test_concurrent_callers_share_one_probe(tmp_path: Path, runner: asyncio.Runner) -> None:
    engines, configs = databases(tmp_path)
    probes = 0

    def source() -> tuple[Engines, dict[str, DatabaseConfig]]:
        nonlocal probes
        probes += 1
        return engines, configs

    check = HealthCheck(source)

    async def burst() -> list[HealthReport]:
        return await asyncio.gather(*(check.check() for _ in range(20)))

    reports = runner.run(burst())
    assert probes == 1
    assert all(report == reports[0] for report in reports)
    # Once it landed, the next caller probes again: no stale answer is kept.
    runner.run(check.check())
    assert probes == 2
    runner.run(engines.dispose())


def test_a_caller_that_goes_away_leaves_the_probe_to_the_others(
    tmp_path: Path, runner: asyncio.Runner
) -> None:
    engines, configs = databases(tmp_path)
    check = HealthCheck(lambda: (engines, configs))

    async def main() -> HealthReport:
        first = asyncio.create_task(check.check())
        second = asyncio.create_task(check.check())
        await asyncio.sleep(0)
        first.cancel()
        return await second

    report = runner.run(main())
    assert report.databases["good"] == OK
    runner.run(engines.dispose())


def test_only_changes_of_state_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, runner: asyncio.Runner
) -> None:
    engines, configs = databases(tmp_path)
    check = HealthCheck(lambda: (engines, configs))
    with caplog.at_level(logging.INFO, logger="sockmapd.backends.health"):
        for _ in range(3):
            runner.run(check.check())
    assert [r.getMessage().split(":")[1] for r in caplog.records] == [" database bad is down"]
    runner.run(engines.dispose())
