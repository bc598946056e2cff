"""The per-map answer cache, stale-if-error and single-flight, with a fake database."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Sequence
from typing import Any, cast

import anyio
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import create_async_engine

from sockmapd.backends.errors import QueryFailed, QueryTimeout
from sockmapd.backends.pool import DriverPool
from sockmapd.config import Config, DatabaseConfig, MapConfig, to_toml
from sockmapd.config.errors import problems_from_validation_error
from sockmapd.lookup.cache import ReplyCache
from sockmapd.lookup.maps import MapLookup
from sockmapd.lookup.router import Router
from sockmapd.protocol import Reply, Request, Status, encode_reply

OK_A = Reply.ok("a")
OK_B = Reply.ok("b")
NOTFOUND = Reply.notfound()


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_cache(
    clock: Clock,
    ttl: float = 10.0,
    negative_ttl: float = 5.0,
    stale_ttl: float = 0.0,
    size: int = 100,
) -> ReplyCache:
    return ReplyCache(
        ttl=ttl, negative_ttl=negative_ttl, stale_ttl=stale_ttl, max_size=size, clock=clock
    )


# --- ReplyCache ---------------------------------------------------------------------


def test_found_answer_is_reused_until_its_ttl_passes() -> None:
    clock = Clock()
    cache = make_cache(clock)
    cache.put("k", OK_A)
    clock.now += 9.9
    assert cache.get("k") == encode_reply(OK_A)
    clock.now += 0.1
    assert cache.get("k") is None
    assert len(cache) == 0


def test_notfound_uses_the_negative_ttl() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl=10.0, negative_ttl=2.0)
    cache.put("k", NOTFOUND)
    clock.now += 1.9
    assert cache.get("k") == encode_reply(NOTFOUND)
    clock.now += 0.1
    assert cache.get("k") is None


def test_zero_ttl_stores_nothing_of_that_kind() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl=10.0, negative_ttl=0.0)
    cache.put("k", NOTFOUND)
    assert cache.get("k") is None
    assert len(cache) == 0


@pytest.mark.parametrize(
    "reply", [Reply.temp("db down"), Reply.timeout("slow"), Reply.perm("bad request")]
)
def test_failures_are_never_stored(reply: Reply) -> None:
    cache = make_cache(Clock(), stale_ttl=100.0)
    cache.put("k", reply)
    assert len(cache) == 0
    assert cache.get("k") is None
    assert cache.get_stale("k") is None


def test_a_failure_leaves_the_stored_answer_alone() -> None:
    cache = make_cache(Clock())
    cache.put("k", OK_A)
    cache.put("k", Reply.temp("db down"))
    assert cache.get("k") == encode_reply(OK_A)


def test_least_recently_used_entry_is_evicted() -> None:
    cache = make_cache(Clock(), size=2)
    cache.put("a", OK_A)
    cache.put("b", OK_B)
    assert cache.get("a") == encode_reply(OK_A)  # "b" is now the least recently used
    cache.put("c", OK_A)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == encode_reply(OK_A)
    assert cache.get("c") == encode_reply(OK_A)


def test_stale_serves_a_found_answer_until_stale_ttl() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl=10.0, stale_ttl=60.0)
    cache.put("k", OK_A)
    clock.now += 30.0
    assert cache.get("k") is None  # not fresh: the database is asked
    assert cache.get_stale("k") == OK_A  # but kept for a failing database
    clock.now += 30.0
    assert cache.get_stale("k") is None
    assert len(cache) == 0


def test_stale_never_serves_notfound() -> None:
    cache = make_cache(Clock(), negative_ttl=5.0, stale_ttl=60.0)
    cache.put("k", NOTFOUND)
    assert cache.get_stale("k") is None


def test_a_newer_notfound_removes_the_stale_found_answer() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl=10.0, negative_ttl=0.0, stale_ttl=60.0)
    cache.put("k", OK_A)
    clock.now += 20.0
    cache.put("k", NOTFOUND)
    assert cache.get_stale("k") is None


def test_stale_age_counts_from_when_it_was_stored() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl=10.0, stale_ttl=60.0)
    cache.put("k", OK_A)
    clock.now += 5.0
    assert cache.get("k") == encode_reply(OK_A)  # a hit does not refresh the entry
    clock.now += 55.0
    assert cache.get_stale("k") is None


def test_clear_forgets_everything_and_drops_answers_from_before() -> None:
    cache = make_cache(Clock())
    before = cache.generation
    cache.put("a", OK_A)
    cache.put("b", OK_B)
    assert cache.clear() == 2
    assert cache.get("a") is None
    cache.put("a", OK_A, before)  # looked up before the clear
    assert cache.get("a") is None
    cache.put("a", OK_A, cache.generation)
    assert cache.get("a") == encode_reply(OK_A)


def test_hits_and_misses_are_counted() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl=10.0, negative_ttl=5.0)
    assert cache.get("k") is None  # absent
    cache.put("k", OK_A)
    cache.put("n", NOTFOUND)
    assert cache.get("k") == encode_reply(OK_A)
    assert cache.get("n") == encode_reply(NOTFOUND)
    clock.now += 6.0
    assert cache.get("n") is None  # expired not-found
    clock.now += 5.0
    assert cache.get("k") is None  # expired found
    assert cache.get_stale("k") is None  # a stale read is neither
    assert (cache.hits, cache.misses) == (2, 3)


# --- MapLookup with a fake database --------------------------------------------------


class FakePool:
    """A lookup pool over a dict; it counts queries and can fail or block."""

    def __init__(self, rows: dict[str, str]) -> None:
        self.rows = rows
        self.queries = 0
        self.failure: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def fetch(
        self, sql: str, args: tuple[str, ...], query_timeout: float
    ) -> Sequence[Sequence[object]]:
        self.queries += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        value = self.rows.get(args[0])
        return [] if value is None else [(value,)]


class FakeLookup(MapLookup):
    """A map whose database is a FakePool; the pool's state shows through as attributes."""

    def __init__(self, rows: dict[str, str], clock: Clock | None = None, **options: Any) -> None:
        config = MapConfig(database="db", table="t", key="k", **options)
        database = DatabaseConfig(url="sqlite+aiosqlite:///unused.sqlite3")
        self.fake = FakePool(rows)
        super().__init__(
            "m",
            config,
            create_async_engine("sqlite+aiosqlite:///unused.sqlite3"),
            database,
            clock=clock or Clock(),
            pool=cast(DriverPool, self.fake),
        )

    @property
    def rows(self) -> dict[str, str]:
        return self.fake.rows

    @property
    def queries(self) -> int:
        return self.fake.queries

    @property
    def failure(self) -> BaseException | None:
        return self.fake.failure

    @failure.setter
    def failure(self, value: BaseException | None) -> None:
        self.fake.failure = value

    @property
    def gate(self) -> asyncio.Event | None:
        return self.fake.gate

    @gate.setter
    def gate(self, value: asyncio.Event | None) -> None:
        self.fake.gate = value


