"""What a database failure means, decided once at the driver boundary.

Each driver translates its own exceptions into this tree; the pool, the lookup,
the health check and the metrics switch on the type and never look at a
driver's exception or message text. ``kind`` is the metrics label
(sockmapd_database_errors_total{kind}). None of these is an OSError or a
TimeoutError, so a generic ``except OSError`` or ``except TimeoutError``
elsewhere can never mistake one for another.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """A lookup could not get an answer from its database: the reply is TEMP or TIMEOUT.

    hint, when set, names the configuration change that would prevent the error (for
    example the option a database behind PgBouncer needs); the pool logs it once.
    """

    kind = "query_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class QueryTimeout(DatabaseError):
    """The query ran past query_timeout; it was cancelled and only its connection replaced."""

    kind = "timeout"


class ConnectionLost(DatabaseError):
    """The connection is unusable (server restart, cut network, terminated session).

    The connection is closed and the lookup is tried once more on another one.
    """

    kind = "lost_connection"


class DatabaseUnavailable(DatabaseError):
    """No host of the database accepted a new connection."""

    kind = "unavailable"


class PoolClosed(DatabaseError):
    """The pool was closed: the config it belonged to was replaced or the daemon stops."""

    kind = "unavailable"


class PoolExhausted(DatabaseError):
    """No pooled connection became free within the pool's wait limit."""

    kind = "pool_timeout"


class QueryFailed(DatabaseError):
    """The server refused the query (syntax, rights, a missing table).

    reusable says whether the connection is as good as before: true for an error
    the server reported, false for one nothing explains (the connection is closed).
    """

    kind = "query_error"

    def __init__(self, message: str, *, reusable: bool = True, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reusable = reusable
