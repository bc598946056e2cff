"""The supervisor's pure parts: signal mapping, restart backoff, exit descriptions."""

from __future__ import annotations

import itertools
import signal

import pytest

from sockmapd.server.supervisor import (
    RESTART_BASE_DELAY,
    RESTART_MAX_DELAY,
    STABLE_SECONDS,
    SUPERVISED_SIGNALS,
    Action,
    action_for,
    deaths_after,
    describe_exit,
    forwarded_signal,
    restart_delay,
)


@pytest.mark.parametrize(
    ("signum", "action", "passed"),
    [
        (signal.SIGHUP, Action.RELOAD, signal.SIGHUP),
        (signal.SIGUSR1, Action.REOPEN_LOG, signal.SIGUSR1),
        (signal.SIGUSR2, Action.CLEAR_CACHES, signal.SIGUSR2),
        (signal.SIGTERM, Action.STOP, signal.SIGTERM),
        (signal.SIGINT, Action.STOP, signal.SIGTERM),
        (signal.SIGCHLD, Action.REAP, None),
    ],
)
def test_each_supervised_signal_has_an_action(
    signum: int, action: Action, passed: int | None
) -> None:
    assert action_for(signum) is action
    assert forwarded_signal(signum) == passed


def test_every_supervised_signal_is_mapped() -> None:
    assert {action_for(s) for s in SUPERVISED_SIGNALS} == set(Action)


def test_an_unsupervised_signal_is_refused() -> None:
    with pytest.raises(ValueError, match="not supervised"):
        action_for(signal.SIGWINCH)


def test_restart_delay_doubles_up_to_its_cap() -> None:
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays[0] == RESTART_BASE_DELAY
    assert delays[1] == 2 * RESTART_BASE_DELAY
    assert delays[2] == 4 * RESTART_BASE_DELAY
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] == RESTART_MAX_DELAY


@pytest.mark.parametrize("deaths", [0, 1, 100, 10**9])
def test_restart_delay_stays_bounded(deaths: int) -> None:
    assert RESTART_BASE_DELAY <= restart_delay(deaths) <= RESTART_MAX_DELAY


def test_a_crash_loop_counts_up_and_a_stable_run_starts_again() -> None:
    assert deaths_after(0, 0.1) == 1
    assert deaths_after(3, 0.1) == 4
    assert deaths_after(3, STABLE_SECONDS - 0.01) == 4
    assert deaths_after(3, STABLE_SECONDS) == 1
    assert deaths_after(7, 3600.0) == 1


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (0, "exited with status 0"),
        (3 << 8, "exited with status 3"),
        (signal.SIGKILL, "killed by SIGKILL"),
        (signal.SIGSEGV | 0x80, "killed by SIGSEGV"),
    ],
)
def test_describe_exit(status: int, words: str) -> None:
    assert describe_exit(status) == words
