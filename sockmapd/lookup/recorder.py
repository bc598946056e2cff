"""What a map reports about its database's failures; sockmapd.metrics implements it.

Defined here, on the lookup side, so that the lookup layer does not import the
metrics module: metrics reads the lookup layer, never the other way round.
"""

from __future__ import annotations

from typing import Protocol

from sockmapd.backends.errors import DatabaseError


class ErrorRecorder(Protocol):
    """Counts the failed lookups of one database."""

    def failed(self, error: DatabaseError) -> None:
        """Count one failure; error.kind says which kind."""


class _NoRecorder:
    __slots__ = ()

    def failed(self, error: DatabaseError) -> None:
        """Count nothing."""


NO_RECORDER: ErrorRecorder = _NoRecorder()
