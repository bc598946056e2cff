"""Configuration problems and their conversion from pydantic validation errors."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

Location = tuple[str | int, ...]

_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
# pydantic marks a failing dict key by appending this to the location.
_DICT_KEY_MARKER = "[key]"
# How alike an unknown key and a known one must be (difflib's ratio) to suggest it:
# "valeu" and "value" are 0.8 alike; "column" and "result_columns" (0.6) are not.
_SUGGESTION_CUTOFF = 0.7


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration, at a dotted path such as ``maps.recipient.table``."""

    path: str
    message: str


class ConfigError(Exception):
    """A configuration could not be read or is invalid; carries every problem found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        super().__init__(source, problems)
        self.source = source
        self.problems = list(problems)

    def __str__(self) -> str:
        return "\n".join(
            f"{self.source}: {p.path}: {p.message}" if p.path else f"{self.source}: {p.message}"
            for p in self.problems
        )


class SecretError(Exception):
    """A password named by password_file or password_env cannot be read (any more)."""


def format_path(loc: Sequence[str | int]) -> str:
    """Return a location as a dotted path: ``("postmaps", 1, "table")`` -> ``postmaps[1].table``."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item == _DICT_KEY_MARKER:
            continue
        elif _PLAIN_KEY_RE.fullmatch(item):
            parts.append(f".{item}" if parts else item)
        else:
            # Keys with dots, spaces or quotes would make a dotted path ambiguous.
            parts.append(f"[{json.dumps(item)}]")
    return "".join(parts)


def _model(kind: Any) -> type[BaseModel] | None:
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _table_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """Return the model of the table at loc below model, or None where loc leads to no table.

    A key into a dict (``maps.NAME``) or an index into a list (``postmaps[1]``) steps to
    the type of its values.
    """
    kind: Any = model
    for item in loc:
        current = _model(kind)
        if current is not None:
            field = current.model_fields.get(item) if isinstance(item, str) else None
            if field is None:
                return None
            kind = field.annotation
        elif get_origin(kind) in (dict, list):
            kind = get_args(kind)[-1]
        else:
            return None
    return _model(kind)


def _suggestion(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """Return ' (did you mean "KEY"?)' naming the known key nearest the one at loc, or ''."""
    table = _table_at(model, loc[:-1])
    key = loc[-1]
    if table is None or not isinstance(key, str):
        return ""
    close = difflib.get_close_matches(key, table.model_fields, n=1, cutoff=_SUGGESTION_CUTOFF)
    return f' (did you mean "{close[0]}"?)' if close else ""


def error_message(error: ErrorDetails) -> str:
    """Return the admin-facing message of one pydantic error."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    ctx = error.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        # Drop pydantic's "Value error, " prefix; our messages are complete sentences.
        return str(ctx["error"])
    return error["msg"]


def problems_from_validation_error(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """Return one Problem per error in exc, raised validating model, with paths relative to it.

    An unknown key names the nearest key known at its place, as a typo is the usual cause.
    """
    return [
        Problem(
            format_path(e["loc"]),
            error_message(e)
            + (_suggestion(model, e["loc"]) if e["type"] == "extra_forbidden" else ""),
        )
        for e in exc.errors()
    ]
