"""Postfix %-expansion templates: parsing, and query templates compiled to bound SQL."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect

from sockmapd.backends.drivers import PreparedLookup
from sockmapd.config.expansions import (
    _TEXT_BIND_RE,
    BIND_PREFIX,
    QUERY_CODES,
    RESULT_CODES,
    SEARCH_CODES,
    Expansion,
    Parameter,
    QueryDialect,
    Template,
    TemplateError,
    Text,
    compile_query,
    parse_template,
)
from sockmapd.lookup.keys import KeyParts, query_params

POSTGRESQL, MYSQL, SQLITE = postgresql.dialect(), mysql.dialect(), sqlite.dialect()
DIALECTS: tuple[Dialect, ...] = (POSTGRESQL, MYSQL, SQLITE)
DIALECT_NAMES: tuple[QueryDialect, ...] = ("postgresql", "mysql", "sqlite")
DRIVER_DIALECTS: tuple[Dialect, ...] = (
    postgresql.asyncpg.dialect(),
    mysql.asyncmy.dialect(),
    sqlite.aiosqlite.dialect(),
)
WRITE_WORDS = (
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "REPLACE",
    "UPSERT",
    "DROP",
    "ALTER",
    "CREATE",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "CALL",
    "EXEC",
    "EXECUTE",
    "COPY",
    "LOCK",
    "SET",
    "INTO",
    "LOAD",
    "HANDLER",
    "DO",
    "PREPARE",
    "DEALLOCATE",
)


def bind_names(sql: str) -> set[str]:
    """Return the bind names sqlalchemy.text() finds in sql."""
    return set(sa.text(sql).compile().params)


def render(template: Template) -> str:
    """Write a parsed template back in Postfix syntax."""
    return "".join(
        piece.text.replace("%", "%%") if isinstance(piece, Text) else f"%{piece.code}"
        for piece in template
    )


# parse_template


@pytest.mark.parametrize(
    ("text", "codes", "expected"),
    [
        ("", RESULT_CODES, ()),
        ("%s", RESULT_CODES, (Expansion("s"),)),
        ("smtp:[%s]", RESULT_CODES, (Text("smtp:["), Expansion("s"), Text("]"))),
        ("100%%", RESULT_CODES, (Text("100%"),)),
        ("%%%s", RESULT_CODES, (Text("%"), Expansion("s"))),
        ("a%%b%%", RESULT_CODES, (Text("a%b%"),)),
        ("%u@%D", RESULT_CODES, (Expansion("u"), Text("@"), Expansion("D"))),
        (
            "%3.%2.%1",
            RESULT_CODES,
            (Expansion("3"), Text("."), Expansion("2"), Text("."), Expansion("1")),
        ),
        ("%b@%d", SEARCH_CODES, (Expansion("b"), Text("@"), Expansion("d"))),
        ("%s%s", QUERY_CODES, (Expansion("s"), Expansion("s"))),
    ],
)
def test_parse_template(text: str, codes: str, expected: Template) -> None:
    assert parse_template(text, codes) == expected


@pytest.mark.parametrize(
    ("text", "codes", "reason"),
    [
        ("%", RESULT_CODES, "ends with a lone '%': write %% for a literal %"),
        ("smtp:[%s]%", RESULT_CODES, "lone '%'"),
        ("%x", RESULT_CODES, "unknown expansion %x"),
        ("%b", RESULT_CODES, "unknown expansion %b"),
        ("%S", SEARCH_CODES, "unknown expansion %S"),
        ("%0", QUERY_CODES, "unknown expansion %0"),
        ("% s", QUERY_CODES, "unknown expansion % "),
    ],
)
def test_parse_template_rejects(text: str, codes: str, reason: str) -> None:
    with pytest.raises(TemplateError, match=r"write %%|may use %%") as info:
        parse_template(text, codes)
    assert reason in str(info.value)


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


@given(st.text(), st.sampled_from([QUERY_CODES, RESULT_CODES, SEARCH_CODES]))
@example("%%%", QUERY_CODES)
def test_parse_template_only_raises_template_error(text: str, codes: str) -> None:
    try:
        template = parse_template(text, codes)
    except TemplateError:
        return
    assert all(piece.code in codes for piece in template if isinstance(piece, Expansion))
    # Adjacent texts are merged, so the parse is canonical and survives a round trip.
    assert not any(
        isinstance(a, Text) and isinstance(b, Text) for a, b in itertools.pairwise(template)
    )
    assert all(piece.text for piece in template if isinstance(piece, Text))
    assert parse_template(render(template), codes) == template


@given(st.lists(st.one_of(st.text(min_size=1), st.sampled_from(RESULT_CODES)), max_size=8))
def test_parse_template_round_trip(pieces: list[str]) -> None:
    text = "".join(
        p.replace("%", "%%") if len(p) != 1 or p not in RESULT_CODES else f"%{p}" for p in pieces
    )
    assert render(parse_template(text, RESULT_CODES)) == text


# compile_query: accepted forms


@pytest.mark.parametrize(
    ("query", "sql", "codes"),
    [
        (
            "SELECT goto FROM alias WHERE address='%s' AND active = '1'",
            "SELECT goto FROM alias WHERE address=:x_s AND active = '1'",
            ("s",),
        ),
        (
            "  select goto from alias where address = '%s'",
            "  select goto from alias where address = :x_s",
            ("s",),
        ),
        (
            "\n\tSELECT goto\n FROM alias\n WHERE address = '%s'\n",
            "\n\tSELECT goto\n FROM alias\n WHERE address = :x_s\n",
            ("s",),
        ),
        (
            "WITH d AS (SELECT name FROM domains WHERE name = '%d') "
            "SELECT goto FROM alias, d WHERE local = '%u'",
            "WITH d AS (SELECT name FROM domains WHERE name = :x_d) "
            "SELECT goto FROM alias, d WHERE local = :x_u",
            ("d", "u"),
        ),
        (
            "with d as (select 1) select goto from alias where address = '%s'",
            "with d as (select 1) select goto from alias where address = :x_s",
            ("s",),
        ),
        (
            "SELECT a FROM t WHERE k = '%S' AND u = '%U' AND d = '%D'",
            "SELECT a FROM t WHERE k = :x_s AND u = :x_u AND d = :x_d",
            ("s", "u", "d"),
        ),
        (
            "SELECT a FROM t WHERE k = '%s' OR alias = '%s' OR u = '%u' OR u2 = '%U'",
            "SELECT a FROM t WHERE k = :x_s OR alias = :x_s OR u = :x_u OR u2 = :x_u",
            ("s", "u"),
        ),
        (
            "SELECT a FROM t WHERE tld = '%1' AND sld = '%2' AND host = '%9'",
            "SELECT a FROM t WHERE tld = :x_1 AND sld = :x_2 AND host = :x_9",
            ("1", "2", "9"),
        ),
        (
            "SELECT a FROM t WHERE k = %u || '@example.com'",
            "SELECT a FROM t WHERE k = :x_u || '@example.com'",
            ("u",),
        ),
        (
            "SELECT a FROM t WHERE k = CONCAT(%u, '@', %d)",
            "SELECT a FROM t WHERE k = CONCAT(:x_u, '@', :x_d)",
            ("u", "d"),
        ),
        (
            "SELECT a FROM t WHERE k = '%s' AND n %% 2 = 0 AND p LIKE '100%%'",
            "SELECT a FROM t WHERE k = :x_s AND n % 2 = 0 AND p LIKE '100%'",
            ("s",),
        ),
        (
            "SELECT a FROM t WHERE k = '%s' AND note <> 'it''s' AND e <> ''",
            "SELECT a FROM t WHERE k = :x_s AND note <> 'it''s' AND e <> ''",
            ("s",),
        ),
        (
            'SELECT "goto" FROM `alias` WHERE "address" = \'%s\' AND "100%%" = 1',
            'SELECT "goto" FROM `alias` WHERE "address" = :x_s AND "100%" = 1',
            ("s",),
        ),
        (
            'SELECT "a""b", `c``d` FROM t WHERE k = \'%s\'',
            'SELECT "a""b", `c``d` FROM t WHERE k = :x_s',
            ("s",),
        ),
        (
            "SELECT REPLACE(goto, ' ', '') FROM alias WHERE address = REPLACE ('%s', '.', '_')",
            "SELECT REPLACE(goto, ' ', '') FROM alias WHERE address = REPLACE (:x_s, '.', '_')",
            ("s",),
        ),
        (
            "SELECT updated_at, settings, dropped, into_x, share FROM t "
            "WHERE k = '%s' AND note <> 'DELETE; DROP TABLE t -- /* #'",
            "SELECT updated_at, settings, dropped, into_x, share FROM t "
            "WHERE k = :x_s AND note <> 'DELETE; DROP TABLE t -- /* #'",
            ("s",),
        ),
        (
            "SELECT SUBSTRING(a FROM 1 FOR 3) FROM t WHERE k = '%s' AND c - -1 > 0 AND d / 2 > 0",
            "SELECT SUBSTRING(a FROM 1 FOR 3) FROM t WHERE k = :x_s AND c - -1 > 0 AND d / 2 > 0",
            ("s",),
        ),
        (
            "(SELECT a FROM t WHERE k = '%s') UNION ( SELECT b FROM u WHERE d = '%d')",
            "(SELECT a FROM t WHERE k = :x_s) UNION ( SELECT b FROM u WHERE d = :x_d)",
            ("s", "d"),
        ),
        (
            "SELECT a FROM t WHERE k=('%s') AND m=(%d)",
            "SELECT a FROM t WHERE k=(:x_s) AND m=(:x_d)",
            ("s", "d"),
        ),
    ],
)
def test_compile_query_accepts(query: str, sql: str, codes: tuple[str, ...]) -> None:
    for dialect in (None, *DIALECT_NAMES):
        bound = compile_query(query, dialect)
        assert bound.sql == sql
        assert bound.codes == codes
        assert bound.parameters == tuple(
            Parameter(BIND_PREFIX + code, (Expansion(code),)) for code in codes
        )
        assert bind_names(bound.sql) == {BIND_PREFIX + code for code in codes}


# Queries as hosting panels and how-tos publish them: each literal that holds
# expansions is one parameter carrying the literal's text.
@pytest.mark.parametrize(
    ("query", "sql", "parameters"),
    [
        (
            "SELECT goto FROM alias WHERE address = '%s' AND active = true "
            "UNION SELECT goto FROM alias WHERE address = '@%d' AND active = true",
            "SELECT goto FROM alias WHERE address = :x_s AND active = true "
            "UNION SELECT goto FROM alias WHERE address = :x_l1 AND active = true",
            {"x_s": (Expansion("s"),), "x_l1": (Text("@"), Expansion("d"))},
        ),
        (
            "SELECT u.maildir FROM mail_user AS u INNER JOIN alias AS s "
            "ON (u.email = CONCAT('%u@', SUBSTRING_INDEX(s.destination, '@', -1))) "
            "WHERE s.address = '%s'",
            "SELECT u.maildir FROM mail_user AS u INNER JOIN alias AS s "
            "ON (u.email = CONCAT(:x_l1, SUBSTRING_INDEX(s.destination, '@', -1))) "
            "WHERE s.address = :x_s",
            {"x_l1": (Expansion("u"), Text("@")), "x_s": (Expansion("s"),)},
        ),
        (
            "SELECT 1 FROM domain WHERE domain = SUBSTRING_INDEX('%s', '@', -1)",
            "SELECT 1 FROM domain WHERE domain = SUBSTRING_INDEX(:x_s, '@', -1)",
            {"x_s": (Expansion("s"),)},
        ),
        (
            "SELECT goto FROM alias WHERE address LIKE '%%%s'",
            "SELECT goto FROM alias WHERE address LIKE :x_l1",
            {"x_l1": (Text("%"), Expansion("s"))},
        ),
        (
            "SELECT a FROM t WHERE k = '%u@%d' OR k = '%U@%D' OR j = '%s%s' OR m LIKE '%s%%'",
            "SELECT a FROM t WHERE k = :x_l1 OR k = :x_l1 OR j = :x_l2 OR m LIKE :x_l3",
            {
                "x_l1": (Expansion("u"), Text("@"), Expansion("d")),
                "x_l2": (Expansion("s"), Expansion("s")),
                "x_l3": (Expansion("s"), Text("%")),
            },
        ),
        (
            "SELECT a FROM t WHERE k = 'it''s %s' AND j = '%s''%d' AND n = ' %1.x'",
            "SELECT a FROM t WHERE k = :x_l1 AND j = :x_l2 AND n = :x_l3",
            {
                "x_l1": (Text("it's "), Expansion("s")),
                "x_l2": (Expansion("s"), Text("'"), Expansion("d")),
                "x_l3": (Text(" "), Expansion("1"), Text(".x")),
            },
        ),
        (
            "SELECT a FROM t WHERE k = '%s' OR k = '@%d' OR d = '%d' OR k = '@%d'",
            "SELECT a FROM t WHERE k = :x_s OR k = :x_l1 OR d = :x_d OR k = :x_l1",
            {
                "x_s": (Expansion("s"),),
                "x_l1": (Text("@"), Expansion("d")),
                "x_d": (Expansion("d"),),
            },
        ),
        (
            "SELECT a FROM t WHERE k = 'a:b %s' AND n = 'x:y'",
            "SELECT a FROM t WHERE k = :x_l1 AND n = 'x\\:y'",
            {"x_l1": (Text("a:b "), Expansion("s"))},
        ),
    ],
)
def test_literals_with_expansions_become_one_parameter(
    query: str, sql: str, parameters: dict[str, Template]
) -> None:
    for dialect in (None, *DIALECT_NAMES):
        bound = compile_query(query, dialect)
        assert bound.sql == sql
        assert {p.name: p.template for p in bound.parameters} == parameters
        assert bind_names(bound.sql) == set(parameters)


@pytest.mark.parametrize(
    ("dialect", "literal", "value"),
    [
        # MySQL: backslash escapes, and the doubled quote, in '...' and "..." strings.
        ("mysql", r"'\\%s'", "\\k"),
        ("mysql", r"'%s\n\t\r\b\0\Z'", "k\n\t\r\b\0\x1a"),
        ("mysql", r"""'%s\'\"'""", "k'\""),
        ("mysql", r"'%s\%%\_\x'", "k\\%\\_x"),
        ("mysql", r"'%s\'\''", "k''"),
        ("mysql", r"'it''s %s'", "it's k"),
        ("mysql", r'"%s"', "k"),
        ("mysql", r'"say ""%s"""', 'say "k"'),
        ("mysql", r"""'%s"'""", 'k"'),
        # PostgreSQL: no escapes in standard strings, escapes in E'...' strings.
        ("postgresql", r"'\%s'", "\\k"),
        ("postgresql", r"'%s\n'", "k\\n"),
        ("postgresql", r"E'\\%s'", "\\k"),
        ("postgresql", r"e'%s\n\t\b\f\r\''''", "k\n\t\b\f\r''"),
        ("postgresql", r"E'%s\101\x42\u00e9\U0001F600\q'", "kABé\U0001f600q"),
        ("postgresql", r"E'%s\303\251'", "ké"),
        # SQLite: a backslash is a plain character.
        ("sqlite", r"'\%s\'", "\\k\\"),
    ],
)
def test_literal_escapes_are_read_as_the_dialect_reads_them(
    dialect: QueryDialect, literal: str, value: str
) -> None:
    bound = compile_query(f"SELECT a FROM t WHERE k = {literal}", dialect)
    (parameter,) = bound.parameters
    assert bound.sql == f"SELECT a FROM t WHERE k = :{parameter.name}"
    assert query_params(bound.parameters, KeyParts.of("k")) == {parameter.name: value}


