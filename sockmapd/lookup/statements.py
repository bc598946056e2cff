"""Build each map's SELECT once, from validated config, with SQLAlchemy Core."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, bindparam, column, select, table
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnClause, quoted_name

from sockmapd.config import MapConfig
from sockmapd.config.expansions import BIND_PREFIX, Expansion, Parameter

# The same bind name a query template uses for %s, so both forms share one path.
KEY_PARAM = BIND_PREFIX + "s"
# The one parameter of a table/key map, and of a query that only compares '%s'.
KEY_PARAMETER = Parameter(KEY_PARAM, (Expansion("s"),))


def _ident(name: str) -> quoted_name:
    # Names were validated as plain identifiers at load; quoting them always keeps
    # reserved words (e.g. a column called "key") and mixed case working.
    return quoted_name(name, quote=True)


def build_statement(config: MapConfig) -> Select[*tuple[Any, ...]]:
    """Return the map's SELECT; the lookup key is only ever the bound parameter ``x_s``."""
    if config.key is None or config.table_name is None:
        raise ValueError("a table/key map is needed to build its SELECT")
    key_col: ColumnClause[object] = column(_ident(config.key))
    answer_col = column(_ident(config.value)) if config.value else key_col
    columns = [answer_col]
    if config.reason:
        columns.append(column(_ident(config.reason)))
    schema = _ident(config.schema_name) if config.schema_name else None
    source = table(_ident(config.table_name), schema=schema)
    return (
        select(*columns).select_from(source).where(key_col == bindparam(KEY_PARAM, type_=String()))
    )
