"""PreparedLookup's SQL and argument order per dialect, and which driver errors mean a lost link."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from asyncmy import errors as mysql_errors
from sqlalchemy import String, bindparam, text
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql import ClauseElement

from sockmapd.backends.drivers import (
    Driver,
    MysqlDriver,
    PostgresDriver,
    PreparedLookup,
    SqliteDriver,
    driver_errors,
)
from sockmapd.backends.errors import ConnectionLost, DatabaseError, QueryFailed, QueryTimeout
from sockmapd.config import MapConfig
from sockmapd.config.expansions import compile_query
from sockmapd.lookup.statements import build_statement

# A Postfix query with several expansions, %d twice, a literal % and a quoted quote.
QUERY = (
    "SELECT goto FROM alias WHERE domain = '%d' AND local = '%u' AND address = '%s' "
    "AND goto NOT LIKE '%%100%%' AND note <> 'it''s' AND domain <> CONCAT('x', '%d')"
)
PARAMS = {"x_s": "user@example.com", "x_u": "user", "x_d": "example.com"}


def dialect(drivername: str) -> Dialect:
    """Return the dialect an engine of that driver compiles for, as sockmapd builds it."""
    return create_async_engine(URL.create(drivername)).dialect


def query_statement(query: str) -> ClauseElement:
    """Build a query map's statement the way MapLookup does."""
    bound = compile_query(query)
    return text(bound.sql).bindparams(
        *(bindparam(f"x_{code}", type_=String()) for code in bound.codes)
    )


def table_statement() -> ClauseElement:
    return build_statement(MapConfig(database="d", table="users", key="address", value="goto"))


def one_line(sql: str) -> str:
    return " ".join(sql.split())


def test_table_map_on_asyncpg() -> None:
    prepared = PreparedLookup(table_statement(), dialect("postgresql+asyncpg"))
    assert one_line(prepared.sql) == ('SELECT "goto" FROM "users" WHERE "address" = $1::VARCHAR')
    assert prepared.arguments(PARAMS) == ("user@example.com",)


def test_table_map_on_asyncmy() -> None:
    prepared = PreparedLookup(table_statement(), dialect("mysql+asyncmy"))
    assert one_line(prepared.sql) == "SELECT `goto` FROM `users` WHERE `address` = %s"
    assert prepared.arguments(PARAMS) == ("user@example.com",)


def test_table_map_on_sqlite() -> None:
    prepared = PreparedLookup(table_statement(), dialect("sqlite+aiosqlite"))
    assert one_line(prepared.sql) == 'SELECT "goto" FROM "users" WHERE "address" = ?'
    assert prepared.arguments(PARAMS) == ("user@example.com",)


def test_query_map_on_asyncpg_numbers_each_bind_once() -> None:
    prepared = PreparedLookup(query_statement(QUERY), dialect("postgresql+asyncpg"))
    assert one_line(prepared.sql) == (
        "SELECT goto FROM alias WHERE domain = $1::VARCHAR AND local = $2::VARCHAR "
        "AND address = $3::VARCHAR AND goto NOT LIKE '%100%' AND note <> 'it''s' "
        "AND domain <> CONCAT('x', $1::VARCHAR)"
    )
    assert prepared.arguments(PARAMS) == ("example.com", "user", "user@example.com")


def test_query_map_on_asyncmy_doubles_literal_percent() -> None:
    prepared = PreparedLookup(query_statement(QUERY), dialect("mysql+asyncmy"))
    # asyncmy formats the arguments in with %, so a literal % must reach it doubled.
    assert one_line(prepared.sql) == (
        "SELECT goto FROM alias WHERE domain = %s AND local = %s AND address = %s "
        "AND goto NOT LIKE '%%100%%' AND note <> 'it''s' AND domain <> CONCAT('x', %s)"
    )
    assert prepared.arguments(PARAMS) == (
        "example.com",
        "user",
        "user@example.com",
        "example.com",
    )


def test_query_map_on_sqlite() -> None:
    prepared = PreparedLookup(query_statement(QUERY), dialect("sqlite+aiosqlite"))
    assert one_line(prepared.sql) == (
        "SELECT goto FROM alias WHERE domain = ? AND local = ? AND address = ? "
        "AND goto NOT LIKE '%100%' AND note <> 'it''s' AND domain <> CONCAT('x', ?)"
    )
    assert prepared.arguments(PARAMS) == (
        "example.com",
        "user",
        "user@example.com",
        "example.com",
    )


def test_arguments_follow_the_order_in_the_sql_not_in_the_query_codes() -> None:
    prepared = PreparedLookup(
        query_statement("SELECT v FROM t WHERE b = '%u' AND a = '%s' AND c = '%u'"),
        dialect("mysql+asyncmy"),
    )
    assert prepared.arguments({"x_s": "S", "x_u": "U", "x_d": "D"}) == ("U", "S", "U")


