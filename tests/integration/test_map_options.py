"""Postfix SQL-table map options (query, result_format, domain, search, ...) on every backend."""

# One real sockmapd per backend serves every map below over a socket. Tables compare bytes
# on MariaDB too (utf8mb4_nopad_bin), so case and accents behave alike on all backends.
#
# A map whose query reads the table mo_missing (which never exists) answers TEMP whenever
# its query runs. Such maps prove that sockmapd did not query at all: a key that answers
# NOTFOUND there was suppressed (an expansion it cannot fill, the domain filter), while the
# same map answers TEMP for a key that is queried.

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.integration.daemon import Daemon, SocketmapClient, free_port
from tests.integration.databases import Database

NOTFOUND = b"NOTFOUND "

ALIASES: list[tuple[str, str | None]] = [
    ("alice@example.com", "alice@mail.example"),
    ("bob@example.com", "bob@mail.example"),
    ("o'brien@example.com", "obrien@mail.example"),
    ("alice", "unqualified-alice"),
    ("Mixed@example.com", "mixed-local"),
    ("user@xn--bcher-kva.example", "idna-user"),
    ("plain@example.com", "plainvalue"),
    ("emptylocal@example.com", "@mail.example"),
    ("emptydomain@example.com", "user@"),
    ("jürgen@bücher.example", "juergen@mail.example"),
]

# localpart, domain, goto: a row with an empty local part that %u must never reach.
PARTS: list[tuple[str, str, str]] = [
    ("alice", "example.com", "parts-alice"),
    ("alice", "example.org", "parts-alice-org"),
    ("o'brien", "example.com", "parts-obrien"),
    ("jürgen", "bücher.example", "parts-juergen"),
    ("", "example.com", "empty-local-row"),
]

# host, sld, tld, goto
LABELS: list[tuple[str, str, str, str]] = [
    ("mail", "example", "com", "three-labels"),
    ("", "example", "com", "empty-host-row"),
    ("mx", "example", "org", "three-labels-org"),
]

# address, goto, extra: two columns; NULL and empty values are skipped.
MULTI: list[tuple[str, str | None, str | None]] = [
    ("two@example.com", "a@one.example", "b@two.example"),
    ("two@example.com", "c@three.example", None),
    ("nulls@example.com", None, ""),
    ("nulls@example.com", "", None),
    ("somenull@example.com", None, "kept@example.org"),
]

LIMIT = 3
LIMITED: list[tuple[str, str | None]] = [
    *(("three@example.com", f"t{i}@example.net") for i in range(LIMIT)),
    *(("four@example.com", f"f{i}@example.net") for i in range(LIMIT + 1)),
    *(("threenull@example.com", f"n{i}@example.net") for i in range(LIMIT)),
    ("threenull@example.com", None),
    ("threenull@example.com", ""),
    ("one@example.com", "only@example.net"),
]

# address, goto, n: the boom row's n makes the selected expression overflow on every
# backend (abs() of the smallest 64-bit integer), so looking it up is a database error.
SEARCH_ROWS: list[tuple[str, str, int]] = [
    ("alice@example.com", "alice-box", 1),
    ("alice+vip@example.com", "vip-box", 1),
    ("@example.com", "catch-all", 1),
    ("boom@example.com", "never-answered", 0),
]
FAILING_VALUE = "CASE WHEN abs(n - 9223372036854775807 - 1) >= 0 THEN goto END"

DOMAIN_FILE = "# domains served besides example.com\nlisted.example\nalso-listed.example\n"

TRANSFORMS: dict[str, list[str]] = {
    "t_none": [],
    "t_lowercase": ["lowercase"],
    "t_lowercase_domain": ["lowercase_domain"],
    "t_strip_extension": ["strip_extension"],
    "t_idna": ["idna_to_ascii"],
    "t_trim": ["trim"],
    "t_chain": ["trim", "lowercase", "strip_extension", "idna_to_ascii"],
}

ALIAS_QUERY = "SELECT goto FROM mo_alias WHERE address = '%s'"
MISSING_QUERY = "SELECT v FROM mo_missing WHERE k = {}"
MISSING_CODES = {"missing_s": "'%s'", "missing_u": "%u", "missing_d": "%d", "missing_3": "%3"}
SEARCH = ["%s", "%b@%d", "@%d"]

