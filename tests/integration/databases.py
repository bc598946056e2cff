"""Real MariaDB and PostgreSQL servers for the tests; each run works in its own databases."""

# A server comes from SOCKMAPD_TEST_MYSQL_URL / SOCKMAPD_TEST_PG_URL when set, else from a
# throw-away container when a Docker engine answers, else its tests are skipped. With
# SOCKMAPD_REQUIRE_DB=1 a missing or unreachable server fails them instead.

from __future__ import annotations

import asyncio
import importlib
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, cast

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

BackendName = Literal["sqlite", "mariadb", "postgresql"]
ServerKind = Literal["mariadb", "postgresql"]

BACKENDS: tuple[BackendName, ...] = ("sqlite", "mariadb", "postgresql")
ENV_URL: dict[ServerKind, str] = {
    "mariadb": "SOCKMAPD_TEST_MYSQL_URL",
    "postgresql": "SOCKMAPD_TEST_PG_URL",
}
DRIVER: dict[BackendName, str] = {
    "sqlite": "sqlite+aiosqlite",
    "mariadb": "mysql+asyncmy",
    "postgresql": "postgresql+asyncpg",
}
CONTAINER_IMAGE: dict[ServerKind, str] = {"mariadb": "mariadb:10.11", "postgresql": "postgres:15"}
CONNECT_TIMEOUT = 5.0
STATEMENT_TIMEOUT = 60.0

# Unique per run: parallel and repeated runs never share a database or a user.
RUN_ID = f"{os.getpid()}_{secrets.token_hex(3)}"


def unique_name(suffix: str = "") -> str:
    """Return a database or user name that belongs to this test run only."""
    return f"sockmapd_t_{RUN_ID}" + (f"_{suffix}" if suffix else "")


def _connect_args(backend: BackendName) -> dict[str, Any]:
    if backend == "mariadb":
        return {"connect_timeout": CONNECT_TIMEOUT, "charset": "utf8mb4"}
    if backend == "postgresql":
        return {"timeout": CONNECT_TIMEOUT}
    return {}


async def _run(
    backend: BackendName, url: str, work: Callable[..., Awaitable[Any]], *args: Any
) -> Any:
    """Connect to url, run work(connection, *args) in autocommit mode, and disconnect."""
    engine = create_async_engine(
        url,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args=_connect_args(backend),
    )
    try:
        async with asyncio.timeout(STATEMENT_TIMEOUT), engine.connect() as conn:
            return await work(conn, *args)
    finally:
        await engine.dispose()


async def _execute(conn: AsyncConnection, statements: Sequence[str]) -> None:
    # no_parameters: the SQL goes to the driver as written, so a '%' is not a placeholder.
    raw = await conn.execution_options(no_parameters=True)
    for statement in statements:
        await raw.exec_driver_sql(statement)


async def _fetch(conn: AsyncConnection, sql: str) -> list[tuple[Any, ...]]:
    raw = await conn.execution_options(no_parameters=True)
    result = await raw.exec_driver_sql(sql)
    return [tuple(row) for row in result.all()]


async def _insert(
    conn: AsyncConnection, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    names = ", ".join(columns)
    params = ", ".join(f":p{i}" for i in range(len(columns)))
    statement = text(f"INSERT INTO {table} ({names}) VALUES ({params})")
    await conn.execute(statement, [{f"p{i}": v for i, v in enumerate(row)} for row in rows])


@dataclass(frozen=True)
class Database:
    """One database (a schema on a server, or a SQLite file) that tests set up and inspect."""

    name: BackendName
    url: str

    def execute(self, sql_statements: Sequence[str]) -> None:
        """Run SQL statements in order, each in autocommit mode, exactly as written."""
        asyncio.run(_run(self.name, self.url, _execute, list(sql_statements)))

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one query and return its rows."""
        rows: list[tuple[Any, ...]] = asyncio.run(_run(self.name, self.url, _fetch, sql))
        return rows

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Insert rows with bound parameters, so values need no SQL quoting on any backend."""
        asyncio.run(_run(self.name, self.url, _insert, table, list(columns), list(rows)))

    def create_text_table(self, table: str, columns: Sequence[str], *, exact: bool = False) -> None:
        """(Re)create a table of nullable text columns; exact: compare bytes on MariaDB too."""
        # On MariaDB the table is utf8mb4 with the server's default collation, which ignores
        # case, accents and trailing spaces; utf8mb4_nopad_bin compares bytes as the other
        # backends do (utf8mb4_bin would still ignore trailing spaces).
        options = ""
        if self.name == "mariadb":
            options = " DEFAULT CHARSET=utf8mb4"
            if exact:
                options += " COLLATE=utf8mb4_nopad_bin"
        definition = ", ".join(f"{column} TEXT" for column in columns)
        self.execute(
            [f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} ({definition}){options}"]
        )

    def count(self, table: str) -> int:
        """Return the number of rows in table."""
        return int(self.fetch(f"SELECT COUNT(*) FROM {table}")[0][0])


@dataclass(frozen=True)
class Server:
    """A reachable MariaDB or PostgreSQL server, administered through url."""

    kind: ServerKind
    url: URL

    def database_url(self, database: str) -> str:
        """Return the URL, in the form sockmapd accepts, of a database on this server."""
        return self.url.set(database=database).render_as_string(hide_password=False)

    def admin(self) -> Database:
        """Return the database the server URL names, for server-wide statements."""
        return Database(self.kind, self.url.render_as_string(hide_password=False))

    def create_database(self, database: str) -> Database:
        """Create an empty UTF-8 database and return it."""
        if self.kind == "mariadb":
            sql = f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"
        else:
            sql = f"CREATE DATABASE \"{database}\" ENCODING 'UTF8' TEMPLATE template0"
        self.admin().execute([sql])
        return Database(self.kind, self.database_url(database))

    def drop_database(self, database: str) -> None:
        """Drop a database, also when a client still holds a connection to it."""
        if self.kind == "mariadb":
            sql = f"DROP DATABASE IF EXISTS `{database}`"
        else:
            sql = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
        self.admin().execute([sql])


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("SOCKMAPD_REQUIRE_DB") == "1":
        pytest.fail(f"{reason}, and SOCKMAPD_REQUIRE_DB=1 requires the database", pytrace=False)
    pytest.skip(reason)


def _server_url(kind: ServerKind, value: str) -> URL:
    try:
        url = make_url(value)
    except ArgumentError:
        _unavailable(f"{ENV_URL[kind]} is not a database URL")
    return url.set(drivername=DRIVER[kind])


def _probe(server: Server) -> str | None:
    """Return why the server cannot be used, or None when it answers a query."""

    async def select_one(conn: AsyncConnection) -> None:
        await conn.exec_driver_sql("SELECT 1")

    try:
        probe = _run(server.kind, server.admin().url, select_one)
        asyncio.run(asyncio.wait_for(probe, 2 * CONNECT_TIMEOUT))
    except Exception as exc:
        message = " ".join(str(exc).split())[:300]
        where = server.url.render_as_string(hide_password=True)
        return f"{server.kind} at {where} is unreachable: {type(exc).__name__}: {message}"
    return None


def _docker_problem() -> str | None:
    """Return why no Docker engine can be used, or None when one answers a ping."""
    try:
        docker = importlib.import_module("docker")
        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}: {exc})"
    return None


