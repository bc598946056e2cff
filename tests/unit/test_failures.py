"""FailureLog: the first failure at once, repeats counted, nothing hidden."""

from __future__ import annotations

import logging

import pytest

from sockmapd.lookup.failures import FailureLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def failures(clock: Clock) -> FailureLog:
    return FailureLog(logging.getLogger("test.failures"), window=10.0, clock=clock)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_first_failure_is_logged_at_once(
    failures: FailureLog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "test.failures"):
        failures.failed("main", "timeout", "map %s: timed out", "a")
    assert messages(caplog) == ["map a: timed out"]
    assert caplog.records[0].levelno == logging.WARNING


def test_repeats_are_summarised_at_the_next_failure_after_the_window(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "test.failures"):
        for i in range(4212):
            failures.failed("main", "timeout", "map %s: timed out %d", "a", i)
        assert len(caplog.records) == 1
        clock.now += 10.0
        failures.failed("main", "timeout", "map %s: timed out again", "a")
    assert messages(caplog) == [
        "map a: timed out 0",
        "database main: 4,211 more like this in the last 10 s (timeout); "
        "last: map a: timed out 4211",
        "map a: timed out again",
    ]


def test_a_failure_of_another_key_closes_an_ended_window(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "test.failures"):
        failures.failed("main", "timeout", "first")
        failures.failed("main", "timeout", "second")
        clock.now += 12.0
        failures.failed("other", "query failed", "elsewhere")
    assert messages(caplog) == [
        "first",
        "database main: 1 more like this in the last 10 s (timeout); last: second",
        "elsewhere",
    ]


def test_keys_are_counted_apart(failures: FailureLog, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "test.failures"):
        failures.failed("main", "timeout", "main timeout")
        failures.failed("main", "query failed", "main query")
        failures.failed("backup", "timeout", "backup timeout")
        failures.failed("main", "timeout", "main timeout")
    assert messages(caplog) == ["main timeout", "main query", "backup timeout"]


def test_flush_writes_every_pending_summary_once(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "test.failures"):
        failures.failed("main", "timeout", "t")
        failures.failed("main", "timeout", "t")
        failures.failed("main", "timeout", "t")
        failures.failed("backup", "timeout", "alone")
        clock.now += 2.5
        failures.flush()
        failures.flush()
    assert messages(caplog) == [
        "t",
        "alone",
        "database main: 2 more like this in the last 2.5 s (timeout); last: t",
    ]


def test_a_window_without_repeats_writes_no_summary(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "test.failures"):
        failures.failed("main", "timeout", "once")
        clock.now += 30.0
        failures.failed("main", "timeout", "twice")
        failures.flush()
    assert messages(caplog) == ["once", "twice"]


def test_the_summary_has_the_highest_level_of_its_repeats(
    failures: FailureLog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "test.failures"):
        failures.failed("main", "lost connection", "lost", level=logging.INFO)
        failures.failed("main", "lost connection", "lost", level=logging.INFO)
        failures.flush()
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