def test_prepared_sqlite_lookup_finds_the_row_the_expansions_name(tmp_path: Path) -> None:
    path = tmp_path / "alias.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE alias (domain TEXT, local TEXT, address TEXT, goto TEXT)")
        setup.executemany(
            "INSERT INTO alias VALUES (?, ?, ?, ?)",
            [
                ("example.com", "user", "user@example.com", "found"),
                ("user", "example.com", "user@example.com", "swapped"),
            ],
        )
    setup.close()
    prepared = PreparedLookup(
        query_statement(
            "SELECT goto FROM alias WHERE domain = '%d' AND local = '%u' AND address = '%s'"
        ),
        dialect("sqlite+aiosqlite"),
    )
    driver = SqliteDriver((str(path),), {})

    async def lookup() -> list[tuple[object, ...]]:
        conn = await driver.connect()
        try:
            rows = await driver.fetch(conn, prepared.sql, prepared.arguments(PARAMS), 5.0)
            return [tuple(row) for row in rows]
        finally:
            await driver.close(conn)

    assert asyncio.run(lookup()) == [("found",)]


def kind_of(error: DatabaseError) -> type[DatabaseError]:
    return type(error)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.ConnectionFailureError("connection failure"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        # asyncpg's first error after pg_terminate_backend, seen under load.
        asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
        ConnectionResetError("reset by peer"),
        OSError("network is unreachable"),
        EOFError(),
    ],
)
def test_postgres_lost_connection(exc: BaseException) -> None:
    assert kind_of(PostgresDriver().translate(exc)) is ConnectionLost


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.UndefinedTableError('relation "lk_users" does not exist'),
        asyncpg.PostgresSyntaxError("syntax error"),
        asyncpg.PostgresError("no sqlstate"),
    ],
)
def test_postgres_query_error_keeps_the_connection(exc: BaseException) -> None:
    error = PostgresDriver().translate(exc)
    assert isinstance(error, QueryFailed)
    assert error.reusable


@pytest.mark.parametrize(
    "exc",
    [
        # TimeoutError is an OSError: it must not be taken for a broken socket.
        TimeoutError(),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    ],
)
def test_postgres_timeout_is_a_timeout_not_a_lost_connection(exc: BaseException) -> None:
    assert kind_of(PostgresDriver().translate(exc)) is QueryTimeout


def test_postgres_sqlstate_decides_not_the_class() -> None:
    lost = asyncpg.PostgresError("custom")
    lost.sqlstate = "08006"  # type: ignore[attr-defined]
    kept = asyncpg.PostgresError("custom")
    kept.sqlstate = "42P01"  # type: ignore[attr-defined]
    assert kind_of(PostgresDriver().translate(lost)) is ConnectionLost
    assert kind_of(PostgresDriver().translate(kept)) is QueryFailed


def pg_error(sqlstate: str, message: str) -> asyncpg.PostgresError:
    exc = asyncpg.PostgresError(message)
    exc.sqlstate = sqlstate  # type: ignore[attr-defined]
    return exc


# What PgBouncer in transaction or statement pooling answers a client set up for a
# server of its own (asyncpg appends its own advice on further lines).
PGBOUNCER_ERRORS = [
    (
        pg_error("08P01", "unsupported startup parameter: default_transaction_read_only"),
        ConnectionLost,
        "the server refused a startup setting (unsupported startup parameter: "
        "default_transaction_read_only); if this is PgBouncer, "
        "set pgbouncer = true in [databases.mail]",
    ),
    (
        pg_error("26000", 'prepared statement "__asyncpg_stmt_3__" does not exist\nHINT: ...'),
        QueryFailed,
        "a prepared statement is not on the server connection it was made on (prepared "
        'statement "__asyncpg_stmt_3__" does not exist); if this is PgBouncer in '
        "transaction or statement pooling, set pgbouncer = true in [databases.mail]",
    ),
    (
        pg_error("42P05", 'prepared statement "__asyncpg_stmt_2__" already exists'),
        QueryFailed,
        "a prepared statement is not on the server connection it was made on (prepared "
        'statement "__asyncpg_stmt_2__" already exists); if this is PgBouncer in '
        "transaction or statement pooling, set pgbouncer = true in [databases.mail]",
    ),
]


@pytest.mark.parametrize(("exc", "kind", "hint"), PGBOUNCER_ERRORS)
def test_postgres_errors_of_pgbouncer_name_the_option(
    exc: BaseException, kind: type[DatabaseError], hint: str
) -> None:
    error = PostgresDriver("mail").translate(exc)
    # The hint adds advice; what the error means (TEMP, never NOTFOUND) is unchanged.
    assert kind_of(error) is kind
    assert error.hint == hint


@pytest.mark.parametrize(("exc", "kind", "hint"), PGBOUNCER_ERRORS)
def test_postgres_with_pgbouncer_set_gives_no_hint(
    exc: BaseException, kind: type[DatabaseError], hint: str
) -> None:
    error = PostgresDriver("mail", pgbouncer=True).translate(exc)
    assert kind_of(error) is kind
    assert error.hint is None