HOSTILE_QUERIES = {
    "two_statements": "SELECT 1; DROP TABLE t",
    "delete": "DELETE FROM t",
    "comment": "SELECT a FROM t WHERE k='%s' -- x",
    "expansion_in_identifier": "SELECT a FROM \"t_%d\" WHERE k = '%s'",
}

WRITING_OBJECTS = {
    "postgresql": [
        "DROP SEQUENCE IF EXISTS mo_seq",
        "CREATE SEQUENCE mo_seq",
    ],
    "mariadb": [
        "DROP FUNCTION IF EXISTS mo_write",
        "DROP TABLE IF EXISTS mo_log",
        "CREATE TABLE mo_log (n INT)",
        "CREATE FUNCTION mo_write() RETURNS INT MODIFIES SQL DATA "
        "BEGIN INSERT INTO mo_log VALUES (1); RETURN 1; END",
    ],
}
WRITING_QUERY = {
    "postgresql": "SELECT CAST(nextval('mo_seq') AS TEXT) FROM mo_alias WHERE address = '%s'",
    "mariadb": "SELECT mo_write() FROM mo_alias WHERE address = '%s'",
}


def _exact_table(db: Database, table: str, columns: Sequence[str]) -> None:
    """(Re)create a table of typed columns that compares text byte for byte on every backend."""
    options = " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin" if db.name == "mariadb" else ""
    db.execute(
        [f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} ({', '.join(columns)}){options}"]
    )


def _setup(db: Database) -> None:
    db.create_text_table("mo_alias", ["address", "goto"], exact=True)
    db.insert("mo_alias", ["address", "goto"], ALIASES)
    db.create_text_table("mo_parts", ["localpart", "domain", "goto"], exact=True)
    db.insert("mo_parts", ["localpart", "domain", "goto"], PARTS)
    db.create_text_table("mo_labels", ["host", "sld", "tld", "goto"], exact=True)
    db.insert("mo_labels", ["host", "sld", "tld", "goto"], LABELS)
    db.create_text_table("mo_multi", ["address", "goto", "extra"], exact=True)
    db.insert("mo_multi", ["address", "goto", "extra"], MULTI)
    db.create_text_table("mo_limit", ["address", "goto"], exact=True)
    db.insert("mo_limit", ["address", "goto"], LIMITED)
    _exact_table(db, "mo_search", ["address TEXT", "goto TEXT", "n INTEGER"])
    db.insert("mo_search", ["address", "goto", "n"], SEARCH_ROWS)
    db.execute(["DROP TABLE IF EXISTS mo_missing"])
    if db.name in WRITING_OBJECTS:
        db.execute(WRITING_OBJECTS[db.name])


def _maps(db: Database, domain_file: Path) -> dict[str, dict[str, Any]]:
    missing = {name: MISSING_QUERY.format(code) for name, code in MISSING_CODES.items()}
    maps: dict[str, dict[str, Any]] = {
        "quoted": {"query": ALIAS_QUERY},
        "unquoted": {"query": "SELECT goto FROM mo_alias WHERE address = %s"},
        "upper_s": {"query": "SELECT goto FROM mo_alias WHERE address = %S"},
        "percent": {
            "query": "SELECT goto FROM mo_alias WHERE address = '%s' AND goto LIKE '%%@mail.%%'"
        },
        "parts": {"query": "SELECT goto FROM mo_parts WHERE localpart = %u AND domain = '%d'"},
        "parts_upper": {"query": "SELECT goto FROM mo_parts WHERE localpart = %U AND domain = %D"},
        "labels2": {
            "query": "SELECT goto FROM mo_labels WHERE sld = %2 AND tld = %1 ORDER BY goto"
        },
        "labels3": {
            "query": "SELECT goto FROM mo_labels WHERE host = %3 AND sld = %2 AND tld = %1"
        },
        "multi": {"query": "SELECT goto, extra FROM mo_multi WHERE address = '%s' ORDER BY goto"},
        "rf_smtp": {"query": ALIAS_QUERY, "result_format": "smtp:[%s]"},
        "rf_value_parts": {"query": ALIAS_QUERY, "result_format": "%d/%u"},
        "rf_value_local": {"query": ALIAS_QUERY, "result_format": "<%u>"},
        "rf_key_parts": {"query": ALIAS_QUERY, "result_format": "%s for %U at %D (%1, %S)"},
        "rf_percent": {"query": ALIAS_QUERY, "result_format": "100%% %s"},
        "rf_multi": {
            "query": "SELECT goto, extra FROM mo_multi WHERE address = '%s' ORDER BY goto",
            "result_format": "smtp:[%s]",
        },
        "limited": {
            "query": "SELECT goto FROM mo_limit WHERE address = '%s' ORDER BY goto",
            "expansion_limit": LIMIT,
        },
        "limited_columns": {
            "query": "SELECT goto, extra FROM mo_multi WHERE address = '%s' ORDER BY goto",
            "expansion_limit": 2,
        },
        "domain_ok": {"query": ALIAS_QUERY, "domain": ["example.com"]},
        "domain_missing": {
            "query": MISSING_QUERY.format("'%s'"),
            "domain": ["example.com", f"file:{domain_file}"],
        },
        "rf_missing": {"query": MISSING_QUERY.format("'%s'"), "result_format": "%s at %D"},
        **{name: {"query": query} for name, query in missing.items()},
        **{
            name: {"query": ALIAS_QUERY, "key_transform": transforms}
            for name, transforms in TRANSFORMS.items()
        },
        "t_strip_two": {
            "query": ALIAS_QUERY,
            "key_transform": ["strip_extension"],
            "recipient_delimiter": "+-",
        },
        "search": {
            "query": f"SELECT {FAILING_VALUE} FROM mo_search WHERE address = '%s'",
            "search": SEARCH,
            "recipient_delimiter": "+",
        },
        "search_plain": {"query": f"SELECT {FAILING_VALUE} FROM mo_search WHERE address = '%s'"},
        "search_safe": {
            "query": "SELECT goto FROM mo_search WHERE address = '%s'",
            "search": SEARCH,
        },
    }
    if db.name in WRITING_QUERY:
        maps["writer"] = {"query": WRITING_QUERY[db.name]}
    return {name: {"database": "main", **spec} for name, spec in maps.items()}


