"""Databases: one SQLAlchemy engine and one lookup pool per configured database."""

from sockmapd.backends.databases import (
    Database,
    Databases,
    DatabaseSetupError,
    EngineError,
    create_databases,
)
from sockmapd.backends.errors import DatabaseError

__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseSetupError",
    "Databases",
    "EngineError",
    "create_databases",
]