def _start_container(kind: ServerKind) -> tuple[Any, URL]:
    """Start a database container and return it with the URL of its admin database."""
    password = secrets.token_hex(8)
    if kind == "mariadb":
        module = importlib.import_module("testcontainers.community.mysql")
        container = module.MySqlContainer(
            CONTAINER_IMAGE[kind], username="root", password=password, dbname="test"
        )
        port = 3306
        user = "root"
    else:
        module = importlib.import_module("testcontainers.community.postgres")
        container = module.PostgresContainer(
            CONTAINER_IMAGE[kind], username="postgres", password=password, dbname="test"
        )
        port = 5432
        user = "postgres"
    container.start()
    try:
        url = URL.create(
            DRIVER[kind],
            username=user,
            password=password,
            host=container.get_container_host_ip(),
            port=int(container.get_exposed_port(port)),
            database="test",
        )
    except Exception:
        container.stop()
        raise
    return container, url


def _server(kind: ServerKind) -> Iterator[Server]:
    configured = os.environ.get(ENV_URL[kind])
    container = None
    if configured:
        server = Server(kind, _server_url(kind, configured))
    else:
        docker_problem = _docker_problem()
        if docker_problem is not None:
            _unavailable(f"{ENV_URL[kind]} is not set and {docker_problem}")
        try:
            container, url = _start_container(kind)
        except Exception as exc:
            _unavailable(f"cannot start a {CONTAINER_IMAGE[kind]} container: {exc}")
        server = Server(kind, url)
    try:
        problem = _probe(server)
        if problem is not None:
            _unavailable(problem)
        yield server
    finally:
        if container is not None:
            container.stop()


def _database(server: Server) -> Iterator[Database]:
    name = unique_name()
    database = server.create_database(name)
    try:
        yield database
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[Server]:
    """The MariaDB (or MySQL) server, checked once per session; skips or fails if absent."""
    yield from _server("mariadb")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The PostgreSQL server, checked once per session; skips or fails if absent."""
    yield from _server("postgresql")


@pytest.fixture(scope="session")
def mysql_database(mysql_server: Server) -> Iterator[Database]:
    """This run's own database on the MariaDB server, dropped at the end of the session."""
    yield from _database(mysql_server)


@pytest.fixture(scope="session")
def pg_database(pg_server: Server) -> Iterator[Database]:
    """This run's own database on the PostgreSQL server, dropped at the end of the session."""
    yield from _database(pg_server)


@pytest.fixture(scope="session")
def mysql_url(mysql_database: Database) -> str:
    """The sockmapd URL of this run's MariaDB database."""
    return mysql_database.url


@pytest.fixture(scope="session")
def pg_url(pg_database: Database) -> str:
    """The sockmapd URL of this run's PostgreSQL database."""
    return pg_database.url


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Database:
    """Each backend in turn: a fresh SQLite file, or this run's MariaDB or PostgreSQL database."""
    name: BackendName = request.param
    if name == "mariadb":
        return cast(Database, request.getfixturevalue("mysql_database"))
    if name == "postgresql":
        return cast(Database, request.getfixturevalue("pg_database"))
    path = tmp_path_factory.mktemp("sqlite") / "backend.sqlite3"
    return Database("sqlite", f"{DRIVER['sqlite']}:///{path}")
