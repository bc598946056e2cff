"""The database health check: SELECT 1 per database, and one probe for concurrent callers."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from sockmapd.backends import Databases, create_databases
from sockmapd.backends.health import OK, HealthCheck, HealthReport
from sockmapd.config import parse_config

CONFIG = """
[databases.good]
url = "sqlite+aiosqlite:///{good}"

[databases.bad]
url = "sqlite+aiosqlite:///{bad}"
"""


def databases(tmp_path: Path) -> Databases:
    good = tmp_path / "good.sqlite3"
    good.touch()
    # SQLite cannot create a file in a directory that does not exist.
    bad = tmp_path / "missing" / "bad.sqlite3"
    config = parse_config(CONFIG.format(good=good, bad=bad))
    return create_databases(config.databases)


def test_report_names_the_database_that_does_not_answer(tmp_path: Path) -> None:
    engines = databases(tmp_path)
    report = asyncio.run(HealthCheck(lambda: engines).check())
    assert report.databases["good"] == OK
    assert report.databases["bad"].startswith("cannot connect: database bad: ")
    assert "unable to open database file" in report.databases["bad"]
    assert "\n" not in report.databases["bad"]
    assert not report.healthy
    assert report.answered == {"good": True, "bad": False}
    asyncio.run(engines.dispose())


def test_healthy_only_when_every_database_is_ok() -> None:
    assert HealthReport({"a": OK, "b": OK}).healthy
    assert HealthReport({}).healthy
    assert not HealthReport({"a": OK, "b": "no answer within 8s"}).healthy


def test_concurrent_callers_share_one_probe(tmp_path: Path) -> None:
    engines = databases(tmp_path)
    probes = 0

    def source() -> Databases:
        nonlocal probes
        probes += 1
        return engines

    check = HealthCheck(source)

    async def burst() -> list[HealthReport]:
        return await asyncio.gather(*(check.check() for _ in range(20)))

    async def main() -> None:
        reports = await burst()
        assert probes == 1
        assert all(report == reports[0] for report in reports)
        # Once it landed, the next caller probes again: no stale answer is kept.
        await check.check()
        assert probes == 2
        # In the same loop: the lookup pool keeps the probe's connection.
        await engines.dispose()

    asyncio.run(main())


def test_a_caller_that_goes_away_leaves_the_probe_to_the_others(tmp_path: Path) -> None:
    engines = databases(tmp_path)
    check = HealthCheck(lambda: engines)

    async def main() -> HealthReport:
        first = asyncio.create_task(check.check())
        second = asyncio.create_task(check.check())
        await asyncio.sleep(0)
        first.cancel()
        return await second

    report = asyncio.run(main())
    assert report.databases["good"] == OK
    asyncio.run(engines.dispose())


def test_only_changes_of_state_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engines = databases(tmp_path)
    check = HealthCheck(lambda: engines)

    async def main() -> None:
        for _ in range(3):
            await check.check()
        await engines.dispose()

    with caplog.at_level(logging.INFO, logger="sockmapd.backends.health"):
        asyncio.run(main())
    assert [r.getMessage().split(":")[1] for r in caplog.records] == [" database bad is down"]


def test_an_exhausted_lookup_pool_is_down_without_a_query(tmp_path: Path) -> None:
    engines = databases(tmp_path)
    pool = engines["good"].pool

    async def main() -> tuple[HealthReport, HealthReport, HealthReport]:
        leases = [
            await pool.acquire(asyncio.get_running_loop().time() + 60) for _ in range(pool.limit)
        ]
        try:
            exhausted = await HealthCheck(lambda: engines).check()
            waiter = asyncio.create_task(pool.acquire(asyncio.get_running_loop().time() + 60))
            await asyncio.sleep(0)
            assert pool.waiting == 1
            # A connection came back and went straight to the waiter.
            pool.release(leases.pop())
            waited = await waiter
            leases.append(waited)
            assert pool.waiting == 0
            still = await HealthCheck(lambda: engines).check()
        finally:
            for lease in leases:
                pool.release(lease)
        try:
            return exhausted, still, await HealthCheck(lambda: engines).check()
        finally:
            await engines.dispose()

    exhausted, still, after = asyncio.run(main())
    assert exhausted.databases["good"] == (
        f"pool exhausted: {pool.limit} of {pool.limit} connections in use, 0 lookups waiting"
    )
    assert still.databases["good"].startswith("pool exhausted: ")
    assert after.databases["good"] == OK
    # A pool too busy to probe did not ask the database: nothing is known of it.
    assert "good" not in exhausted.answered
    assert after.answered["good"] is True


def test_waiting_lookups_make_the_pool_unhealthy(tmp_path: Path) -> None:
    engines = databases(tmp_path)
    pool = engines["good"].pool

    async def main() -> str:
        leases = [
            await pool.acquire(asyncio.get_running_loop().time() + 60) for _ in range(pool.limit)
        ]
        waiters = [
            asyncio.create_task(pool.acquire(asyncio.get_running_loop().time() + 60))
            for _ in range(3)
        ]
        await asyncio.sleep(0)
        try:
            report = await HealthCheck(lambda: engines).check()
        finally:
            for lease in leases:
                pool.release(lease)
            for lease in await asyncio.gather(*waiters):
                pool.release(lease)
            await engines.dispose()
        return report.databases["good"]

    reason = asyncio.run(main())
    assert reason == (
        f"pool exhausted: {pool.limit} of {pool.limit} connections in use, 3 lookups waiting"
    )