def run(lookup: FakeLookup, key: str) -> Reply:
    return asyncio.run(lookup.lookup(key))


def db_error() -> QueryFailed:
    return QueryFailed("database is down")


def test_found_answer_is_served_from_the_cache_within_ttl() -> None:
    clock = Clock()
    lookup = FakeLookup({"k": "v"}, clock, cache_ttl=10.0)
    assert run(lookup, "k") == Reply.ok("v")
    del lookup.rows["k"]
    assert run(lookup, "k") == Reply.ok("v")
    assert lookup.queries == 1
    clock.now += 10.0
    assert run(lookup, "k") == NOTFOUND
    assert lookup.queries == 2


def test_notfound_is_queried_every_time_without_negative_ttl() -> None:
    lookup = FakeLookup({}, cache_ttl=10.0)
    assert run(lookup, "k") == NOTFOUND
    assert run(lookup, "k") == NOTFOUND
    assert lookup.queries == 2


def test_notfound_is_reused_within_negative_ttl() -> None:
    clock = Clock()
    lookup = FakeLookup({}, clock, negative_cache_ttl=2.0)
    assert run(lookup, "k") == NOTFOUND
    lookup.rows["k"] = "v"
    assert run(lookup, "k") == NOTFOUND
    assert lookup.queries == 1
    clock.now += 2.0
    assert run(lookup, "k") == Reply.ok("v")


