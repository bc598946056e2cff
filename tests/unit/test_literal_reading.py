"""--check-config --connect: a server that reads string literals otherwise is reported."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from sockmapd.backends.schema import _check_literal_reading
from sockmapd.config import DatabaseConfig, MapConfig


class _Result:
    def __init__(self, value: str) -> None:
        self._value = value

    def scalar(self) -> str:
        return self._value


class _Connection:
    """Answers the one setting asked for, as a server set that way would."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.asked: list[str] = []

    async def execute(self, statement: Any) -> _Result:
        self.asked.append(str(statement))
        return _Result(self.value)


def _problems(url: str, setting: str, queries: dict[str, str]) -> tuple[list[str], list[str]]:
    db = DatabaseConfig(url=url)
    # Built without validation: a map's query is only read in a dialect inside a Config.
    maps = {
        name: MapConfig.model_construct(database="d", query=query)
        for name, query in queries.items()
    }
    conn = _Connection(setting)
    found = asyncio.run(_check_literal_reading(cast(AsyncConnection, conn), db, "d", maps))
    return [f"{p.path}: {p.message}" for p in found], conn.asked


MYSQL = "mysql+asyncmy://u@db/mail"
BACKSLASH = r"SELECT a FROM t WHERE k = '%s' AND n <> 'a\\b'"
QUOTED = """SELECT a FROM t WHERE k = "%s\""""
PLAIN = "SELECT a FROM t WHERE k = '%s'"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION", []),
        (
            "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES",
            ["databases.d: sql_mode has NO_BACKSLASH_ESCAPES, but the queries of b were read"],
        ),
        ("ANSI_QUOTES", ["databases.d: sql_mode has ANSI_QUOTES, but the queries of q were read"]),
        (
            # What MariaDB reports after SET sql_mode = 'ANSI'.
            "REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI",
            ["databases.d: sql_mode has ANSI_QUOTES, but the queries of q were read"],
        ),
    ],
)
def test_mysql_sql_mode(mode: str, expected: list[str]) -> None:
    found, asked = _problems(MYSQL, mode, {"b": BACKSLASH, "q": QUOTED, "p": PLAIN})
    assert asked == ["SELECT @@SESSION.sql_mode"]
    assert len(found) == len(expected)
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), line


def test_nothing_is_asked_when_no_query_depends_on_it() -> None:
    found, asked = _problems(MYSQL, "NO_BACKSLASH_ESCAPES,ANSI_QUOTES", {"p": PLAIN})
    assert (found, asked) == ([], [])


def test_postgresql_standard_conforming_strings() -> None:
    url = "postgresql+asyncpg://u@db/mail"
    found, asked = _problems(url, "off", {"b": BACKSLASH})
    assert asked == ["SHOW standard_conforming_strings"]
    assert found == [
        "databases.d: standard_conforming_strings is off, but the queries of b were read "
        "with it on (the default since 9.1)"
    ]
    assert _problems(url, "on", {"b": BACKSLASH})[0] == []