@pytest.fixture(scope="module")
def sockmapd(backend: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A sockmapd serving every option map from the backend."""
    _setup(backend)
    directory = tmp_path_factory.mktemp(f"options-{backend.name}")
    domain_file = directory / "domains.txt"
    domain_file.write_text(DOMAIN_FILE)
    port = free_port()
    config = {
        "server": {"listen": [f"tcp://127.0.0.1:{port}"], "allow_root": True},
        "databases": {"main": {"url": backend.url}},
        "maps": _maps(backend, domain_file),
    }
    path = directory / "sockmapd.toml"
    path.write_text(tomli_w.dumps(config))
    daemon = Daemon(path, port)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def client(sockmapd: Daemon) -> Iterator[SocketmapClient]:
    """A fresh connection to the backend's sockmapd."""
    connection = sockmapd.client()
    try:
        yield connection
    finally:
        connection.close()


def _ok(value: str) -> bytes:
    return b"OK " + value.encode()


def _assert_temp(reply: bytes) -> None:
    assert reply.startswith(b"TEMP "), reply


# --- query expansions ---------------------------------------------------------------------


@pytest.mark.parametrize("map_name", ["quoted", "unquoted", "upper_s"])
def test_key_expansion_finds_the_row(client: SocketmapClient, map_name: str) -> None:
    assert client.ask(map_name, "alice@example.com") == _ok("alice@mail.example")
    assert client.ask(map_name, "o'brien@example.com") == _ok("obrien@mail.example")
    assert client.ask(map_name, "jürgen@bücher.example") == _ok("juergen@mail.example")
    assert client.ask(map_name, "alice") == _ok("unqualified-alice")
    assert client.ask(map_name, "nobody@example.com") == NOTFOUND


@pytest.mark.parametrize("key", ["x' OR '1'='1", "alice@example.com' --", "%", "_lice@example.com"])
def test_quoted_expansion_is_bound_not_pasted(client: SocketmapClient, key: str) -> None:
    for map_name in ("quoted", "unquoted", "parts"):
        assert client.ask(map_name, key) == NOTFOUND, map_name


def test_double_percent_is_a_literal_percent(client: SocketmapClient) -> None:
    assert client.ask("percent", "alice@example.com") == _ok("alice@mail.example")
    # plainvalue does not match LIKE '%@mail.%'.
    assert client.ask("percent", "plain@example.com") == NOTFOUND


@pytest.mark.parametrize("map_name", ["parts", "parts_upper"])
def test_local_part_and_domain_are_bound_separately(client: SocketmapClient, map_name: str) -> None:
    assert client.ask(map_name, "alice@example.com") == _ok("parts-alice")
    assert client.ask(map_name, "alice@example.org") == _ok("parts-alice-org")
    assert client.ask(map_name, "o'brien@example.com") == _ok("parts-obrien")
    assert client.ask(map_name, "jürgen@bücher.example") == _ok("parts-juergen")
    assert client.ask(map_name, "bob@example.com") == NOTFOUND


@pytest.mark.parametrize("map_name", ["parts", "parts_upper"])
def test_empty_local_part_suppresses_the_query(client: SocketmapClient, map_name: str) -> None:
    # Run with %u = '' the query would find the row ('', 'example.com').
    assert client.ask(map_name, "@example.com") == NOTFOUND


def test_unqualified_key_suppresses_a_domain_query(client: SocketmapClient) -> None:
    assert client.ask("parts", "alice") == NOTFOUND
    assert client.ask("labels2", "example.com") == NOTFOUND


def test_domain_labels_count_from_the_right(client: SocketmapClient) -> None:
    assert client.ask("labels2", "x@example.com") == _ok("empty-host-row,three-labels")
    assert client.ask("labels2", "x@a.b.example.org") == _ok("three-labels-org")
    assert client.ask("labels3", "x@mail.example.com") == _ok("three-labels")
    assert client.ask("labels3", "x@mx.example.org") == _ok("three-labels-org")
    assert client.ask("labels3", "x@www.example.com") == NOTFOUND


def test_too_few_domain_labels_suppress_the_query(client: SocketmapClient) -> None:
    # Run with %3 = '' the query would find the row ('', 'example', 'com').
    assert client.ask("labels3", "x@example.com") == NOTFOUND


@pytest.mark.parametrize(
    ("map_name", "suppressed", "queried"),
    [
        ("missing_u", ["@example.com"], ["alice", "alice@example.com", "alice@"]),
        ("missing_d", ["alice", "alice@", "example.com"], ["alice@example.com", "@example.com"]),
        ("missing_3", ["alice", "x@example.com", "x@com"], ["x@mail.example.com", "@a.b.c"]),
        ("rf_missing", ["alice", "alice@"], ["alice@example.com", "@example.com"]),
    ],
)
def test_suppressed_query_is_never_run(
    client: SocketmapClient, map_name: str, suppressed: list[str], queried: list[str]
) -> None:
    for key in suppressed:
        assert client.ask(map_name, key) == NOTFOUND, key
    for key in queried:
        reply = client.ask(map_name, key)
        assert reply.startswith(b"TEMP "), (key, reply)


def test_missing_table_answers_temp_for_any_key(client: SocketmapClient) -> None:
    for key in ("alice", "@example.com", "alice@example.com"):
        _assert_temp(client.ask("missing_s", key))


@pytest.mark.parametrize("map_name", ["missing_s", "missing_u", "missing_d", "missing_3"])
def test_empty_key_is_never_queried(client: SocketmapClient, map_name: str) -> None:
    # Postfix ignores an empty key ("empty query string -- ignored") whatever the query.
    assert client.ask(map_name, "") == NOTFOUND


# --- answers: columns, result_format, NULL, expansion_limit --------------------------------


def test_every_column_of_every_row_is_an_answer(client: SocketmapClient) -> None:
    reply = client.ask("multi", "two@example.com")
    assert reply == _ok("a@one.example,b@two.example,c@three.example")


def test_null_and_empty_columns_are_skipped(client: SocketmapClient) -> None:
    assert client.ask("multi", "somenull@example.com") == _ok("kept@example.org")
    assert client.ask("multi", "nulls@example.com") == NOTFOUND


def test_result_format_wraps_each_value(client: SocketmapClient) -> None:
    assert client.ask("rf_smtp", "alice@example.com") == _ok("smtp:[alice@mail.example]")
    reply = client.ask("rf_multi", "two@example.com")
    assert reply == _ok("smtp:[a@one.example],smtp:[b@two.example],smtp:[c@three.example]")


def test_result_format_skips_null_and_empty_values(client: SocketmapClient) -> None:
    assert client.ask("rf_multi", "somenull@example.com") == _ok("smtp:[kept@example.org]")
    assert client.ask("rf_multi", "nulls@example.com") == NOTFOUND


def test_result_format_splits_the_value(client: SocketmapClient) -> None:
    assert client.ask("rf_value_parts", "alice@example.com") == _ok("mail.example/alice")
    assert client.ask("rf_value_local", "alice@example.com") == _ok("<alice>")
    # An unqualified value has no %d (skipped) and is its own %u.
    assert client.ask("rf_value_parts", "plain@example.com") == NOTFOUND
    assert client.ask("rf_value_local", "plain@example.com") == _ok("<plainvalue>")
    # "@mail.example" has an empty local part; "user@" has no domain.
    assert client.ask("rf_value_local", "emptylocal@example.com") == NOTFOUND
    assert client.ask("rf_value_parts", "emptylocal@example.com") == NOTFOUND
    assert client.ask("rf_value_local", "emptydomain@example.com") == _ok("<user>")
    assert client.ask("rf_value_parts", "emptydomain@example.com") == NOTFOUND


def test_result_format_upper_case_and_digits_expand_the_key(client: SocketmapClient) -> None:
    reply = client.ask("rf_key_parts", "alice@example.com")
    assert reply == _ok("alice@mail.example for alice at example.com (com, alice@example.com)")
    # The key has no domain for %D: the query is suppressed.
    assert client.ask("rf_key_parts", "alice") == NOTFOUND


def test_result_format_double_percent(client: SocketmapClient) -> None:
    assert client.ask("rf_percent", "bob@example.com") == _ok("100% bob@mail.example")


def test_expansion_limit_allows_exactly_the_limit(client: SocketmapClient) -> None:
    assert client.ask("limited", "one@example.com") == _ok("only@example.net")
    reply = client.ask("limited", "three@example.com")
    assert reply == _ok(",".join(f"t{i}@example.net" for i in range(LIMIT)))


def test_expansion_limit_exceeded_answers_temp(client: SocketmapClient) -> None:
    _assert_temp(client.ask("limited", "four@example.com"))
    # Two rows of two columns give three values, over a limit of two.
    _assert_temp(client.ask("limited_columns", "two@example.com"))
    assert client.ask("limited_columns", "somenull@example.com") == _ok("kept@example.org")


def test_expansion_limit_counts_only_answered_values(client: SocketmapClient) -> None:
    reply = client.ask("limited", "threenull@example.com")
    assert reply == _ok(",".join(f"n{i}@example.net" for i in range(LIMIT)))


# --- domain filter ------------------------------------------------------------------------


def test_domain_filter_lets_listed_domains_through(client: SocketmapClient) -> None:
    assert client.ask("domain_ok", "alice@example.com") == _ok("alice@mail.example")
    assert client.ask("domain_ok", "jürgen@bücher.example") == NOTFOUND
    assert client.ask("domain_ok", "alice") == NOTFOUND


@pytest.mark.parametrize(
    "key",
    [
        "alice@example.com",
        "ALICE@EXAMPLE.COM",
        "alice@listed.example",
        "bob@also-listed.example",
        "o'brien@example.com",
    ],
)
def test_domain_filter_queries_keys_in_listed_domains(client: SocketmapClient, key: str) -> None:
    # mo_missing does not exist: a query that runs answers TEMP.
    _assert_temp(client.ask("domain_missing", key))


@pytest.mark.parametrize(
    "key",
    [
        "alice@other.example",
        "alice@sub.example.com",
        "alice@example.com.evil.example",
        "alice",
        "@example.com",
        "example.com",
        "alice@",
        "alice@example",
    ],
)
def test_domain_filter_never_queries_other_keys(client: SocketmapClient, key: str) -> None:
    assert client.ask("domain_missing", key) == NOTFOUND


# --- key transforms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("map_name", "key", "expected"),
    [
        ("t_none", "ALICE@Example.COM", None),
        ("t_none", "alice+tag@example.com", None),
        ("t_lowercase", "ALICE@Example.COM", "alice@mail.example"),
        ("t_lowercase", "JÜRGEN@BÜCHER.example", "juergen@mail.example"),
        ("t_lowercase", "Mixed@example.com", None),
        ("t_lowercase_domain", "Mixed@EXAMPLE.Com", "mixed-local"),
        ("t_lowercase_domain", "ALICE@example.com", None),
        ("t_lowercase_domain", "ALICE", None),
        ("t_strip_extension", "alice+tag@example.com", "alice@mail.example"),
        ("t_strip_extension", "alice+a+b@example.com", "alice@mail.example"),
        ("t_strip_extension", "alice+tag", "unqualified-alice"),
        ("t_strip_extension", "alice-tag@example.com", None),
        ("t_strip_two", "alice-tag@example.com", "alice@mail.example"),
        ("t_strip_two", "alice+x-y@example.com", "alice@mail.example"),
        ("t_strip_two", "alice-x+y@example.com", "alice@mail.example"),
        ("t_idna", "user@bücher.example", "idna-user"),
        ("t_idna", "user@xn--bcher-kva.example", "idna-user"),
        ("t_idna", "jürgen@bücher.example", None),
        ("t_trim", "  alice@example.com\t ", "alice@mail.example"),
        ("t_trim", "alice@example.com", "alice@mail.example"),
        ("t_chain", " User+Tag@BÜCHER.Example ", "idna-user"),
        ("t_chain", "\tALICE+x@EXAMPLE.COM", "alice@mail.example"),
    ],
)
def test_key_transform(
    client: SocketmapClient, map_name: str, key: str, expected: str | None
) -> None:
    reply = client.ask(map_name, key)
    assert reply == (NOTFOUND if expected is None else _ok(expected))