def test_cache_off_queries_every_time() -> None:
    lookup = FakeLookup({"k": "v"})
    assert run(lookup, "k") == Reply.ok("v")
    assert run(lookup, "k") == Reply.ok("v")
    assert lookup.queries == 2
    assert lookup.clear_cache() == 0


@pytest.mark.parametrize("failure", [db_error(), QueryTimeout("slow")])
def test_failures_are_not_cached(failure: BaseException) -> None:
    lookup = FakeLookup({"k": "v"}, cache_ttl=10.0, negative_cache_ttl=10.0)
    lookup.failure = failure
    assert run(lookup, "k").status in (Status.TEMP, Status.TIMEOUT)
    lookup.failure = None
    assert run(lookup, "k") == Reply.ok("v")
    assert lookup.queries == 2


def test_equivalent_keys_share_an_entry_after_key_transform() -> None:
    lookup = FakeLookup({"alice@example.com": "v"}, cache_ttl=10.0, key_transform=["lowercase"])
    assert run(lookup, "Alice@Example.COM") == Reply.ok("v")
    assert run(lookup, "alice@example.com") == Reply.ok("v")
    assert lookup.queries == 1


def test_the_final_answer_of_a_search_is_cached() -> None:
    lookup = FakeLookup({"@example.com": "catchall"}, cache_ttl=10.0, search=["%s", "@%d"])
    assert run(lookup, "x@example.com") == Reply.ok("catchall")
    assert lookup.queries == 2
    assert run(lookup, "x@example.com") == Reply.ok("catchall")
    assert lookup.queries == 2


@pytest.mark.parametrize("failure", [db_error(), QueryTimeout("slow")])
def test_stale_serves_a_found_answer_when_the_database_fails(failure: BaseException) -> None:
    clock = Clock()
    lookup = FakeLookup({"k": "v"}, clock, cache_ttl=10.0, stale_ttl=60.0)
    assert run(lookup, "k") == Reply.ok("v")
    clock.now += 30.0
    lookup.failure = failure
    assert run(lookup, "k") == Reply.ok("v")
    clock.now += 30.0
    assert run(lookup, "k").status in (Status.TEMP, Status.TIMEOUT)


def test_stale_never_turns_a_failure_into_notfound() -> None:
    clock = Clock()
    lookup = FakeLookup({}, clock, cache_ttl=10.0, negative_cache_ttl=10.0, stale_ttl=60.0)
    assert run(lookup, "k") == NOTFOUND
    clock.now += 10.0
    lookup.failure = db_error()
    assert run(lookup, "k").status is Status.TEMP


def test_without_stale_ttl_a_failure_is_a_failure() -> None:
    clock = Clock()
    lookup = FakeLookup({"k": "v"}, clock, cache_ttl=10.0)
    assert run(lookup, "k") == Reply.ok("v")
    clock.now += 10.0
    lookup.failure = QueryTimeout("slow")
    assert run(lookup, "k").status is Status.TIMEOUT


def test_router_clears_every_map() -> None:
    first = FakeLookup({"k": "v"}, cache_ttl=10.0)
    second = FakeLookup({"k": "v"}, cache_ttl=10.0)
    router = Router({"first": first, "second": second})

    async def ask_all() -> None:
        for name in ("first", "second"):
            assert await router.answer(Request(name, "k")) == Reply.ok("v")

    asyncio.run(ask_all())
    assert router.clear_caches() == 2
    asyncio.run(ask_all())
    assert first.queries == second.queries == 2


