# The Markdown uses en dashes for ranges (1 to 65535, %1 to %9), as the other pages do.
# ruff: noqa: RUF001
"""The configuration reference (docs/configuration.md), generated from the config models.

Every section and option comes from the models, so a new model or field appears here
without any change to this module; only its description has to be added to
DESCRIPTIONS in sockmapd.config.descriptions (or given as ``Field(description=...)``),
and the unit tests fail until it is.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import tomli_w
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from sockmapd.config.descriptions import (
    DESCRIPTIONS,
    INTRO,
    LEGACY_INTRO,
    LEGACY_OUTRO,
    SECTION_LEADS,
    SECTION_NOTES,
    UNSET_MEANS,
)
from sockmapd.config.legacy import LegacyFile
from sockmapd.config.legacy import _legacy_location as legacy_location
from sockmapd.config.models import Config

# Stands for the user-chosen key of a table of tables, such as [maps.NAME].
NAME = "NAME"
# Floats whose name ends so are durations; any other float is a plain number.
_SECONDS_SUFFIXES = ("timeout", "ttl", "interval", "grace")


@dataclass(frozen=True, slots=True)
class Option:
    """One configuration option: where it is, its type, default and meaning, as Markdown."""

    section: str
    name: str
    type: str
    default: str
    meaning: str

    @property
    def key(self) -> str:
        """Return the option as "section.option", without NAME placeholders (maps.table)."""
        parts = [part for part in self.section.split(".") if part != NAME]
        return ".".join([*parts, self.name])


def describe_options(config_model: type[BaseModel] = Config) -> list[Option]:
    """Return every option of every section of config_model, in model order."""
    return list(_walk(config_model, ()))


def render_reference(config_model: type[BaseModel] = Config) -> str:
    """Return docs/configuration.md: every section and option, as Markdown."""
    options = describe_options(config_model)
    sections: dict[str, list[Option]] = {}
    for option in options:
        sections.setdefault(option.section, []).append(option)
    parts = [INTRO]
    for section, members in sections.items():
        lines = [f"## `{table_header(section, config_model)}`", ""]
        lead = SECTION_LEADS.get(section)
        if lead:
            lines += [lead, ""]
        lines += ["| option | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{o.name}` | {o.type} | {o.default} | {_cell(o.meaning)} |" for o in members]
        note = SECTION_NOTES.get(section)
        if note:
            lines += ["", note]
        parts.append("\n".join(lines) + "\n")
    parts.append(_render_legacy())
    return "\n".join(parts)


def table_header(section: str, config_model: type[BaseModel] = Config) -> str:
    """Return a section as its TOML header: "[server]", "[maps.NAME]", "[[tests]]"."""
    field = config_model.model_fields.get(section)
    if field is not None and get_origin(field.annotation) is list:
        return f"[[{section}]]"
    return f"[{section}]"


def legacy_keys() -> list[tuple[str, list[str]]]:
    """Return (legacy JSON key, options) pairs, derived from where legacy errors are reported.

    An option "[maps.NAME]" stands for the NAME of that table itself.
    """
    targets: dict[str, list[str]] = {}
    named: set[str] = set()
    for option in describe_options(Config):
        section = tuple(option.section.split("."))
        paths = [((*section, option.name), f"{option.section}.{option.name}")]
        if section[-1] == NAME and option.section not in named:
            named.add(option.section)
            paths.insert(0, ((*section, "[key]"), f"[{option.section}]"))
        for location, target in paths:
            legacy = _legacy_key(legacy_location(location, {NAME: 0}, {NAME: 0}))
            if legacy is not None:
                targets.setdefault(legacy, []).append(target)
    return list(targets.items())


def _legacy_key(location: tuple[str | int, ...]) -> str | None:
    """Return a legacy location as "postmaps[].table", or None unless it names a leaf field."""
    model: Any = LegacyFile
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            if not parts:
                return None
            parts[-1] += "[]"
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        parts.append(part)
        model = _model_of(field.annotation)
    if model is not None:
        return None
    return ".".join(parts)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """Return the model inside annotation (itself or in a list), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is list:
        return _model_of(get_args(annotation)[0])
    return None


def _render_legacy() -> str:
    rows = [
        f"| `{legacy}` | {', '.join(_legacy_target(target) for target in targets)} |"
        for legacy, targets in legacy_keys()
    ]
    table = "\n".join(["| legacy JSON key | option |", "|---|---|", *rows])
    return f"{LEGACY_INTRO}\n\n{table}\n\n{LEGACY_OUTRO}\n"