# --- search -------------------------------------------------------------------------------


@pytest.mark.parametrize("map_name", ["search", "search_safe"])
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("alice@example.com", "alice-box"),
        ("alice+vip@example.com", "vip-box"),
        ("alice+other@example.com", "alice-box"),
        ("nobody@example.com", "catch-all"),
        ("nobody+x@example.com", "catch-all"),
        ("@example.com", "catch-all"),
        ("alice@other.example", None),
        ("alice", None),
    ],
)
def test_search_tries_partial_keys_in_order(
    client: SocketmapClient, map_name: str, key: str, expected: str | None
) -> None:
    reply = client.ask(map_name, key)
    assert reply == (NOTFOUND if expected is None else _ok(expected))


def test_search_stops_at_a_temporary_failure(client: SocketmapClient) -> None:
    # Each candidate alone: the exact key is not found, boom@example.com fails, the
    # catch-all is found.
    assert client.ask("search_plain", "boom+x@example.com") == NOTFOUND
    _assert_temp(client.ask("search_plain", "boom@example.com"))
    assert client.ask("search_plain", "@example.com") == _ok("catch-all")
    # Searched: the failure of the second candidate must not fall through to the catch-all.
    _assert_temp(client.ask("search", "boom+x@example.com"))
    _assert_temp(client.ask("search", "boom@example.com"))
    # The safe map reads the same rows without the failing expression.
    assert client.ask("search_safe", "boom+x@example.com") == _ok("never-answered")


