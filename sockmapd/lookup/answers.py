"""Turn result rows into the reply data the legacy daemon and Postfix's SQL tables give."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sockmapd.protocol import NOTFOUND_REPLY, Reply


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def format_rows(rows: Iterable[Sequence[object]]) -> Reply:
    """Return ``OK v1,v2`` (each ``value reason`` when a reason column is selected) or NOTFOUND.

    As in Postfix's SQL tables, NULL and empty values are skipped and several rows
    are joined with commas; a result with nothing left is not found. A reason is
    appended after one space, and only when it is not NULL or empty.
    """
    parts: list[str] = []
    for row in rows:
        value = _text(row[0])
        if not value:
            continue
        if len(row) > 1:
            reason = _text(row[1])
            if reason:
                value = f"{value} {reason}"
        parts.append(value)
    if not parts:
        return NOTFOUND_REPLY
    return Reply.ok(",".join(parts))
