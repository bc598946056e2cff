"""Check, against the live databases, that every map's table, columns or query work."""

from __future__ import annotations

import asyncio

from sqlalchemy import String, bindparam, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.ext.asyncio import AsyncConnection

from sockmapd.backends.databases import Databases, EngineError
from sockmapd.config import Config, DatabaseConfig, MapConfig, Problem
from sockmapd.config.expansions import compile_query

# A key that fills every expansion a query can use (%s %u %d %1..%9), matching nothing real.
_LOCAL, _DOMAIN = "sockmapd-check", "a.b.c.d.e.f.g.h.i.invalid"
PROBE_VALUES = {
    "s": f"{_LOCAL}@{_DOMAIN}",
    "u": _LOCAL,
    "d": _DOMAIN,
    **{str(i): label for i, label in enumerate(reversed(_DOMAIN.split(".")), start=1)},
}


def _columns(conn: Connection, config: MapConfig) -> set[str]:
    inspector = inspect(conn)
    return {
        str(c["name"]).lower()
        for c in inspector.get_columns(config.table_name, schema=config.schema_name)
    }


async def _check_table(
    conn: AsyncConnection, db_name: str, map_name: str, config: MapConfig
) -> list[Problem]:
    try:
        found = await conn.run_sync(_columns, config)
    except NoSuchTableError:
        found = set()
    if not found:
        return [
            Problem(
                f"maps.{map_name}.table",
                f"table {config.table!r} does not exist in database {db_name!r}",
            )
        ]
    problems = []
    for field in ("key", "value", "reason"):
        column = getattr(config, field)
        if column is not None and column.lower() not in found:
            problems.append(
                Problem(
                    f"maps.{map_name}.{field}",
                    f"column {column!r} does not exist in table "
                    f"{config.table!r} of database {db_name!r}",
                )
            )
    return problems


async def _check_query(
    conn: AsyncConnection, db: DatabaseConfig, db_name: str, map_name: str, config: MapConfig
) -> list[Problem]:
    assert config.query is not None
    bound = compile_query(config.query, db.dialect)
    statement = text(bound.sql).bindparams(
        *(bindparam(parameter.name, type_=String()) for parameter in bound.parameters)
    )
    params = {
        parameter.name: parameter.fill(PROBE_VALUES.__getitem__) or ""
        for parameter in bound.parameters
    }
    try:
        # The session is read-only, like every lookup's: running it writes nothing.
        # Behind PgBouncer (pgbouncer = true) no session setting survives, and the
        # role's privileges guard the data here as they do for the lookups.
        await conn.execute(statement, params)
    except EngineError as exc:
        message = " ".join(str(getattr(exc, "orig", None) or exc).split())
        return [Problem(f"maps.{map_name}.query", f"fails on database {db_name!r}: {message}")]
    return []


async def _check_literal_reading(
    conn: AsyncConnection, db: DatabaseConfig, db_name: str, maps: dict[str, MapConfig]
) -> list[Problem]:
    """Return a problem when the server reads a map's string literals other than sockmapd did.

    Queries are read at load with each server's default syntax; a server set to
    read literals otherwise would end a literal elsewhere.
    """
    queries = {name: m.query for name, m in maps.items() if m.query is not None}
    backslash = sorted(name for name, query in queries.items() if "\\" in query)
    quoted = sorted(name for name, query in queries.items() if '"' in query)
    found: list[str] = []
    if db.dialect == "mysql" and (backslash or quoted):
        mode = str((await conn.execute(text("SELECT @@SESSION.sql_mode"))).scalar() or "")
        modes = set(mode.upper().split(","))
        if backslash and "NO_BACKSLASH_ESCAPES" in modes:
            found.append(
                f"sql_mode has NO_BACKSLASH_ESCAPES, but the queries of {', '.join(backslash)} "
                "were read with backslash escapes (the server's default)"
            )
        if quoted and "ANSI_QUOTES" in modes:
            found.append(
                f"sql_mode has ANSI_QUOTES, but the queries of {', '.join(quoted)} were read "
                'with "..." as strings (the server\'s default)'
            )
    elif db.dialect == "postgresql" and backslash:
        setting = (await conn.execute(text("SHOW standard_conforming_strings"))).scalar()
        if setting != "on":
            found.append(
                "standard_conforming_strings is off, but the queries of "
                f"{', '.join(backslash)} were read with it on (the default since 9.1)"
            )
    return [Problem(f"databases.{db_name}", message) for message in found]


async def check_databases(config: Config, databases: Databases) -> list[Problem]:
    """Return one problem per unreachable database, missing table or column, and failing query."""
    problems: list[Problem] = []
    for db_name, database in databases.items():
        maps = {n: m for n, m in config.maps.items() if m.database == db_name}
        db = config.databases[db_name]
        # A server that accepts the connection and then says nothing must not
        # hang the check: each statement gets query_timeout, the login connect_timeout.
        limit = db.connect_timeout + db.query_timeout * (2 + 2 * len(maps))
        try:
            async with asyncio.timeout(limit), database.engine.connect() as conn:
                problems.extend(await _check_literal_reading(conn, db, db_name, maps))
                for map_name, map_config in maps.items():
                    if map_config.is_query:
                        found = await _check_query(conn, db, db_name, map_name, map_config)
                    else:
                        found = await _check_table(conn, db_name, map_name, map_config)
                    problems.extend(found)
        except TimeoutError:
            problems.append(
                Problem(
                    f"databases.{db_name}",
                    f"no answer within {limit:g}s (connect_timeout and query_timeout)",
                )
            )
        except EngineError as exc:
            message = " ".join(str(getattr(exc, "orig", None) or exc).split())
            problems.append(Problem(f"databases.{db_name}", f"cannot connect: {message}"))
    return problems
