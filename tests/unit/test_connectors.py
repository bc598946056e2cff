"""Host-by-host connecting: per-host timeouts, skipping failed hosts, standby preference."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sockmapd.backends.connectors import Connector
from sockmapd.backends.errors import DatabaseError, DatabaseUnavailable
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
    def __init__(self, host: str, *, standby: bool = False, read_only: bool = False) -> None:
        self.host = host
        self.standby = standby
        self.read_only = read_only
        self.executed: list[str] = []
        self.closed = False

    async def fetchval(self, sql: str) -> object:
        if "pg_is_in_recovery" in sql:
            return self.standby
        return "on" if self.read_only else "off"

    async def execute(self, sql: str) -> str:
        if self.host == "breaks":
            raise ConnectionResetError(104, "Connection reset by peer")
        self.executed.append(sql)
        return "SET"

    async def close(self) -> None:
        self.closed = True


def connector(db: DatabaseConfig, behaviour: dict[str, str]) -> tuple[Connector, list[str]]:
    """Return a Connector whose driver does, per host: ok, standby, read-only, refuse or hang."""
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
        return FakeConnection(
            endpoint.host, standby=action == "standby", read_only=action == "read-only"
        )

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
    # A DatabaseError, never an OSError: nothing can take it for a lost connection.
    assert isinstance(caught.value, DatabaseError)
    assert not isinstance(caught.value, OSError)


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


@pytest.mark.parametrize(
    ("attrs", "behaviour", "host"),
    [
        ("read-write", {"a": "standby", "b": "read-only"}, "c"),
        ("read-only", {"a": "ok", "b": "read-only"}, "b"),
        ("read-only", {"a": "ok", "b": "standby"}, "b"),
    ],
)
def test_read_write_and_read_only_judge_the_server_then_make_the_session_read_only(
    attrs: str, behaviour: dict[str, str], host: str
) -> None:
    made, _ = connector(database(target_session_attrs=attrs), behaviour)
    conn = run(made)
    assert conn.host == host
    # The role check needs a session without sockmapd's own read-only setting, so the
    # setting is applied once the host is accepted: lookups can never write.
    assert conn.executed == ["SET SESSION default_transaction_read_only = on"]


def test_a_session_that_cannot_be_made_read_only_is_closed_and_the_next_host_used() -> None:
    made = Connector("mail", database(hosts=["breaks", "b"], target_session_attrs="read-write"))
    opened: list[FakeConnection] = []

    async def connect(endpoint: Endpoint) -> FakeConnection:
        assert endpoint.host is not None
        opened.append(FakeConnection(endpoint.host))
        return opened[-1]

    made._connect_one = connect  # type: ignore[assignment]
    assert run(made).host == "b"
    assert opened[0].closed


@pytest.mark.parametrize(
    ("attrs", "standby", "at_startup"),
    [
        (None, False, True),
        ("any", False, True),
        ("primary", False, True),
        ("standby", True, True),
        ("prefer-standby", True, True),
        ("read-write", False, False),
        ("read-only", True, False),
    ],
)
def test_every_session_is_made_read_only_exactly_once(
    attrs: str | None, standby: bool, at_startup: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncpg

    settings: dict[str, str] = {}

    async def fake_connect(**kwargs: Any) -> FakeConnection:
        settings.update(kwargs["server_settings"])
        return FakeConnection(kwargs["host"], standby=standby)

    monkeypatch.setattr(asyncpg, "connect", fake_connect)
    conn = run(Connector("mail", database(target_session_attrs=attrs)))
    assert settings["application_name"] == "sockmapd"
    # Only read-write and read-only must see the server's own default: they alone pay
    # for one more statement once the host is accepted.
    if at_startup:
        assert settings["default_transaction_read_only"] == "on"
        assert conn.executed == []
    else:
        assert "default_transaction_read_only" not in settings
        assert conn.executed == ["SET SESSION default_transaction_read_only = on"]


def captured_connect(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], *, standby: bool = False
) -> None:
    import asyncpg

    async def fake_connect(**given: Any) -> FakeConnection:
        kwargs.update(given)
        return FakeConnection(given["host"], standby=standby)

    monkeypatch.setattr(asyncpg, "connect", fake_connect)


@pytest.mark.parametrize("attrs", [None, "any"])
def test_behind_pgbouncer_no_session_setting_and_no_named_statements(
    attrs: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs: dict[str, Any] = {}
    captured_connect(monkeypatch, kwargs)
    conn = run(Connector("mail", database(pgbouncer=True, target_session_attrs=attrs)))
    # PgBouncer refuses startup parameters it does not track, and a SET SESSION would
    # stay on one server connection: only application_name, which it tracks.
    assert kwargs["server_settings"] == {"application_name": "sockmapd"}
    assert conn.executed == []
    # Without the cache asyncpg prepares only the unnamed statement.
    assert kwargs["statement_cache_size"] == 0


def test_without_pgbouncer_statements_stay_prepared(monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs: dict[str, Any] = {}
    captured_connect(monkeypatch, kwargs)
    run(Connector("mail", database()))
    assert kwargs["statement_cache_size"] == 100
    assert kwargs["server_settings"]["default_transaction_read_only"] == "on"


def test_a_refused_host_passes_the_drivers_hint_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncpg

    from sockmapd.backends.drivers import PostgresDriver

    async def refuse(**given: Any) -> FakeConnection:
        exc = asyncpg.ProtocolViolationError(
            "unsupported startup parameter: default_transaction_read_only"
        )
        exc.sqlstate = "08P01"  # type: ignore[attr-defined]
        raise exc

    monkeypatch.setattr(asyncpg, "connect", refuse)
    made = Connector("mail", database(), explain=PostgresDriver("mail").translate)
    with pytest.raises(DatabaseUnavailable, match="unsupported startup parameter") as caught:
        run(made)
    assert caught.value.hint is not None
    assert caught.value.hint.endswith("set pgbouncer = true in [databases.mail]")


def test_a_refused_host_without_a_hint_gives_none() -> None:
    made, _ = connector(database(hosts=["a"]), {"a": "refuse"})
    with pytest.raises(DatabaseUnavailable) as caught:
        run(made)
    assert caught.value.hint is None
