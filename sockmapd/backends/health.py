"""Database health: a trivial query through every lookup pool, shared by concurrent callers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sockmapd.backends.databases import Database, Databases
from sockmapd.backends.errors import (
    ConnectionLost,
    DatabaseError,
    DatabaseUnavailable,
    QueryTimeout,
)
from sockmapd.backends.pool import DriverPool

log = logging.getLogger(__name__)

SELECT_ONE = "SELECT 1"
OK = "ok"
# Reasons go to whoever can reach the health listener: short, one line, no secrets
# (driver messages name hosts and users, never passwords).
MAX_REASON = 200

# The databases served now.
DatabaseSource = Callable[[], Databases]


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What each database answered: "ok" or why not."""

    databases: dict[str, str]
    # Whether each database that was asked answered, even with an error (it is up);
    # a database whose pool was too busy to be probed was not asked and is not here.
    answered: dict[str, bool] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """Return True when every database answered."""
        return all(state == OK for state in self.databases.values())


class HealthCheck:
    """Probes every lookup pool with SELECT 1, each within connect_timeout + query_timeout.

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
        databases = self._source()
        names = list(databases)
        results = await asyncio.gather(*(probe(databases[name]) for name in names))
        report = HealthReport(
            {name: state for name, (state, _) in zip(names, results, strict=True)},
            {
                name: answered
                for name, (_, answered) in zip(names, results, strict=True)
                if answered is not None
            },
        )
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


async def probe(database: Database) -> tuple[str, bool | None]:
    """Return "ok" if the database answers SELECT 1 on a lookup connection, else why not.

    With it, whether the database answered at all (a query error is an answer),
    or None if it was not asked: a pool whose every connection is busy, or that
    has lookups waiting, is not healthy whatever the database would answer, and
    the probe says so without queueing behind the lookups.
    """
    pool = database.pool
    if pool.exhausted or pool.waiting:
        return (
            f"pool exhausted: {pool.in_use} of {pool.limit} connections in use, "
            f"{pool.waiting} lookups waiting"
        ), None
    db = database.config
    limit = db.connect_timeout + db.query_timeout
    answered: bool | None = False
    try:
        async with asyncio.timeout(limit):
            await _select_one(pool, db.query_timeout)
    except (TimeoutError, QueryTimeout):
        reason = f"no answer within {limit:g}s"
    except DatabaseUnavailable as exc:
        reason = f"cannot connect: {_one_line(exc)}"
    except DatabaseError as exc:
        reason, answered = f"{exc.kind}: {_one_line(exc)}", exc.answered
    else:
        return OK, True
    return reason[:MAX_REASON], answered


async def _select_one(pool: DriverPool, query_timeout: float) -> None:
    # As a lookup's: one deadline for the wait, the query and the retry.
    deadline = asyncio.get_running_loop().time() + query_timeout
    for attempt in (1, 2):
        try:
            await pool.fetch(SELECT_ONE, (), deadline)
            return
        except ConnectionLost:
            # A pooled connection that died since its last use says nothing about
            # the database: one more try, as a lookup would, on a fresh connection.
            if attempt == 2:
                raise


def _one_line(exc: BaseException) -> str:
    # SQLAlchemy appends the statement and a help link on new lines: the first
    # line holds the reason.
    first = str(exc).strip().split("\n", 1)[0]
    return " ".join(first.split()) or type(exc).__name__
