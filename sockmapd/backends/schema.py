"""Check, against the live databases, that every map's table and columns exist."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError

from sockmapd.backends.engines import DatabaseError, Engines
from sockmapd.config import Config, MapConfig, Problem


def _columns(conn: Connection, config: MapConfig) -> set[str]:
    inspector = inspect(conn)
    return {
        str(c["name"]).lower()
        for c in inspector.get_columns(config.table_name, schema=config.schema_name)
    }


async def check_databases(config: Config, engines: Engines) -> list[Problem]:
    """Return one problem per unreachable database, missing table and missing column."""
    problems: list[Problem] = []
    for db_name, engine in engines.items():
        maps = {n: m for n, m in config.maps.items() if m.database == db_name}
        try:
            async with engine.connect() as conn:
                for map_name, map_config in maps.items():
                    try:
                        found = await conn.run_sync(_columns, map_config)
                    except NoSuchTableError:
                        found = set()
                    if not found:
                        problems.append(
                            Problem(
                                f"maps.{map_name}.table",
                                f"table {map_config.table!r} does not exist "
                                f"in database {db_name!r}",
                            )
                        )
                        continue
                    for field in ("key", "value", "reason"):
                        column = getattr(map_config, field)
                        if column is not None and column.lower() not in found:
                            problems.append(
                                Problem(
                                    f"maps.{map_name}.{field}",
                                    f"column {column!r} does not exist in table "
                                    f"{map_config.table!r} of database {db_name!r}",
                                )
                            )
        except DatabaseError as exc:
            message = " ".join(str(getattr(exc, "orig", None) or exc).split())
            problems.append(Problem(f"databases.{db_name}", f"cannot connect: {message}"))
    return problems
