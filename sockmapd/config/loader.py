"""Reading configuration text: format detection, syntax errors and validation into a Config."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sockmapd.config.errors import ConfigError, Problem, problems_from_validation_error
from sockmapd.config.files import UnreadableFile, read_bounded
from sockmapd.config.legacy import from_legacy
from sockmapd.config.map_tests import MapTest, MapTestFile
from sockmapd.config.models import Config

# A configuration is a few kilobytes; the cap keeps a wrong path such as
# /dev/zero from exhausting memory on start or reload.
MAX_CONFIG_BYTES = 1024 * 1024

# tomllib (before Python 3.14) reports the position only inside its message, and
# at the end of the text without a line: "Unclosed array (at end of document)".
_TOML_POSITION_RE = re.compile(
    r"^(?P<message>.*) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)$",
    re.DOTALL,
)


def parse_config(
    text: str,
    source: str = "<string>",
    *,
    base_dir: Path | None = None,
    fallback_port: int | None = None,
) -> Config:
    """Return the Config in TOML or legacy JSON text (JSON when it starts with '{')."""
    if fallback_port is not None and (
        isinstance(fallback_port, bool) or not 1 <= fallback_port <= 65535
    ):
        raise ConfigError(
            source, [Problem("", f"fallback port {fallback_port} is not in the range 1 to 65535")]
        )
    text = text.removeprefix("\ufeff")
    base = None if base_dir is None else base_dir.absolute()
    if text.lstrip().startswith("{"):
        data = _decode_json(text, source)
        try:
            return from_legacy(data, fallback_port=fallback_port, base_dir=base)
        except ConfigError as exc:
            raise ConfigError(source, exc.problems) from None
    document = _decode_toml(text, source)
    if fallback_port is not None:
        document = _with_fallback_listen(document, fallback_port)
    try:
        return Config.model_validate(document, context={"base_dir": base})
    except ValidationError as exc:
        raise ConfigError(source, problems_from_validation_error(exc, Config)) from None


def load_config(path: Path, *, fallback_port: int | None = None) -> Config:
    """Return the Config in the file at path; raise ConfigError on any problem at all."""
    source = str(path)
    try:
        # Not only regular files: a configuration may come from a pipe such as <(...).
        raw = read_bounded(path, MAX_CONFIG_BYTES, "the file", regular=False)
    except UnreadableFile as exc:
        raise ConfigError(source, [Problem("", str(exc))]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            source, [Problem("", f"line {line} column {column}: the file is not valid UTF-8")]
        ) from None
    return parse_config(text, source, base_dir=path.absolute().parent, fallback_port=fallback_port)


def parse_tests(
    text: str, source: str = "<string>", *, map_names: Iterable[str] | None = None
) -> list[MapTest]:
    """Return the [[tests]] of a test file's TOML text; a test must name one of map_names."""
    document = _decode_toml(text.removeprefix("\ufeff"), source)
    names = None if map_names is None else list(map_names)
    try:
        return MapTestFile.model_validate(document, context={"maps": names}).tests
    except ValidationError as exc:
        raise ConfigError(source, problems_from_validation_error(exc, MapTestFile)) from None


def _decode_json(text: str, source: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problem = Problem("", f"line {exc.lineno} column {exc.colno}: {exc.msg}")
    except RecursionError:
        problem = Problem("", "the JSON document is nested too deeply")
    raise ConfigError(source, [problem])


def _decode_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = Problem("", _toml_message(str(exc), text))
    except RecursionError:
        problem = Problem("", "the TOML document is nested too deeply")
    raise ConfigError(source, [problem])


def _toml_message(message: str, text: str) -> str:
    """Return a tomllib error message as "line L column C: message", the position first."""
    match = _TOML_POSITION_RE.match(message)
    if match is None:
        return message
    if match["line"] is not None:
        return f"line {match['line']} column {match['column']}: {match['message']}"
    # The end of the text, counted as tomllib counts positions.
    line = text.count("\n") + 1
    column = len(text) - text.rfind("\n")
    return f"line {line} column {column} (end of file): {match['message']}"


def _with_fallback_listen(document: dict[str, Any], fallback_port: int) -> dict[str, Any]:
    """Return document with a listener on fallback_port when it names none."""
    server = document.get("server", {})
    if not isinstance(server, dict) or "listen" in server:
        return document
    listen = [f"tcp://127.0.0.1:{fallback_port}"]
    return {**document, "server": {**server, "listen": listen}}
