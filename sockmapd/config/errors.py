"""Configuration problems and their conversion from pydantic validation errors."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import ErrorDetails

Location = tuple[str | int, ...]

_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
# pydantic marks a failing dict key by appending this to the location.
_DICT_KEY_MARKER = "[key]"


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


def problems_from_validation_error(exc: ValidationError) -> list[Problem]:
    """Return one Problem per error in exc, with paths relative to the validated document."""
    return [Problem(format_path(e["loc"]), error_message(e)) for e in exc.errors()]
