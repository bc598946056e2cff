"""Build and own the SQLAlchemy async engines, one per configured database."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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

log = logging.getLogger(__name__)

POOL_RECYCLE = 1800

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


class DatabaseSetupError(Exception):
    """A database could not be prepared at load time (e.g. a broken SQLite init script)."""


class Engines:
    """The engines of one loaded config, keyed by database name, with their lookup pools.

    The engine compiles each map's statement for its dialect and serves schema
    checks; lookups run on the pool's raw driver connections, opened by the same
    connector (hosts, failover, TLS, read-only sessions).
    """

    def __init__(
        self,
        engines: Mapping[str, AsyncEngine],
        pools: Mapping[str, DriverPool] | None = None,
    ) -> None:
        self._engines = dict(engines)
        self._pools = dict(pools or {})

    def __getitem__(self, name: str) -> AsyncEngine:
        """Return the engine of database name."""
        return self._engines[name]

    def pool(self, name: str) -> DriverPool | None:
        """Return the lookup pool of database name, or None if it has none."""
        return self._pools.get(name)

    def items(self) -> list[tuple[str, AsyncEngine]]:
        """Return (name, engine) pairs."""
        return list(self._engines.items())

    async def dispose(self) -> None:
        """Close every pooled connection of every engine and lookup pool."""
        for name, pool in self._pools.items():
            try:
                await pool.dispose()
            except Exception:
                log.exception("closing the lookup connections of database %s failed", name)
        for name, engine in self._engines.items():
            try:
                await engine.dispose()
            except Exception:
                log.exception("closing database %s failed", name)


def create_engines(databases: Mapping[str, DatabaseConfig]) -> Engines:
    """Create one engine per database; no connection is opened here."""
    engines: dict[str, AsyncEngine] = {}
    pools: dict[str, DriverPool] = {}
    for name, db in databases.items():
        engine, pool = _create_engine(name, db)
        engines[name] = engine
        pools[name] = pool
    return Engines(engines, pools)


def _create_engine(name: str, db: DatabaseConfig) -> tuple[AsyncEngine, DriverPool]:
    url = db.sqlalchemy_url()
    # Lookups are single read-only statements: AUTOCOMMIT spares the
    # BEGIN/ROLLBACK round trips a transaction per lookup would cost.
    # hide_parameters: the parameters are the key or parts of it, and a database
    # error is logged with its message; log.log_keys = false must hold there too.
    if db.dialect == "sqlite":
        _prepare_sqlite(name, url, db.init_sql)
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT", hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_read_only)
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        sqlite = SqliteDriver(args, kwargs)
        return engine, _lookup_pool(name, db, sqlite, sqlite.connect)
    connector = Connector(name, db)
    driver: Driver = (
        PostgresDriver() if db.dialect == "postgresql" else MysqlDriver(connector.beside)
    )
    return create_async_engine(
        URL.create(url.drivername),
        async_creator=connector,
        isolation_level="AUTOCOMMIT",
        hide_parameters=True,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        # Waiting longer than a query may take for a pooled connection means the
        # database is overloaded: answer TEMP rather than queue without bound.
        pool_timeout=db.query_timeout,
        # Servers drop idle connections (MySQL's wait_timeout, firewalls); renew
        # them before that rather than discover it on a lookup.
        pool_recycle=POOL_RECYCLE,
    ), _lookup_pool(name, db, driver, connector)


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
        wait_timeout=db.query_timeout,
        recycle=POOL_RECYCLE,
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
