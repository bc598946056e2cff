"""Test cases with where they were written: from a config's [[tests]] or a test file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sockmapd.config import Config, ConfigError, MapTest, Problem, parse_tests
from sockmapd.config.files import UnreadableFile, read_bounded_text
from sockmapd.config.loader import MAX_CONFIG_BYTES
from sockmapd.config.map_tests import header_lines


@dataclass(frozen=True, slots=True)
class Case:
    """One test and its place: the file, and its line when the file shows it."""

    test: MapTest
    source: str
    index: int
    line: int | None

    @property
    def where(self) -> str:
        """Return "FILE:LINE", or "FILE tests[INDEX]" when the line is unknown."""
        if self.line is None:
            return f"{self.source} tests[{self.index}]"
        return f"{self.source}:{self.line}"


def _cases(tests: list[MapTest], source: str, text: str | None) -> list[Case]:
    lines = header_lines(text, len(tests)) if text is not None else [None] * len(tests)
    return [Case(test, source, index, lines[index]) for index, test in enumerate(tests)]


def _read(path: Path) -> str:
    try:
        return read_bounded_text(path, MAX_CONFIG_BYTES, "the file", regular=False)
    except UnreadableFile as exc:
        raise ConfigError(str(path), [Problem("", str(exc))]) from None


def config_cases(path: Path, config: Config) -> list[Case]:
    """Return the [[tests]] of the config loaded from path."""
    if not config.tests:
        return []
    try:
        # Only for the line numbers: the config itself is already loaded.
        text: str | None = _read(path)
    except ConfigError:
        text = None
    return _cases(list(config.tests), str(path), text)


def file_cases(path: Path, map_names: Iterable[str] | None) -> list[Case]:
    """Return the tests of a test file; raise ConfigError if it cannot be read or is invalid.

    map_names, when given, are the maps a test may name.
    """
    text = _read(path)
    tests = parse_tests(text, str(path), map_names=map_names)
    return _cases(tests, str(path), text)
