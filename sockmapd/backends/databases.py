"""The configured databases: one SQLAlchemy engine and one lookup pool each."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from sockmapd.backends.connectors import Connector
from sockmapd.backends.drivers import (
    Driver,
    MysqlDriver,
    PostgresDriver,
    SqliteDriver,
    driver_errors,
)
from sockmapd.backends.errors import DatabaseError
from sockmapd.backends.pool import DriverPool
from sockmapd.config import DatabaseConfig
from sockmapd.config.files import UnreadableFile, read_bounded

log = logging.getLogger(__name__)

# A password file or a TLS certificate is small; reading more proves nothing more.
MAX_SETTINGS_FILE = 1 << 20

# What a database can raise through a SQLAlchemy engine (schema checks and
# --check-config --connect): SQLAlchemy's errors, the connector's, and the
# drivers' own on a dropped socket. The lookup path never sees these: its
# drivers translate every error into sockmapd.backends.errors.
EngineError: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    EOFError,
    DatabaseError,
    *driver_errors(),
)


# A database's config and a digest of each file it reads (password, TLS).
Settings = tuple[DatabaseConfig, tuple[str | None, ...]]


class DatabaseSetupError(Exception):
    """A database could not be prepared at load time (e.g. a broken SQLite init script)."""


class Database:
    """One configured database: its engine for SQL and schema checks, and its lookup pool.

    The engine compiles each map's statement for the dialect and serves schema
    checks; it holds no connection between uses (NullPool). Lookups and health
    probes run on the pool's raw driver connections, opened by the same connector
    (hosts, failover, TLS, read-only sessions). ``settings`` says whether a reload
    may keep this database and its open connections.
    """

    __slots__ = ("config", "engine", "name", "pool", "settings")

    def __init__(
        self,
        name: str,
        config: DatabaseConfig,
        engine: AsyncEngine,
        pool: DriverPool,
        settings: Settings,
    ) -> None:
        self.name = name
        self.config = config
        self.engine = engine
        self.pool = pool
        self.settings = settings

    async def dispose(self) -> None:
        """Close the lookup pool's connections (busy ones when they come back)."""
        try:
            await self.pool.dispose()
        except Exception:
            log.exception("closing the connections of database %s failed", self.name)
        try:
            await self.engine.dispose()
        except Exception:
            log.exception("closing database %s failed", self.name)


class Databases(Mapping[str, Database]):
    """The databases of one loaded config, by name."""

    def __init__(self, databases: Mapping[str, Database]) -> None:
        self._databases = dict(databases)

    def __getitem__(self, name: str) -> Database:
        """Return the database called name."""
        return self._databases[name]

    def __iter__(self) -> Iterator[str]:
        """Iterate over the database names."""
        return iter(self._databases)

    def __len__(self) -> int:
        """Return the number of databases."""
        return len(self._databases)

    def replaced_by(self, newer: Databases) -> list[Database]:
        """Return the databases of this set that newer does not carry over."""
        kept = {id(database) for database in newer.values()}
        return [database for database in self.values() if id(database) not in kept]

    def drain(self) -> None:
        """Close every idle lookup connection now; busy ones close when they come back."""
        for database in self.values():
            database.pool.drain()

    async def dispose(self) -> None:
        """Close every connection of every database."""
        for database in self.values():
            await database.dispose()


def create_databases(
    configs: Mapping[str, DatabaseConfig], previous: Databases | None = None
) -> Databases:
    """Return one Database per config, reusing those of previous whose settings are unchanged.

    A reused database keeps its pool and the connections open in it, so a reload
    that changes nothing about a database costs that database no connection. No
    connection is opened here.
    """
    databases: dict[str, Database] = {}
    for name, db in configs.items():
        settings = _settings(db)
        old = previous.get(name) if previous is not None else None
        if old is not None and old.settings == settings:
            databases[name] = old
        else:
            databases[name] = _create_database(name, db, settings)
    return Databases(databases)


def _settings(db: DatabaseConfig) -> Settings:
    """Return what decides a database's connections: its config and the files it reads."""
    files = (db.password_file, db.tls_ca_file, db.tls_cert_file, db.tls_key_file)
    # A renewed certificate or password under the same file name is a change too.
    # Compared with ==: the model compares every field, secrets by their value.
    return (db, tuple(_digest(path) for path in files))