def _legacy_target(option: str) -> str:
    return f"the {NAME} of `{option}`" if option.startswith("[") else f"`{option}`"


def _walk(model: type[BaseModel], section: tuple[str, ...]) -> Iterator[Option]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _walk(annotation, (*section, name))
            continue
        if get_origin(annotation) is dict:
            value = get_args(annotation)[1]
            if isinstance(value, type) and issubclass(value, BaseModel):
                yield from _walk(value, (*section, name, NAME))
                continue
        item = _model_of(annotation)
        if item is not None:
            # A list of tables, such as [[tests]]: a section of its own.
            yield from _walk(item, (*section, name))
            continue
        if not section:
            raise TypeError(f"top-level option {name!r} is not in a section")
        yield _option(".".join(section), name, field)


def _option(section: str, name: str, field: FieldInfo) -> Option:
    key = Option(section, name, "", "", "").key
    return Option(
        section,
        name,
        describe_type(field.annotation, field.metadata, name=name),
        _default(field, UNSET_MEANS.get(key)),
        field.description or DESCRIPTIONS.get(key, ""),
    )


def describe_type(annotation: Any, metadata: list[Any] | None = None, *, name: str = "") -> str:
    """Return a human-readable type: "string", "list of strings", "seconds, > 0", ..."""
    constraints = list(metadata or [])
    annotation, constraints = _unwrap(annotation, constraints)
    if _is_optional(annotation):
        inner = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"no description of the type {annotation!r} of option {name!r}")
        return describe_type(inner[0], constraints, name=name)
    if get_origin(annotation) is list:
        item = describe_type(get_args(annotation)[0], name=name)
        prefix = "non-empty list" if _min_length(constraints) else "list"
        if item.startswith("one of "):
            return f"{prefix} of {item.removeprefix('one of ')}"
        return f"{prefix} of {_plural(item)}"
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{choice}`" for choice in get_args(annotation))
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer" + _range(constraints)
    if annotation is float:
        unit = "seconds" if name.endswith(_SECONDS_SUFFIXES) else "number"
        return unit + _range(constraints)
    if annotation is str or annotation is SecretStr:
        return "string"
    if annotation is Path:
        return "path"
    raise TypeError(f"no description of the type {annotation!r} of option {name!r}")


def _unwrap(annotation: Any, constraints: list[Any]) -> tuple[Any, list[Any]]:
    """Return annotation without Annotated, and the constraints it carried added."""
    while get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        for item in extra:
            if isinstance(item, FieldInfo):
                constraints.extend(item.metadata)
            else:
                constraints.append(item)
        annotation = base
    return annotation, constraints


def _is_optional(annotation: Any) -> bool:
    origin = get_origin(annotation)
    return origin in (Union, types.UnionType) and type(None) in get_args(annotation)


def _min_length(constraints: list[Any]) -> bool:
    return any(isinstance(c, annotated_types.MinLen) and c.min_length > 0 for c in constraints)


def _range(constraints: list[Any]) -> str:
    low: object = None
    high: object = None
    low_text = ""
    for item in constraints:
        if isinstance(item, annotated_types.Ge):
            low, low_text = item.ge, "≥"
        elif isinstance(item, annotated_types.Gt):
            low, low_text = item.gt, ">"
        elif isinstance(item, annotated_types.Le):
            high = item.le
    if low is not None and high is not None and low_text == "≥":
        return f", {low}–{high}"
    if low is not None and high is not None:
        return f", {low_text} {low} and ≤ {high}"
    if low is not None:
        return f", {low_text} {low}"
    if high is not None:
        return f", ≤ {high}"
    return ""


def _plural(noun: str) -> str:
    head, sep, rest = noun.partition(",")
    return f"{head}s{sep}{rest}"


def _default(field: FieldInfo, unset_means: str | None) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return f"unset ({unset_means})" if unset_means else "unset"
    return f"`{toml_value(value)}`"


def toml_value(value: object) -> str:
    """Return value as it would be written in TOML: `"info"`, `60`, `["a", "b"]`, `true`."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, list | tuple):
        # On one line: tomli_w writes a non-empty array one item per line.
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return tomli_w.dumps({"x": value}).removeprefix("x = ").rstrip("\n")


def _cell(text: str) -> str:
    # A table cell is one line, and "|" would end it.
    return text.replace("\n", " ").replace("|", "\\|")
