"""Databases: engines for dialects and schema checks, lookup pools on the raw drivers."""

from sockmapd.backends.engines import (
    DatabaseSetupError,
    EngineError,
    Engines,
    create_engines,
)
from sockmapd.backends.errors import DatabaseError

__all__ = ["DatabaseError", "DatabaseSetupError", "EngineError", "Engines", "create_engines"]