def _digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(read_bounded(path, MAX_SETTINGS_FILE, str(path))).hexdigest()
    except UnreadableFile as exc:
        # Unreadable now: the connector will say so when it opens a connection.
        return f"unreadable: {exc}"


def _create_database(name: str, db: DatabaseConfig, settings: Settings) -> Database:
    url = db.sqlalchemy_url()
    # Lookups are single read-only statements: AUTOCOMMIT spares the
    # BEGIN/ROLLBACK round trips a transaction per lookup would cost.
    # hide_parameters: the parameters are the key or parts of it, and a database
    # error is logged with its message; log.log_keys = false must hold there too.
    # NullPool: the lookup pool is the only one that keeps connections open.
    if db.dialect == "sqlite":
        _prepare_sqlite(name, url, db.init_sql)
        engine = create_async_engine(
            url, isolation_level="AUTOCOMMIT", hide_parameters=True, poolclass=NullPool
        )
        event.listen(engine.sync_engine, "connect", _sqlite_read_only)
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        sqlite = SqliteDriver(args, kwargs)
        return Database(name, db, engine, _lookup_pool(name, db, sqlite, sqlite.connect), settings)
    driver: Driver
    if db.dialect == "postgresql":
        postgres = PostgresDriver(name, pgbouncer=db.pgbouncer)
        connector = Connector(name, db, explain=postgres.translate)
        driver = postgres
    else:
        connector = Connector(name, db)
        driver = MysqlDriver(connector.beside)
    if db.pgbouncer:
        engine = _pgbouncer_engine(url, connector)
    else:
        engine = create_async_engine(
            URL.create(url.drivername),
            async_creator=connector,
            isolation_level="AUTOCOMMIT",
            hide_parameters=True,
            poolclass=NullPool,
        )
    return Database(name, db, engine, _lookup_pool(name, db, driver, connector), settings)


def _pgbouncer_engine(url: URL, connector: Connector) -> AsyncEngine:
    """Return an engine whose statements stay within one transaction, as PgBouncer needs.

    SQLAlchemy's asyncpg adapter prepares each statement under a name and caches it:
    behind PgBouncer a later use of the name may reach a server connection that does
    not have it, and a name left on a server connection may clash with another
    client's (asyncpg numbers them per process). An empty name makes it the unnamed
    statement, which asyncpg (its statement cache off) parses again with each
    execution, and the adapter caches nothing.
    """

    def creator() -> Any:
        dbapi: Any = engine.sync_engine.dialect.dbapi
        return dbapi.connect(
            async_creator_fn=connector,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=lambda: "",
        )

    engine = create_async_engine(
        URL.create(url.drivername),
        creator=creator,
        isolation_level="AUTOCOMMIT",
        hide_parameters=True,
        poolclass=NullPool,
    )
    return engine


def _lookup_pool(
    name: str, db: DatabaseConfig, driver: Driver, connect: Callable[[], Awaitable[Any]]
) -> DriverPool:
    return DriverPool(
        name,
        driver,
        connect,
        size=db.pool_size,
        overflow=db.max_overflow,
        # Waiting longer than a query may take for a connection means the
        # database is overloaded: answer TEMP rather than queue without bound.
        # Servers drop idle connections (MySQL's wait_timeout, firewalls); renew
        # them before that rather than discover it on a lookup.
        recycle=db.pool_recycle,
    )


def _sqlite_read_only(dbapi_connection: Any, _record: object) -> None:
    """Make every lookup connection refuse writes, so a mistaken query can never write."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA query_only = ON")
    finally:
        cursor.close()


def _prepare_sqlite(name: str, url: URL, init_sql: Path | None) -> None:
    """Create a missing SQLite file from its init script, so an example runs with no extra step."""
    database = url.database
    if not database or database == ":memory:" or init_sql is None:
        return
    path = Path(database)
    if path.exists():
        return
    tmp = path.with_name(path.name + ".init")
    try:
        script = init_sql.read_text(encoding="utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        # Build under a temporary name and rename: a half-initialised file left by
        # a crash must never be mistaken for a complete database on the next start.
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(script)
            conn.commit()
        finally:
            conn.close()
        tmp.replace(path)
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        raise DatabaseSetupError(
            f"database {name}: cannot create {path} from {init_sql}: {exc}"
        ) from exc
    log.info("database %s: created %s from %s", name, path, init_sql)