# --- single-flight ---------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"cache_ttl": 10.0}])
def test_concurrent_lookups_of_one_key_share_one_query(options: dict[str, float]) -> None:
    lookup = FakeLookup({"k": "v"}, **options)

    async def main() -> list[Reply]:
        lookup.gate = asyncio.Event()
        tasks = [asyncio.create_task(lookup.lookup("k")) for _ in range(10)]
        await asyncio.sleep(0.01)
        lookup.gate.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == [Reply.ok("v")] * 10
    assert lookup.queries == 1


def test_different_keys_are_not_shared() -> None:
    lookup = FakeLookup({"a": "1", "b": "2"})

    async def main() -> list[Reply]:
        return await asyncio.gather(lookup.lookup("a"), lookup.lookup("b"))

    assert asyncio.run(main()) == [Reply.ok("1"), Reply.ok("2")]
    assert lookup.queries == 2


def test_the_waiters_of_a_cancelled_first_caller_ask_again_together() -> None:
    # The first caller runs the query in its own task; cancelled, it takes its
    # query with it. The nine callers waiting on it then share one new query.
    lookup = FakeLookup({"k": "v"}, cache_ttl=10.0)
    replies: list[Reply] = []
    first_cancelled = False

    async def waiter() -> None:
        replies.append(await lookup.lookup("k"))

    async def main() -> None:
        nonlocal first_cancelled
        lookup.gate = asyncio.Event()
        async with anyio.create_task_group() as tasks:
            with anyio.move_on_after(0.05) as first:
                tasks.start_soon(_release_later, lookup.gate)
                for _ in range(9):
                    tasks.start_soon(waiter)
                await lookup.lookup("k")
            first_cancelled = first.cancelled_caught

    anyio.run(main)
    assert first_cancelled
    assert replies == [Reply.ok("v")] * 9
    assert lookup.queries == 2
    assert lookup.running == 0


async def _release_later(gate: asyncio.Event) -> None:
    await anyio.sleep(0.2)
    gate.set()


def test_waiters_all_get_the_failure_and_nothing_is_cached() -> None:
    lookup = FakeLookup({"k": "v"}, cache_ttl=10.0, negative_cache_ttl=10.0)
    lookup.failure = QueryTimeout("slow")

    async def main() -> list[Reply]:
        lookup.gate = asyncio.Event()
        tasks = [asyncio.create_task(lookup.lookup("k")) for _ in range(5)]
        await asyncio.sleep(0.01)
        lookup.gate.set()
        return await asyncio.gather(*tasks)

    assert {r.status for r in asyncio.run(main())} == {Status.TIMEOUT}
    assert lookup.queries == 1
    lookup.failure = None
    lookup.gate = None
    assert run(lookup, "k") == Reply.ok("v")


def test_an_answer_in_flight_during_a_clear_is_not_stored() -> None:
    lookup = FakeLookup({"k": "old"}, cache_ttl=10.0)

    async def main() -> Reply:
        lookup.gate = asyncio.Event()
        task = asyncio.create_task(lookup.lookup("k"))
        await asyncio.sleep(0.01)
        lookup.clear_cache()
        lookup.gate.set()
        return await task

    assert asyncio.run(main()) == Reply.ok("old")
    lookup.gate = None
    lookup.rows["k"] = "new"
    assert run(lookup, "k") == Reply.ok("new")


def test_an_unexpected_error_answers_temp() -> None:
    lookup = FakeLookup({"k": "v"}, cache_ttl=10.0)
    lookup.failure = RuntimeError("bug")
    reply = run(lookup, "k")
    assert reply.status is Status.TEMP
    assert lookup.running == 0


# --- configuration -----------------------------------------------------------------------


