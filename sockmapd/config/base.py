"""What every configuration model shares: strictness, relative paths, durations, lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo


class Model(BaseModel):
    """A configuration section: unknown keys are errors and a validated section is frozen.

    pydantic copies a mutable default for each instance; ruff's RUF012 recognises a
    pydantic model only within one file, hence its noqa on subclasses elsewhere.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context
    if isinstance(context, dict):
        base_dir = context.get("base_dir")
        if isinstance(base_dir, Path):
            return base_dir
    return None


def resolve_path(path: Path, info: ValidationInfo) -> Path:
    """Return path, when relative, under the directory of the file being validated."""
    base_dir = _base_dir(info)
    if base_dir is None or path.is_absolute():
        return path
    return base_dir / path


def reject_empty_path(value: object) -> object:
    """Return value unchanged; raise ValueError for an empty path or one with a NUL byte."""
    # Path("") silently means the current directory.
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    if isinstance(value, str) and "\0" in value:
        raise ValueError("must not contain a NUL byte")
    return value


Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
GraceSeconds = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]

_ListT = TypeVar("_ListT", bound=Sequence[str])


def reject_duplicates(values: _ListT, what: str = "entry") -> _ListT:
    """Return values unchanged; raise ValueError naming the first repeated one."""
    seen: set[str] = set()
    for item in values:
        if item in seen:
            raise ValueError(f"duplicate {what} {item!r}")
        seen.add(item)
    return values


def must_be_defined(kind: str, value: str, defined: frozenset[str] | None) -> str:
    """Return value if it names one of defined (None: not known here), else raise ValueError."""
    if defined is None or value in defined:
        return value
    if defined:
        listed = ", ".join(repr(name) for name in sorted(defined))
        raise ValueError(f"{kind} {value!r} is not defined; defined {kind}s: {listed}")
    raise ValueError(f"{kind} {value!r} is not defined; no {kind}s are defined")
