"""MapLookup and MapQuery over a scripted pool: which queries run with which values, and answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from sockmapd.backends.errors import ConnectionLost, QueryFailed
from sockmapd.backends.pool import DriverPool
from sockmapd.config import DatabaseConfig, MapConfig
from sockmapd.lookup.maps import MapLookup
from sockmapd.protocol import NOTFOUND_REPLY, Reply, Status

Rows = Sequence[Sequence[object]]


class ScriptedPool:
    """Answers each query from answer(args); records the values every query was run with."""

    def __init__(self, answers: dict[tuple[str, ...], Rows | BaseException]) -> None:
        self.answers = answers
        self.queries: list[tuple[str, ...]] = []

    async def fetch(self, sql: str, args: tuple[str, ...], deadline: float) -> Rows:
        self.queries.append(args)
        answer = self.answers.get(args, [])
        if isinstance(answer, BaseException):
            raise answer
        return answer


def lookup_on(pool: ScriptedPool, **options: Any) -> MapLookup:
    if "query" not in options:
        options = {"table": "t", "key": "k", **options}
    config = MapConfig(database="db", **options)
    database = DatabaseConfig(url="sqlite+aiosqlite:///unused.sqlite3")
    engine = create_async_engine("sqlite+aiosqlite:///unused.sqlite3")
    return MapLookup("m", config, engine, database, pool=cast(DriverPool, pool))


def run(lookup: MapLookup, key: str) -> Reply:
    return asyncio.run(lookup.lookup(key))  # type: ignore[arg-type]


def test_a_key_only_map_binds_the_whole_key() -> None:
    pool = ScriptedPool({("u@example.com",): [("v",)]})
    assert run(lookup_on(pool), "u@example.com") == Reply.ok("v")
    assert pool.queries == [("u@example.com",)]


def test_an_empty_key_is_never_queried() -> None:
    pool = ScriptedPool({})
    assert run(lookup_on(pool), "") == NOTFOUND_REPLY
    assert run(lookup_on(pool, query="SELECT v FROM t WHERE d = '%d'"), "") == NOTFOUND_REPLY
    assert pool.queries == []


def test_a_query_of_key_parts_binds_them_in_the_statements_order() -> None:
    pool = ScriptedPool({("example.com", "u"): [("v",)]})
    lookup = lookup_on(pool, query="SELECT v FROM t WHERE d = '%d' AND u = '%u'")
    assert run(lookup, "u@example.com") == Reply.ok("v")
    assert pool.queries == [("example.com", "u")]


def test_a_key_a_query_expansion_cannot_fill_is_not_found_without_a_query() -> None:
    pool = ScriptedPool({})
    lookup = lookup_on(pool, query="SELECT v FROM t WHERE d = '%d'")
    assert run(lookup, "unqualified") == NOTFOUND_REPLY
    assert pool.queries == []


def test_result_format_needs_the_keys_parts() -> None:
    pool = ScriptedPool({("u@example.com",): [("box",)]})
    lookup = lookup_on(pool, result_format="%s@%D")
    assert run(lookup, "u@example.com") == Reply.ok("box@example.com")
    # A key without the part result_format uses is not queried.
    assert run(lookup, "unqualified") == NOTFOUND_REPLY
    assert pool.queries == [("u@example.com",)]


@pytest.mark.parametrize(
    ("rows", "reply"),
    [
        ([], NOTFOUND_REPLY),
        ([("v",)], Reply.ok("v")),
        ([("",)], NOTFOUND_REPLY),
        ([(None,)], NOTFOUND_REPLY),
        ([(42,)], Reply.ok("42")),
        ([(b"bytes",)], Reply.ok("bytes")),
        ([("a",), ("b",)], Reply.ok("a,b")),
        ([("a", "b")], Reply.ok("a,b")),
    ],
)
def test_rows_answer_as_format_rows_says(rows: Rows, reply: Reply) -> None:
    pool = ScriptedPool({("k",): rows})
    assert run(lookup_on(pool), "k") == reply


def test_the_reason_column_answers_value_and_reason() -> None:
    pool = ScriptedPool({("k",): [("REJECT", "spam")]})
    assert run(lookup_on(pool, value="v", reason="r"), "k") == Reply.ok("REJECT spam")


def test_a_search_stops_at_the_first_answer_that_is_not_notfound() -> None:
    pool = ScriptedPool({("@example.com",): [("catchall",)]})
    lookup = lookup_on(pool, search=["%s", "@%d", "%u"])
    assert run(lookup, "u@example.com") == Reply.ok("catchall")
    assert pool.queries == [("u@example.com",), ("@example.com",)]


def test_a_failed_search_key_does_not_fall_through_to_a_wider_key() -> None:
    pool = ScriptedPool({("u@example.com",): QueryFailed("down")})
    lookup = lookup_on(pool, search=["%s", "@%d"])
    assert run(lookup, "u@example.com").status is Status.TEMP
    assert pool.queries == [("u@example.com",)]


def test_a_lost_connection_is_retried_once() -> None:
    class LosesOnce(ScriptedPool):
        async def fetch(self, sql: str, args: tuple[str, ...], deadline: float) -> Rows:
            if not self.queries:
                self.queries.append(args)
                raise ConnectionLost("reset")
            return await super().fetch(sql, args, deadline)

    pool = LosesOnce({("k",): [("v",)]})
    assert run(lookup_on(pool), "k") == Reply.ok("v")
    assert pool.queries == [("k",), ("k",)]
    # Lost again on the retry: TEMP, never NOTFOUND.
    lost = ScriptedPool({("k",): ConnectionLost("reset")})
    assert run(lookup_on(lost), "k").status is Status.TEMP
    assert lost.queries == [("k",), ("k",)]


def test_the_domain_filter_answers_without_a_query() -> None:
    pool = ScriptedPool({("u@example.com",): [("v",)]})
    lookup = lookup_on(pool, domain=["example.com"])
    assert lookup.answer_now("u@other.example") is not None
    assert run(lookup, "u@other.example") == NOTFOUND_REPLY
    assert lookup.answer_now("u@example.com") is None
    assert run(lookup, "u@example.com") == Reply.ok("v")
    assert pool.queries == [("u@example.com",)]
