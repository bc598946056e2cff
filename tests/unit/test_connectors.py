"""Host-by-host connecting: per-host timeouts, skipping failed hosts, standby preference."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sockmapd.backends.connectors import Connector, DatabaseUnavailable
from sockmapd.config import DatabaseConfig, Endpoint


def database(**extra: Any) -> DatabaseConfig:
    fields: dict[str, Any] = {
        "driver": "postgresql",
        "hosts": ["a", "b", "c"],
        "name": "mail",
        "user": "postmap",
        "connect_timeout": 0.2,
        "retry_interval": 60.0,
    }
    fields.update(extra)
    return DatabaseConfig(**fields)


class FakeConnection:
    def __init__(self, host: str, *, standby: bool = False) -> None:
        self.host = host
        self.standby = standby
        self.closed = False

    async def fetchval(self, sql: str) -> object:
        if "pg_is_in_recovery" in sql:
            return self.standby
        return "off"

    async def close(self) -> None:
        self.closed = True


def connector(db: DatabaseConfig, behaviour: dict[str, str]) -> tuple[Connector, list[str]]:
    """Return a Connector whose driver does, per host: ok, standby, refuse or hang."""
    tried: list[str] = []
    made = Connector("mail", db)

    async def connect(endpoint: Endpoint) -> FakeConnection:
        assert endpoint.host is not None
        tried.append(endpoint.host)
        action = behaviour.get(endpoint.host, "ok")
        if action == "refuse":
            raise ConnectionRefusedError(111, "Connection refused")
        if action == "hang":
            await asyncio.sleep(3600)
        return FakeConnection(endpoint.host, standby=action == "standby")

    made._connect_one = connect  # type: ignore[assignment]
    return made, tried


def run(made: Connector) -> FakeConnection:
    result: FakeConnection = asyncio.run(made())
    return result


def test_first_host_wins_in_order() -> None:
    made, tried = connector(database(), {})
    assert run(made).host == "a"
    assert tried == ["a"]


def test_refused_host_is_skipped_and_remembered() -> None:
    made, tried = connector(database(), {"a": "refuse"})
    assert run(made).host == "b"
    assert run(made).host == "b"
    assert tried == ["a", "b", "b"]


def test_silent_host_costs_one_connect_timeout_not_all() -> None:
    made, tried = connector(database(), {"a": "hang", "b": "hang"})
    assert run(made).host == "c"
    assert tried == ["a", "b", "c"]


def test_all_hosts_down_raises_with_every_reason() -> None:
    made, _ = connector(database(), {"a": "refuse", "b": "hang", "c": "refuse"})
    with pytest.raises(DatabaseUnavailable) as caught:
        run(made)
    text = str(caught.value)
    assert "a:5432: [Errno 111] Connection refused" in text
    assert "b:5432: no answer within connect_timeout=0.2s" in text
    assert isinstance(caught.value, ConnectionError)


def test_when_all_failed_they_are_all_tried_again() -> None:
    behaviour = {"a": "refuse", "b": "refuse", "c": "refuse"}
    made, tried = connector(database(), behaviour)
    with pytest.raises(DatabaseUnavailable):
        run(made)
    behaviour["b"] = "ok"
    assert run(made).host == "b"
    assert tried == ["a", "b", "c", "a", "b"]


def test_prefer_standby_picks_the_standby_after_a_primary() -> None:
    made, tried = connector(
        database(target_session_attrs="prefer-standby"), {"a": "ok", "b": "standby"}
    )
    conn = run(made)
    assert conn.host == "b"
    assert tried == ["a", "b"]


def test_prefer_standby_falls_back_to_a_primary() -> None:
    made, _ = connector(database(target_session_attrs="prefer-standby"), {})
    assert run(made).host == "a"


@pytest.mark.parametrize(("attrs", "host"), [("primary", "b"), ("standby", "a")])
def test_strict_roles(attrs: str, host: str) -> None:
    made, _ = connector(database(target_session_attrs=attrs), {"a": "standby", "b": "ok"})
    assert run(made).host == host


def test_no_host_with_the_wanted_role_is_unavailable() -> None:
    made, _ = connector(database(target_session_attrs="standby"), {})
    with pytest.raises(DatabaseUnavailable, match="not standby"):
        run(made)
