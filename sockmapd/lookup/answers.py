"""Turn result rows into reply data, as the Go daemon and Postfix's SQL tables do."""

from __future__ import annotations

from collections.abc import Sequence

from sockmapd.lookup.keys import KeyParts, ResultFormatter
from sockmapd.protocol import NOTFOUND_REPLY, Reply


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def format_rows(
    rows: Sequence[Sequence[object]],
    *,
    reason_column: bool = False,
    formatter: ResultFormatter | None = None,
    parts: KeyParts | None = None,
    expansion_limit: int = 0,
    first_column_only: bool = False,
) -> Reply:
    """Return ``OK v1,v2,...`` from every row and column, or NOTFOUND when nothing is left.

    NULL and empty values are skipped and the rest joined with commas, as Postfix's
    SQL tables do. With reason_column, each row is a value and a reason, answered as
    ``value reason`` (the Go daemon's form; an empty reason adds nothing). With
    first_column_only, other columns are ignored (Postfix's sqlite tables). More values
    than a non-zero expansion_limit is TEMP, as Postfix treats it. (MapQuery answers
    the common no row, or one row of one text value, itself, without this walk.)
    """
    values: list[str] = []
    for row in rows:
        if reason_column:
            value = _text(row[0])
            if value:
                reason = _text(row[1])
                values.append(f"{value} {reason}" if reason else value)
        else:
            for cell in row[:1] if first_column_only else row:
                value = _text(cell)
                if not value:
                    continue
                if formatter is not None:
                    assert parts is not None
                    formatted = formatter.format(value, parts)
                    if not formatted:
                        continue
                    value = formatted
                values.append(value)
        if expansion_limit and len(values) > expansion_limit:
            return Reply.temp(f"lookup returned more than expansion_limit={expansion_limit} values")
    if not values:
        return NOTFOUND_REPLY
    return Reply.ok(",".join(values))
