"""Each map's SELECT: identifiers quoted, the key only ever a bound parameter."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite

from sockmapd.config import MapConfig
from sockmapd.lookup.statements import KEY_PARAM, build_statement

DIALECTS = {
    "sqlite": sqlite.dialect(),
    "mysql": mysql.dialect(),
    "postgresql": postgresql.dialect(),
}


def sql(config: MapConfig, dialect: str) -> str:
    """Return the compiled SELECT on one line."""
    return " ".join(str(build_statement(config).compile(dialect=DIALECTS[dialect])).split())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_presence_check_selects_the_key_column(dialect: str) -> None:
    text = sql(MapConfig(database="d", table="users", key="address"), dialect)
    q = "`" if dialect == "mysql" else '"'
    assert text == (
        f"SELECT {q}address{q} FROM {q}users{q} WHERE {q}address{q} = "
        + {"sqlite": "?", "mysql": "%s", "postgresql": "%(x_s)s::VARCHAR"}[dialect]
    )


def test_value_reason_and_schema() -> None:
    config = MapConfig(
        database="d", table="postfix.blackwhite", key="name", value="status", reason="reason"
    )
    text = sql(config, "postgresql")
    assert text == (
        'SELECT "status", "reason" FROM "postfix"."blackwhite" WHERE "name" = %(x_s)s::VARCHAR'
    )


def test_reserved_words_are_quoted() -> None:
    text = sql(MapConfig(database="d", table="select", key="key", value="order"), "mysql")
    assert text == "SELECT `order` FROM `select` WHERE `key` = %s"


def test_key_is_a_bound_parameter_not_text() -> None:
    statement = build_statement(MapConfig(database="d", table="t", key="k"))
    compiled = statement.compile(dialect=DIALECTS["sqlite"])
    assert list(compiled.params) == [KEY_PARAM]
    evil = "x'OR'1'='1"
    rendered = statement.compile(
        dialect=DIALECTS["sqlite"], compile_kwargs={"render_postcompile": True}
    )
    assert evil not in str(rendered)