@pytest.mark.parametrize(
    ("dialect", "query", "sql"),
    [
        # Literals without expansions go to the server as written.
        ("mysql", r"SELECT a FROM t WHERE k = '%s' AND x REGEXP '\\.'", r"x REGEXP '\\.'"),
        ("mysql", r"SELECT REPLACE(a, '\n', '') FROM t WHERE k = '%s'", r"REPLACE(a, '\n', '')"),
        ("mysql", r"SELECT a FROM t WHERE k = '%s' AND n <> 'it\'s'", r"n <> 'it\'s'"),
        ("mysql", r"SELECT a FROM t WHERE k = '%s' AND n <> 'a\:b'", r"n <> 'a\\:b'"),
        ("postgresql", r"SELECT a FROM t WHERE k = '%s' AND n ~ '\.'", r"n ~ '\.'"),
        ("postgresql", r"SELECT a FROM t WHERE k = '%s' AND n ~ E'\\.'", r"n ~ E'\\.'"),
        ("postgresql", r"SELECT a FROM t WHERE k = '%s' AND n <> E'it\'s'", r"n <> E'it\'s'"),
        ("postgresql", r"SELECT a FROM t WHERE k = '%s' AND n <> U&'d\0061t'", r"U&'d\0061t'"),
        ("postgresql", r"""SELECT "a\b" FROM t WHERE k = '%s'""", r'SELECT "a\b" FROM'),
        ("sqlite", r"SELECT a FROM t WHERE k = '%s' AND n <> '\'", r"n <> '\'"),
    ],
)
def test_literals_without_expansions_stay_as_written(
    dialect: QueryDialect, query: str, sql: str
) -> None:
    bound = compile_query(query, dialect)
    assert sql in bound.sql
    assert bound.codes == ("s",)


