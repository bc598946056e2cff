"""Client networks allowed over TCP, and denial logging without floods."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from sockmapd.server.access import DENIAL_LOG_INTERVAL, MAX_REMEMBERED_DENIALS, AccessList

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.1", False),
        ("::ffff:192.0.2.1", False),
        ("2001:db8::1", False),
        ("fe80::1%eth0", False),
        ("not an address", False),
        ("", False),
    ],
)
def test_loopback_only(host: str, allowed: bool) -> None:
    assert AccessList(LOOPBACK).allows(host) is allowed


def test_empty_list_allows_no_tcp_client() -> None:
    assert not AccessList([]).allows("127.0.0.1")


def test_every_ipv4_address() -> None:
    access = AccessList([ipaddress.ip_network("0.0.0.0/0")])
    assert access.allows("203.0.113.7")
    assert not access.allows("2001:db8::1")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_denials_logged_once_per_address_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    access = AccessList(LOOPBACK, clock=clock)
    with caplog.at_level(logging.WARNING, logger="sockmapd.server.access"):
        for _ in range(5):
            access.log_denied("192.0.2.1")
        access.log_denied("192.0.2.2")
        clock.now += DENIAL_LOG_INTERVAL + 1
        access.log_denied("192.0.2.1")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "client 192.0.2.1 denied by server.allow; connection closed",
        "client 192.0.2.2 denied by server.allow; connection closed",
        "client 192.0.2.1 denied by server.allow; connection closed",
    ]


def test_remembered_denials_are_bounded() -> None:
    clock = Clock()
    access = AccessList(LOOPBACK, clock=clock)
    for i in range(MAX_REMEMBERED_DENIALS + 50):
        clock.now += 0.001
        access.log_denied(f"10.0.{i // 256}.{i % 256}")
    assert len(access._last_logged) == MAX_REMEMBERED_DENIALS
