"""Databases: one SQLAlchemy engine and one lookup pool per configured database."""

from sockmapd.backends.databases import (
    Database,
    DatabaseError,
    Databases,
    DatabaseSetupError,
    create_databases,
)

__all__ = ["Database", "DatabaseError", "DatabaseSetupError", "Databases", "create_databases"]