# --- read-only sessions -------------------------------------------------------------------


def test_a_query_that_writes_answers_temp(backend: Database, client: SocketmapClient) -> None:
    if backend.name not in WRITING_QUERY:
        pytest.skip("a SELECT on SQLite has no function that writes")
    _assert_temp(client.ask("writer", "alice@example.com"))
    if backend.name == "mariadb":
        assert backend.count("mo_log") == 0
    else:
        # The sequence was never advanced: its first nextval() here is 1.
        assert backend.fetch("SELECT nextval('mo_seq')") == [(1,)]


# --- unsafe queries are refused at load ---------------------------------------------------


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sockmapd", "--check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _query_config(path: Path, query: str) -> Path:
    config = {
        "databases": {"main": {"url": f"sqlite+aiosqlite:///{path.parent / 'check.sqlite3'}"}},
        "maps": {"hostile": {"database": "main", "query": query}},
    }
    path.write_text(tomli_w.dumps(config))
    return path


@pytest.mark.parametrize("query", list(HOSTILE_QUERIES.values()), ids=list(HOSTILE_QUERIES))
def test_unsafe_query_is_rejected_at_load(tmp_path: Path, query: str) -> None:
    result = _check_config(_query_config(tmp_path / "hostile.toml", query))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "maps.hostile.query" in output, output


def test_expansion_inside_an_identifier_says_why(tmp_path: Path) -> None:
    query = HOSTILE_QUERIES["expansion_in_identifier"]
    result = _check_config(_query_config(tmp_path / "hostile.toml", query))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "table and column names cannot come from the key" in output, output


def test_expansion_inside_a_longer_literal_passes_the_check(tmp_path: Path) -> None:
    query = "SELECT goto FROM alias WHERE address = '%u@example.com'"
    result = _check_config(_query_config(tmp_path / "literal.toml", query))
    assert result.returncode == 0, result.stdout + result.stderr


def test_safe_query_passes_the_check(tmp_path: Path) -> None:
    result = _check_config(_query_config(tmp_path / "safe.toml", ALIAS_QUERY))
    assert result.returncode == 0, result.stdout + result.stderr