def map_problems(**options: Any) -> dict[str, str]:
    data = {
        "databases": {"db": {"url": "sqlite+aiosqlite:///x.sqlite3"}},
        "maps": {"m": {"database": "db", "table": "t", "key": "k", **options}},
    }
    with pytest.raises(ValidationError) as info:
        Config.model_validate(data)
    return {p.path: p.message for p in problems_from_validation_error(info.value, Config)}


def test_cache_defaults_are_off() -> None:
    config = MapConfig(database="db", table="t", key="k")
    assert (config.cache_ttl, config.negative_cache_ttl, config.stale_ttl) == (0.0, 0.0, 0.0)
    assert config.cache_size == 10000


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cache_ttl": -1}, "cache_ttl"),
        ({"negative_cache_ttl": float("nan")}, "negative_cache_ttl"),
        ({"cache_ttl": "10"}, "cache_ttl"),
        ({"cache_size": 0}, "cache_size"),
        ({"cache_size": 10_000_001}, "cache_size"),
        ({"stale_ttl": 60}, "stale_ttl"),
        ({"cache_ttl": 30, "stale_ttl": 10}, "stale_ttl"),
    ],
)
def test_invalid_cache_options_are_reported_at_their_path(
    options: dict[str, Any], field: str
) -> None:
    found = map_problems(**options)
    assert list(found) == [f"maps.m.{field}"], found


def test_stale_ttl_messages_say_what_is_needed() -> None:
    assert "cache_ttl > 0" in map_problems(stale_ttl=60)["maps.m.stale_ttl"]
    assert "at least cache_ttl" in map_problems(cache_ttl=30, stale_ttl=10)["maps.m.stale_ttl"]


def test_cache_options_survive_convert() -> None:
    data = {
        "databases": {"db": {"url": "sqlite+aiosqlite:///x.sqlite3"}},
        "maps": {
            "m": {"database": "db", "table": "t", "key": "k", "cache_ttl": 30, "stale_ttl": 600}
        },
    }
    config = Config.model_validate(data)
    again = Config.model_validate(tomllib.loads(to_toml(config)))
    assert again.maps["m"].cache_ttl == 30.0
    assert again.maps["m"].stale_ttl == 600.0


def test_answer_now_gives_cached_answers_and_counts_a_miss_only_once() -> None:
    lookup = FakeLookup({"k": "v"}, cache_ttl=10.0)
    cache = lookup.cache
    assert cache is not None
    assert lookup.answer_now("k") is None  # not cached yet, and not counted
    assert (cache.hits, cache.misses) == (0, 0)
    assert run(lookup, "k") == Reply.ok("v")  # the lookup that follows counts it
    assert (cache.hits, cache.misses) == (0, 1)
    assert lookup.answer_now("k") == encode_reply(Reply.ok("v"))
    assert (cache.hits, cache.misses) == (1, 1)
    assert lookup.queries == 1


def test_answer_now_without_a_cache_leaves_everything_to_the_lookup() -> None:
    lookup = FakeLookup({"k": "v"})
    assert lookup.answer_now("k") is None
    assert run(lookup, "k") == Reply.ok("v")
    assert lookup.answer_now("k") is None


def test_an_answer_that_ends_like_a_notfound_frame_is_still_a_found_one() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl=10.0, negative_ttl=1.0)
    tricky = Reply.ok("x9:NOTFOUND ")
    cache.put("k", tricky)
    clock.now += 5.0  # past the negative ttl, within the found one
    assert cache.get("k") == encode_reply(tricky)


def test_entries_are_frames_sent_as_they_are() -> None:
    cache = make_cache(Clock())
    big = Reply.ok("v" * 200_000)  # larger than any client takes: checked when sent
    cache.put("k", big)
    cache.put("n", NOTFOUND)
    assert cache.get("k") == encode_reply(big, 10**6)
    assert cache.get("n") == b"9:NOTFOUND ,"
