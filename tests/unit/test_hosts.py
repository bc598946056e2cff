"""Host order and the retry interval of failed hosts."""

from __future__ import annotations

import pytest

from sockmapd.backends.hosts import HostList


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(order: str = "in_order") -> tuple[HostList[str], Clock]:
    clock = Clock()
    hosts: HostList[str] = HostList(
        ["a", "b", "c"],
        order=order,  # type: ignore[arg-type]
        retry_interval=60.0,
        clock=clock,
        shuffle=lambda items: items.reverse(),
    )
    return hosts, clock


def test_in_order_by_default() -> None:
    hosts, _ = make()
    assert hosts.candidates() == ["a", "b", "c"]


def test_random_order_uses_the_shuffle() -> None:
    hosts, _ = make("random")
    assert hosts.candidates() == ["c", "b", "a"]


def test_failed_host_is_skipped_for_the_retry_interval() -> None:
    hosts, clock = make()
    hosts.failed("a")
    assert hosts.candidates() == ["b", "c"]
    assert hosts.is_skipped("a")
    clock.now += 59.9
    assert hosts.candidates() == ["b", "c"]
    clock.now += 0.2
    assert hosts.candidates() == ["a", "b", "c"]
    assert not hosts.is_skipped("a")


def test_success_makes_a_host_preferred_again() -> None:
    hosts, _ = make()
    hosts.failed("a")
    hosts.succeeded("a")
    assert hosts.candidates() == ["a", "b", "c"]


def test_when_every_host_failed_all_are_tried_soonest_first() -> None:
    hosts, clock = make()
    hosts.failed("b")
    clock.now += 1
    hosts.failed("a")
    clock.now += 1
    hosts.failed("c")
    assert hosts.candidates() == ["b", "a", "c"]


def test_empty_host_list_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one host"):
        HostList([], order="in_order", retry_interval=1.0)
