"""What a map reports about its database's queries; sockmapd.metrics implements it.

Defined here, on the lookup side, so that the lookup layer does not import the
metrics module: metrics reads the lookup layer, never the other way round.
"""

from __future__ import annotations

from typing import Protocol

from sockmapd.backends.errors import DatabaseError


class DatabaseRecorder(Protocol):
    """Records the lookup queries of one database: how long each took and how it ended."""

    def answered(self, seconds: float) -> None:
        """Record one query that returned rows (or none) after seconds."""

    def failed(self, error: DatabaseError, seconds: float) -> None:
        """Record one query that failed after seconds; error.kind says which kind."""