@pytest.mark.parametrize(
    ("dialect", "query", "reason"),
    [
        # Read as the server reads it, or refused: nothing may end a literal early.
        ("mysql", r"SELECT a FROM t WHERE k = 'it\'s", "unterminated string literal"),
        ("mysql", r"SELECT a FROM t WHERE k = '\' OR k = '%s'", "unterminated string literal"),
        ("mysql", r"""SELECT "a\" FROM t WHERE k = '%s'""", "unterminated string literal"),
        ("postgresql", r"SELECT a FROM t WHERE k = E'\' OR k = '%s'", "unterminated"),
        ("mysql", r"SELECT a FROM t WHERE k = '\%s'", "a backslash right before an expansion"),
        ("postgresql", r"SELECT a FROM t WHERE k = E'x\%s'", "a backslash right before"),
        ("mysql", r"SELECT a FROM t WHERE k = N'%s'", "a string literal with a prefix (N'')"),
        ("mysql", r"SELECT a FROM t WHERE k = _utf8mb4'%s'", "with a prefix (_utf8mb4'')"),
        ("mysql", r"SELECT a FROM t WHERE k = X'%s'", "hexadecimal digits"),
        ("mysql", r"SELECT a FROM t WHERE k = E'%s'", "with a prefix (E'')"),
        ("sqlite", r"SELECT a FROM t WHERE k = E'%s'", "with a prefix (E'')"),
        ("postgresql", r"SELECT a FROM t WHERE k = U&'%s'", "with a prefix (U&'')"),
        ("postgresql", r"SELECT a FROM t WHERE k = B'%s'", "binary digits"),
        ("postgresql", r"SELECT a FROM t WHERE k = E'%s\0'", "NUL character"),
        ("postgresql", r"SELECT a FROM t WHERE k = E'%s\377'", "valid UTF-8"),
        ("postgresql", r"SELECT a FROM t WHERE k = E'%s\u12'", "invalid Unicode escape"),
        ("postgresql", r"SELECT a FROM t WHERE k = '%s' AND n = \N", "only allowed inside"),
        ("postgresql", """SELECT a FROM t WHERE "%s" = 1""", "inside a quoted identifier"),
        ("mysql", "SELECT a FROM t WHERE `%s` = 1", "inside a quoted identifier"),
        (None, r"SELECT a FROM t WHERE k = '%s' AND n = 'a\b'", "give the map a database"),
    ],
)
def test_compile_query_rejects_per_dialect(
    dialect: QueryDialect | None, query: str, reason: str
) -> None:
    with pytest.raises(TemplateError) as info:
        compile_query(query, dialect)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "literal", ["'a:b'", "' :b'", "':name'", "'::text'", "'a:b:c'", "'x: :y'", "':x_s'"]
)
def test_colons_in_literals_stay_text(literal: str) -> None:
    bound = compile_query(f"SELECT a FROM t WHERE k = '%s' AND note = {literal}")
    assert bind_names(bound.sql) == {"x_s"}
    for dialect in DIALECTS:
        assert f"note = {literal}" in str(sa.text(bound.sql).compile(dialect=dialect))


