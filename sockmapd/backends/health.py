"""Database health: a trivial query on every database, shared by concurrent callers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from sockmapd.backends.connectors import DatabaseUnavailable
from sockmapd.backends.engines import DatabaseError, Engines
from sockmapd.config import DatabaseConfig

log = logging.getLogger(__name__)

SELECT_ONE = text("SELECT 1")
OK = "ok"
# Reasons go to whoever can reach the health listener: short, one line, no secrets
# (driver messages name hosts and users, never passwords).
MAX_REASON = 200

# The engines and settings of the databases served now.
DatabaseSource = Callable[[], "tuple[Engines, Mapping[str, DatabaseConfig]]"]


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What each database answered: "ok" or why not."""

    databases: dict[str, str]

    @property
    def healthy(self) -> bool:
        """Return True when every database answered."""
        return all(state == OK for state in self.databases.values())


class HealthCheck:
    """Probes every database with SELECT 1, each within connect_timeout + query_timeout.

    Callers that arrive while a probe runs wait for that probe instead of starting
    another, so a burst of health requests opens at most one connection per
    database. The probe runs in a task of its own: a caller that goes away does not
    cancel it for the others.
    """

    def __init__(self, source: DatabaseSource) -> None:
        self._source = source
        self._flight: asyncio.Task[HealthReport] | None = None
        # Last state logged per database: a load balancer may ask every second,
        # and the log should show changes, not every probe.
        self._logged: dict[str, str] = {}

    async def check(self) -> HealthReport:
        """Return the state of every database; never raises for a database failure."""
        flight = self._flight
        if flight is None:
            flight = self._flight = asyncio.create_task(self._probe_all())
            flight.add_done_callback(self._landed)
        return await asyncio.shield(flight)

    def _landed(self, flight: asyncio.Task[HealthReport]) -> None:
        if self._flight is flight:
            self._flight = None

    async def _probe_all(self) -> HealthReport:
        engines, databases = self._source()
        names = [name for name, _engine in engines.items()]
        states = await asyncio.gather(*(probe(engines[name], databases[name]) for name in names))
        report = HealthReport(dict(zip(names, states, strict=True)))
        self._log_changes(report)
        return report

    def _log_changes(self, report: HealthReport) -> None:
        for name, state in report.databases.items():
            before = self._logged.get(name, OK)
            if state == before:
                continue
            if state == OK:
                log.info("health: database %s answers again", name)
            else:
                log.warning("health: database %s is down: %s", name, state)
            self._logged[name] = state


async def probe(engine: AsyncEngine, db: DatabaseConfig) -> str:
    """Return "ok" if the database answers SELECT 1 within its timeouts, else why not."""
    limit = db.connect_timeout + db.query_timeout
    try:
        async with asyncio.timeout(limit):
            await _select_one(engine)
    except TimeoutError:
        reason = f"no answer within {limit:g}s"
    except DatabaseUnavailable as exc:
        reason = f"cannot connect: {_one_line(exc)}"
    except DatabaseError as exc:
        reason = f"query failed: {type(exc).__name__}: {_one_line(exc)}"
    else:
        return OK
    return reason[:MAX_REASON]


async def _select_one(engine: AsyncEngine) -> None:
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                try:
                    await conn.execute(SELECT_ONE)
                except asyncio.CancelledError:
                    # Timed out in the middle of a query: the connection cannot go
                    # back to the pool. Invalidating closes it without a round trip.
                    await conn.invalidate()
                    raise
            return
        except DatabaseError as exc:
            # A pooled connection that died since its last use says nothing about
            # the database: one more try, as a lookup would, on a fresh connection.
            if attempt == 2 or not _lost_connection(exc):
                raise


def _lost_connection(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnavailable | TimeoutError):
        return False
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, OSError | EOFError)


def _one_line(exc: BaseException) -> str:
    # SQLAlchemy appends the statement and a help link on new lines: the first
    # line holds the reason.
    first = str(exc).strip().split("\n", 1)[0]
    return " ".join(first.split()) or type(exc).__name__