@pytest.mark.parametrize(
    "exc",
    [
        pg_error("08P01", "invalid message format"),
        asyncpg.UndefinedTableError('relation "lk_users" does not exist'),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        TimeoutError(),
        ValueError("unknown"),
    ],
)
def test_postgres_other_errors_give_no_hint(exc: BaseException) -> None:
    assert PostgresDriver("mail").translate(exc).hint is None


@pytest.mark.parametrize(
    "exc",
    [
        mysql_errors.OperationalError(2013, "Lost connection to MySQL server during query"),
        mysql_errors.OperationalError(2006, "MySQL server has gone away"),
        mysql_errors.OperationalError(4031, "disconnected by the server for inactivity"),
        mysql_errors.InterfaceError(0, "connection closed"),
        ConnectionResetError("reset by peer"),
        EOFError(),
    ],
)
def test_mysql_lost_connection(exc: BaseException) -> None:
    assert kind_of(MysqlDriver().translate(exc)) is ConnectionLost


@pytest.mark.parametrize(
    "exc",
    [
        mysql_errors.ProgrammingError(1146, "Table 'db.lk_users' doesn't exist"),
        mysql_errors.OperationalError(1054, "Unknown column 'x' in 'where clause'"),
        mysql_errors.OperationalError(),
    ],
)
def test_mysql_query_error_keeps_the_connection(exc: BaseException) -> None:
    error = MysqlDriver().translate(exc)
    assert isinstance(error, QueryFailed)
    assert error.reusable


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        mysql_errors.OperationalError(1317, "Query execution was interrupted"),
        mysql_errors.OperationalError(1969, "Query execution was interrupted (max_statement_time)"),
    ],
)
def test_mysql_timeout_is_a_timeout_not_a_lost_connection(exc: BaseException) -> None:
    assert kind_of(MysqlDriver().translate(exc)) is QueryTimeout


@pytest.mark.parametrize(
    "exc",
    [
        sqlite3.OperationalError("no such table: lk_users"),
        sqlite3.OperationalError("database is locked"),
        sqlite3.DatabaseError("file is not a database"),
    ],
)
def test_sqlite_errors_are_query_errors(exc: BaseException) -> None:
    assert kind_of(SqliteDriver((":memory:",), {}).translate(exc)) is QueryFailed


@pytest.mark.parametrize(
    "driver", [PostgresDriver(), MysqlDriver(), SqliteDriver((":memory:",), {})]
)
def test_an_unknown_error_is_a_query_error_on_a_connection_not_reused(driver: Driver) -> None:
    error = driver.translate(ValueError("not a database error"))
    assert isinstance(error, QueryFailed)
    assert not error.reusable
    assert kind_of(driver.translate(TimeoutError())) is QueryTimeout


def test_driver_errors_cover_every_installed_driver() -> None:
    errors = driver_errors()
    for exc in (
        asyncpg.UndefinedTableError("x"),
        asyncpg.InterfaceError("x"),
        mysql_errors.ProgrammingError(1146, "x"),
        sqlite3.OperationalError("x"),
    ):
        assert isinstance(exc, errors)
    assert not isinstance(TimeoutError(), errors)
    assert not isinstance(ValueError(), errors)


class _StuckCursor:
    """An asyncmy cursor whose query never finishes, as on a locked row."""

    async def __aenter__(self) -> _StuckCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, sql: str, args: tuple[str, ...]) -> None:
        await asyncio.Event().wait()

    async def fetchall(self) -> list[tuple[str]]:
        return [("never",)]


class _StuckConnection:
    def cursor(self) -> _StuckCursor:
        return _StuckCursor()


def test_a_query_past_its_time_is_a_query_timeout() -> None:
    async def scenario() -> None:
        with pytest.raises(QueryTimeout):
            await MysqlDriver().fetch(_StuckConnection(), "SELECT 1", (), 0.01)
        # The task is not left cancelled: it goes on awaiting.
        await asyncio.sleep(0)

    asyncio.run(scenario())


def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def scenario() -> None:
        task = asyncio.create_task(MysqlDriver().fetch(_StuckConnection(), "SELECT 1", (), 60))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_query_within_its_time_leaves_no_timer_behind() -> None:
    class Quick(_StuckCursor):
        async def execute(self, sql: str, args: tuple[str, ...]) -> None:
            return None

    class QuickConnection:
        def cursor(self) -> Quick:
            return Quick()

    async def scenario() -> None:
        rows = await MysqlDriver().fetch(QuickConnection(), "SELECT 1", (), 0.01)
        assert rows == [("never",)]
        # Past the query's time: had its timer fired, this sleep would be cancelled.
        await asyncio.sleep(0.03)

    asyncio.run(scenario())