@pytest.mark.parametrize("identifier", ['"a:b"', '":name"', "`:name`", '"x: :y"'])
def test_colons_in_identifiers_stay_text(identifier: str) -> None:
    bound = compile_query(f"SELECT {identifier} FROM t WHERE k = '%s'")
    assert bind_names(bound.sql) == {"x_s"}
    assert f"SELECT {identifier} FROM" in str(sa.text(bound.sql).compile(dialect=DIALECTS[0]))


def test_postgresql_casts_stay() -> None:
    bound = compile_query("SELECT a::text, b :: int FROM t WHERE k = '%s'::text AND d = %d::citext")
    assert bound.codes == ("s", "d")
    assert bind_names(bound.sql) == {"x_s", "x_d"}
    compiled = str(sa.text(bound.sql).compile(dialect=POSTGRESQL))
    assert compiled == (
        "SELECT a::text, b :: int FROM t WHERE k = %(x_s)s::text AND d = %(x_d)s::citext"
    )


def test_percent_survives_every_driver() -> None:
    bound = compile_query("SELECT a FROM t WHERE k = '%s' AND p LIKE 'x%%' AND n %% 2 = 1")
    # SQLAlchemy doubles '%' for the pyformat/format drivers and leaves it for qmark.
    assert "LIKE 'x%%' AND n %% 2" in str(sa.text(bound.sql).compile(dialect=POSTGRESQL))
    assert "LIKE 'x%%' AND n %% 2" in str(sa.text(bound.sql).compile(dialect=MYSQL))
    assert "LIKE 'x%' AND n % 2" in str(sa.text(bound.sql).compile(dialect=SQLITE))


