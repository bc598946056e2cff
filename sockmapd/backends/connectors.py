"""Open driver connections host by host, each host with its own timeout.

The drivers' own multi-host support does not fit a mail server: asyncpg spends
one timeout on all hosts together, so a host that accepts TCP and then stays
silent starves the others, and asyncmy knows only one host. These connectors
walk the host list themselves and give every host the full connect_timeout.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from sockmapd.backends.errors import DatabaseError, DatabaseUnavailable
from sockmapd.backends.hosts import HostList
from sockmapd.backends.tls import client_tls_context
from sockmapd.config import DatabaseConfig, Endpoint

log = logging.getLogger(__name__)

# libpq's read-write and read-only judge the server's default_transaction_read_only,
# which a session's own startup setting would hide: those modes set it once the host
# is accepted instead.
_SERVER_READ_ONLY_MODES = frozenset({"read-write", "read-only"})
_READ_ONLY_SESSION = "SET SESSION default_transaction_read_only = on"
# asyncpg's default: the statements of the maps stay prepared on each connection.
_ASYNCPG_STATEMENT_CACHE = 100


class RoleMismatch(Exception):
    """The server answered but does not have the role target_session_attrs asks for."""


class DriverConnect(Protocol):
    """Open one raw driver connection to one endpoint."""

    async def __call__(self, endpoint: Endpoint) -> Any: ...


class Connector:
    """Opens raw connections of one database, for its engine and for its lookup pool.

    explain is the driver's translate(): a host's failure that it gives a hint for
    (such as PgBouncer refusing a startup setting) passes the hint on with the
    DatabaseUnavailable raised when no host was usable.
    """

    def __init__(
        self,
        name: str,
        db: DatabaseConfig,
        explain: Callable[[BaseException], DatabaseError] | None = None,
    ) -> None:
        self.name = name
        self._db = db
        self._explain = explain
        self._hosts: HostList[Endpoint] = HostList(
            db.endpoints(), order=db.host_order, retry_interval=db.retry_interval
        )
        self._tls = client_tls_context(db)
        self._connect_one: DriverConnect = (
            self._connect_mysql if db.dialect == "mysql" else self._connect_postgresql
        )
        # Behind PgBouncer (transaction or statement pooling) a session setting would
        # stay on one server connection and not follow the lookups: none is made, and
        # the role's privileges (and its own settings) guard the data.
        self._read_only_session = not db.pgbouncer
        self._read_only_at_startup = (
            self._read_only_session and db.target_session_attrs not in _SERVER_READ_ONLY_MODES
        )
        # Which host each open connection went to, for beside().
        self._origins: weakref.WeakKeyDictionary[Any, Endpoint] = weakref.WeakKeyDictionary()

    @property
    def hosts(self) -> HostList[Endpoint]:
        """Return the host list and its failure state."""
        return self._hosts

    async def __call__(self) -> Any:
        """Return a connection to the first usable host; raise DatabaseUnavailable if none."""
        errors: list[str] = []
        hint: str | None = None
        fallback: tuple[Endpoint, Any] | None = None
        for endpoint in self._hosts.candidates():
            try:
                conn = await asyncio.wait_for(
                    self._connect_one(endpoint), timeout=self._db.connect_timeout
                )
            except RoleMismatch as exc:
                errors.append(f"{endpoint}: {exc}")
                continue
            except Exception as exc:
                reason = _describe(exc, self._db.connect_timeout)
                errors.append(f"{endpoint}: {reason}")
                if hint is None and self._explain is not None:
                    hint = self._explain(exc).hint
                if not self._hosts.is_skipped(endpoint):
                    log.warning(
                        "database %s: host %s failed (%s); skipping it for %gs",
                        self.name,
                        endpoint,
                        reason,
                        self._db.retry_interval,
                    )
                self._hosts.failed(endpoint)
                continue
            self._hosts.succeeded(endpoint)
            if self._db.dialect == "postgresql" and self._db.target_session_attrs:
                try:
                    ok, acceptable = await asyncio.wait_for(
                        self._pg_accept(conn), timeout=self._db.connect_timeout
                    )
                except Exception as exc:
                    errors.append(f"{endpoint}: {_describe(exc, self._db.connect_timeout)}")
                    await _close_quietly(conn)
                    continue
                if not ok:
                    if acceptable and fallback is None:
                        fallback = (endpoint, conn)
                    else:
                        await _close_quietly(conn)
                    errors.append(f"{endpoint}: not {self._db.target_session_attrs}")
                    continue
            if fallback is not None:
                await _close_quietly(fallback[1])
            self._origins[conn] = endpoint
            return conn
        if fallback is not None:
            self._origins[fallback[1]] = fallback[0]
            return fallback[1]
        raise DatabaseUnavailable(
            f"database {self.name}: no usable host ({'; '.join(errors) or 'no hosts'})",
            hint=hint,
        )

    async def beside(self, conn: Any) -> Any:
        """Return a new connection to the server conn is connected to (to stop its query)."""
        endpoint = self._origins.get(conn)
        if endpoint is None:
            raise DatabaseUnavailable(f"database {self.name}: the connection's host is unknown")
        return await asyncio.wait_for(self._connect_one(endpoint), timeout=self._db.connect_timeout)

    async def _connect_mysql(self, endpoint: Endpoint) -> Any:
        import asyncmy

        db = self._db
        return await asyncmy.connect(
            host=endpoint.host,
            port=endpoint.port or 3306,
            unix_socket=endpoint.unix_socket,
            user=db.user_name(),
            password=db.secret() or "",
            db=db.database_name(),
            charset="utf8mb4",
            # asyncmy's connect_timeout does not cover a server that accepts TCP and
            # never sends its greeting: the caller's wait_for does. No read_timeout:
            # asyncmy would wrap every read in a wait_for (a task per read, a third of
            # a lookup's CPU); each lookup is bounded by query_timeout instead.
            connect_timeout=db.connect_timeout,
            ssl=self._tls,
            autocommit=True,
            # Lookups only read: a mistaken query can never write.
            init_command="SET SESSION TRANSACTION READ ONLY",
        )

    async def _connect_postgresql(self, endpoint: Endpoint) -> Any:
        import asyncpg

        db = self._db
        return await asyncpg.connect(
            host=endpoint.unix_socket or endpoint.host,
            port=endpoint.port or 5432,
            user=db.user_name(),
            password=db.secret(),
            database=db.database_name(),
            timeout=db.connect_timeout,
            ssl=self._tls if self._tls is not None else False,
            server_settings=self._pg_startup_settings,
            # Behind PgBouncer a named prepared statement would stay on the server
            # connection it was made on: without the cache asyncpg uses unnamed ones.
            statement_cache_size=0 if db.pgbouncer else _ASYNCPG_STATEMENT_CACHE,
        )

    @property
    def _pg_startup_settings(self) -> dict[str, str]:
        settings = {"application_name": "sockmapd"}
        if self._read_only_at_startup:
            # Lookups only read: a mistaken query can never write. Without the
            # setting here, _pg_accept applies it before the connection is used.
            settings["default_transaction_read_only"] = "on"
        return settings

    async def _pg_accept(self, conn: Any) -> tuple[bool, bool]:
        """Return _pg_role's verdict; a matching session is read-only when this returns."""
        ok, acceptable = await self._pg_role(conn)
        if ok and self._read_only_session and not self._read_only_at_startup:
            await conn.execute(_READ_ONLY_SESSION)
        return ok, acceptable

    async def _pg_role(self, conn: Any) -> tuple[bool, bool]:
        """Return (matches target_session_attrs, acceptable as prefer-standby fallback)."""
        wanted = self._db.target_session_attrs
        if wanted in (None, "any"):
            return True, True
        in_recovery = bool(await conn.fetchval("SELECT pg_catalog.pg_is_in_recovery()"))
        if wanted in ("primary", "standby", "prefer-standby"):
            if wanted == "primary":
                return not in_recovery, False
            return in_recovery, wanted == "prefer-standby"
        read_only = in_recovery or (
            await conn.fetchval("SHOW default_transaction_read_only") == "on"
        )
        return (read_only if wanted == "read-only" else not read_only), False


async def _close_quietly(conn: Any) -> None:
    try:
        close = conn.close()
        if asyncio.iscoroutine(close):
            await asyncio.wait_for(close, timeout=1.0)
    except Exception as exc:
        log.debug("closing a spare connection failed: %s", exc)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within connect_timeout={timeout:g}s"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
