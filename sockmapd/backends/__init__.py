"""Database engines: one SQLAlchemy async engine per configured database."""

from sockmapd.backends.engines import (
    DatabaseError,
    DatabaseSetupError,
    Engines,
    create_engines,
)

__all__ = ["DatabaseError", "DatabaseSetupError", "Engines", "create_engines"]