# compile_query: rejections


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "the query is empty"),
        (" \n\t", "the query is empty"),
        ("SHOW TABLES", "must be one SELECT (or WITH ... SELECT) statement"),
        ("(DELETE FROM t WHERE k = '%s')", "DELETE is not allowed"),
        ("((VALUES ('%s')))", "must be one SELECT"),
        ("SELECTa FROM t WHERE k = '%s'", "must be one SELECT"),
        ("VALUES ('%s')", "must be one SELECT"),
        ("TABLE t", "must be one SELECT"),
        ("\u017felect a FROM t WHERE k = '%s'", "must be one SELECT"),
        ("SELECT 1; DROP TABLE t", "';' is not allowed outside a string literal"),
        ("SELECT a FROM t WHERE k = '%s';", "without a trailing ';'"),
        ("SELECT a FROM t WHERE k = '%s' ;\n", "without a trailing ';'"),
        ("SELECT a FROM t WHERE k = '%s' -- %s", "comments ('--', '/*', '#') are not allowed"),
        ("SELECT a FROM t WHERE k='%s' -- %s", "comments"),
        ("-- x\nSELECT a FROM t WHERE k = '%s'", "comments"),
        ("SELECT a FROM t WHERE k=%s /* x */", "comments"),
        ("SELECT a /*!50000 , b */ FROM t WHERE k = '%s'", "comments"),
        ("SELECT a FROM t WHERE k = '%s' # x", "comments"),
        ("SELECT a FROM t WHERE k = %s--1", "comments"),
        ("SELECT a FROM \"%d\" WHERE k = '%s'", "inside a quoted identifier"),
        ("SELECT a FROM `t_%d` WHERE k = '%s'", "inside a quoted identifier"),
        ('SELECT a FROM t WHERE "%s" = 1', "write the value in single quotes"),
        ("SELECT a FROM t WHERE k = '%s' AND n = 'a\\b'", "give the map a database"),
        ("SELECT a FROM t WHERE k = '%s' AND n = 'it\\'s'", "give the map a database"),
        ("SELECT a FROM t WHERE k = '%s' AND n = \\N", "only allowed inside a string literal"),
        ("SELECT $$x$$ FROM t WHERE k = '%s'", "dollar quoting"),
        ("SELECT $tag$x$tag$ FROM t WHERE k = '%s'", "dollar quoting"),
        ("SELECT a FROM t WHERE k = $1 OR k = '%s'", "positional parameters ($1)"),
        ("SELECT a FROM t WHERE k = '%s", "unterminated string literal"),
        ("SELECT a FROM t WHERE k = '%s' AND n = 'it''s", "unterminated string literal"),
        ("SELECT a FROM t WHERE k = '%s' AND n = '''", "unterminated string literal"),
        ("SELECT \"a FROM t WHERE k = '%s'", "unterminated quoted identifier"),
        ("SELECT `a FROM t WHERE k = '%s'", "unterminated quoted identifier"),
        ("SELECT a FROM t WHERE k = '%x'", "unknown expansion %x"),
        ("SELECT a FROM t WHERE k = %b", "unknown expansion %b in the query"),
        ("SELECT a FROM t WHERE k = %0", "unknown expansion %0"),
        ("SELECT a FROM t WHERE k = '%s' AND n = 5 %", "lone '%'"),
        ("SELECT a FROM t WHERE k = 'x'", "every key would get the same answer"),
        ("SELECT '%%' FROM t", "every key would get the same answer"),
        (
            "SELECT a FROM t WHERE k = '%s' FOR UPDATE",
            "the query may only read: UPDATE is not allowed",
        ),
        ("SELECT a FROM t WHERE k = '%s' FOR NO KEY UPDATE", "UPDATE is not allowed"),
        (
            "SELECT a FROM t WHERE k = '%s' FOR SHARE",
            "the query may only read: FOR SHARE is not allowed",
        ),
        ("SELECT a FROM t WHERE k = '%s' for\n share", "FOR SHARE is not allowed"),
        ("SELECT a FROM t WHERE k = '%s' FOR KEY SHARE", "KEY SHARE is not allowed"),
        ("SELECT a FROM t WHERE k = '%s' LOCK IN SHARE MODE", "LOCK is not allowed"),
        (
            "SELECT * FROM t WHERE k = '%s' INTO OUTFILE '/tmp/x'",
            "the query may only read: INTO is not allowed",
        ),
        ("SELECT a INTO new_table FROM t WHERE k = '%s'", "INTO is not allowed"),
        (
            "WITH d AS (DELETE FROM t RETURNING a) SELECT a FROM d WHERE a = '%s'",
            "DELETE is not allowed",
        ),
        ("DELETE FROM t", "the query may only read: DELETE is not allowed"),
        ("REPLACE INTO t VALUES ('%s')", "REPLACE is not allowed"),
        ("SELECT a FROM t WHERE k = '%s' AND x = (SET @a = 1)", "SET is not allowed"),
        ("SELECT a FROM t WHERE k = %%('%s'", "'%(' before an expansion"),
        ("SELECT a FROM t WHERE k = '%%(' || '%s'", "'%(' before an expansion"),
        ("SELECT a FROM t WHERE k = '%%(a)s' OR k = '%s'", "'%(' before an expansion"),
        ("SELECT a FROM t WHERE k = %s%d", "must stand apart"),
        ("SELECT a FROM t WHERE k = %s'%d'", "must stand apart"),
        ("SELECT a FROM t_%d WHERE k = '%s'", "must stand apart"),
        ("SELECT a FROM t WHERE k = %sabc", "must stand apart"),
        ("SELECT a FROM t WHERE k = '%s'abc", "must stand apart"),
        ("SELECT a FROM t WHERE k = 5%s", "must stand apart"),
        ("SELECT a FROM t WHERE k = x::%s", "must stand apart"),
        ("SELECT a FROM t WHERE k = E'%s'", "a string literal with a prefix"),
        ("SELECT a FROM t WHERE k = N'%s'", "a string literal with a prefix"),
        ("SELECT a FROM t WHERE k = _utf8mb4'%s'", "a string literal with a prefix"),
    ],
)
def test_compile_query_rejects(query: str, reason: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_query(query)
    assert reason in str(info.value)


@pytest.mark.parametrize("word", WRITE_WORDS)
@pytest.mark.parametrize("spelling", [str.upper, str.lower, str.capitalize])
def test_compile_query_rejects_every_write_word(word: str, spelling: Callable[[str], str]) -> None:
    written = spelling(word)
    with pytest.raises(TemplateError) as info:
        compile_query(f"SELECT a FROM t WHERE k = '%s' AND {written} x")
    assert str(info.value) == f"the query may only read: {word} is not allowed"


@pytest.mark.parametrize("word", WRITE_WORDS)
def test_write_words_inside_literals_and_names_are_text(word: str) -> None:
    bound = compile_query(
        f"SELECT \"{word}\", `{word}`, {word}_at FROM t WHERE k = '%s' AND n <> '{word}'"
    )
    assert bound.codes == ("s",)


# compile_query: properties

SQLISH = st.text(alphabet="SELCTWHIFROMsud%'\"`:;-/*#$\\ ()=_1Dx\n", max_size=60)
PIECES = [
    "'%s'",
    "'%U'",
    "%d",
    "%1",
    "||",
    "'@'",
    "'a:b'",
    "' :b'",
    "::text",
    "AND n =",
    "'it''s'",
    '"c:l"',
    "`b`",
    "%%",
    ":",
    "(",
    ")",
    "x",
    "REPLACE(",
    "FOR",
    "SHARE",
    "'",
    '"',
    "E'%s'",
    ";",
    "--",
]
FRAGMENTS = st.builds(
    lambda start, pieces, separator: start + separator.join(pieces),
    st.sampled_from(["SELECT a FROM t WHERE k = ", "WITH x AS (SELECT 1) SELECT a FROM x WHERE "]),
    st.lists(st.sampled_from(PIECES), max_size=10),
    st.sampled_from([" ", "", "\n"]),
)


@given(st.one_of(st.text(), SQLISH, FRAGMENTS))
@example("SELECT a FROM t WHERE k = '%s' AND b = ':x_u'")
@example("SELECT a FROM t WHERE k = %s\\:x_u")
def test_compile_query_only_raises_template_error(query: str) -> None:
    for name in (None, *DIALECT_NAMES):
        try:
            bound = compile_query(query, name)
        except TemplateError:
            continue
        # text() finds exactly the binds the query declares: no ':' of the admin's text
        # and no part of a literal outside a bound one becomes a parameter.
        names = [parameter.name for parameter in bound.parameters]
        assert bind_names(bound.sql) == set(names)
        assert len(set(names)) == len(names)
        assert bound.codes
        assert len(set(bound.codes)) == len(bound.codes)
        assert set(bound.codes) <= set("sud123456789")
        for dialect in DIALECTS:
            sa.text(bound.sql).compile(dialect=dialect)
        # Each positional driver gets one value per place, in order.
        statement = sa.text(bound.sql).bindparams(
            *(sa.bindparam(name, type_=sa.String()) for name in names)
        )
        for driver in DRIVER_DIALECTS:
            prepared = PreparedLookup(statement, driver)
            assert "%(" not in prepared.sql.replace("%%", "")
            assert set(prepared.names) == set(names)
            if driver.paramstyle != "numeric_dollar":  # asyncpg reuses $1 for one name
                assert len(prepared.names) == len(_TEXT_BIND_RE.findall(bound.sql))


# An independent reading of the query: quoted tokens first, then %-expansions.
TOKEN_RE = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|%.|[^'"`%]+""")
EXPANSION_RE = re.compile(r"%[sudSUD1-9]")


def expected_sqlite_text(query: str) -> str:
    """Return what the compiled query should read on SQLite: each expansion a '?'."""
    out = []
    for token in TOKEN_RE.findall(query):
        bound_literal = token[0] == "'" and EXPANSION_RE.search(token.replace("%%", ""))
        if bound_literal or (token[0] == "%" and token != "%%"):
            out.append("?")
        else:
            out.append(token.replace("%%", "%"))
    return "".join(out)


@given(FRAGMENTS)
@example("SELECT a FROM t WHERE k = ' '%s' '")
def test_compiled_text_keeps_everything_but_the_binds(query: str) -> None:
    try:
        bound = compile_query(query)
    except TemplateError:
        return
    # Rendering each bind back as the literal or expansion it replaced gives the
    # query again, modulo %%.
    compiled = str(sa.text(bound.sql).compile(dialect=SQLITE))
    assert compiled == expected_sqlite_text(query)


REFERENCE = compile_query("SELECT goto FROM alias WHERE address = '%s' AND active = '1'")
REFERENCE_SQL = {
    dialect.name: str(sa.text(REFERENCE.sql).bindparams(x_s="x").compile(dialect=dialect))
    for dialect in DIALECTS
}


@given(st.text(min_size=1))
@example("' OR '1'='1")
@example("x'; DROP TABLE alias; --")
@example(":x_s")
@example("\\:x_u %s %% $$ \x00")
def test_keys_only_ever_reach_the_bind_value(key: str) -> None:
    params = query_params(REFERENCE.parameters, KeyParts.of(key))
    assert params == {"x_s": key}
    for dialect in DIALECTS:
        compiled = sa.text(REFERENCE.sql).bindparams(**params).compile(dialect=dialect)
        assert str(compiled) == REFERENCE_SQL[dialect.name]
        assert compiled.params == {"x_s": key}
