"""Map tests: a map, a key and the reply expected, as ``[[tests]]`` tables.

A test is kept next to the config (in the config itself or in a test file of its own)
and run by ``sockmapd test`` and ``sockmapd --check-config --connect``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from pydantic import Field, ValidationInfo, ValidatorFunctionWrapHandler, field_validator

from sockmapd.config.base import Model, must_be_defined

# Reply words, as the server sends them (sockmapd.protocol.Status).
STATUS_WORDS = ("OK", "NOTFOUND", "TEMP", "TIMEOUT", "PERM")
WILDCARD = "*"

# Names of the maps the tests run against, so that each test can report an
# unknown map at its own path (tests[2].map). None when no config is known.
defined_maps: ContextVar[frozenset[str] | None] = ContextVar("defined_maps", default=None)

# A [[tests]] header on a line of its own: the n-th one starts the n-th test.
_HEADER_RE = re.compile(r"^[ \t]*\[\[[ \t]*tests[ \t]*\]\][ \t]*(?:#.*)?$", re.MULTILINE)


def _check_expect(value: str) -> str:
    word, space, text = value.partition(" ")
    if word not in STATUS_WORDS:
        raise ValueError(
            f"{value!r} must start with one of {', '.join(STATUS_WORDS)}, "
            'as the reply does: "OK value", "NOTFOUND" or a pattern such as "OK REJECT *"'
        )
    if word == "NOTFOUND" and (space or text):
        raise ValueError('"NOTFOUND" carries no text: write expect = "NOTFOUND"')
    if word == "OK" and not text:
        raise ValueError('"OK" needs the value found: "OK value", or "OK *" for any value')
    return value


def expectation_matches(expect: str, reply: str) -> bool:
    """Return True if reply ("OK value", "NOTFOUND", ...) is what expect asks for.

    Without a "*", expect is compared exactly. Each "*" matches any run of
    characters, none included; nothing else is special, so an address such as
    user@[192.0.2.1] needs no escaping.
    """
    if WILDCARD not in expect:
        return reply == expect
    pattern = ".*".join(re.escape(part) for part in expect.split(WILDCARD))
    return re.fullmatch(pattern, reply, re.DOTALL) is not None


class MapTest(Model):
    """One test: looking up key in map must answer expect."""

    map: str = Field(min_length=1, description="Name of the map to look the key up in.")
    key: str = Field(
        min_length=1, description="The key, exactly as the MTA sends it (no transforms applied)."
    )
    expect: str = Field(
        description=(
            'The reply expected: exactly (`"OK example.com/alice/"`, `"NOTFOUND"`, '
            '`"TEMP reason"`), or a pattern where each `*` matches any text (`"OK REJECT *"`). '
            "It starts with the reply's status word: `OK`, `NOTFOUND`, `TEMP`, `TIMEOUT` "
            "or `PERM`."
        )
    )
    note: str | None = Field(default=None, description="Why the test exists; shown with a failure.")

    @field_validator("key")
    @classmethod
    def _key_is_a_request_key(cls, value: str) -> str:
        if "\0" in value:
            raise ValueError("must not contain a NUL byte, which no MTA can send")
        return value

    @field_validator("expect")
    @classmethod
    def _expect_is_a_reply(cls, value: str) -> str:
        return _check_expect(value)

    @field_validator("map")
    @classmethod
    def _map_defined(cls, value: str) -> str:
        return must_be_defined("map", value, defined_maps.get())

    def matches(self, reply: str) -> bool:
        """Return True if reply is what this test expects."""
        return expectation_matches(self.expect, reply)


def validate_tests(
    value: Any, handler: ValidatorFunctionWrapHandler, map_names: Iterable[str] | None
) -> Any:
    """Run handler (the tests' validation) knowing the map names, None when unknown."""
    token = defined_maps.set(None if map_names is None else frozenset(map_names))
    try:
        return handler(value)
    finally:
        defined_maps.reset(token)


class MapTestFile(Model):
    """A test file: ``[[tests]]`` tables and nothing else."""

    tests: list[MapTest] = Field(min_length=1)

    @field_validator("tests", mode="wrap")
    @classmethod
    def _tests_know_the_maps(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        context = info.context if isinstance(info.context, dict) else {}
        return validate_tests(value, handler, context.get("maps"))


def header_lines(text: str, count: int) -> list[int | None]:
    """Return the line of each of count tests in TOML text; None for all when unsure.

    Only ``[[tests]]`` headers on lines of their own are counted; a file that
    gives its tests otherwise (an inline array) has no line numbers.
    """
    lines = [text.count("\n", 0, match.start()) + 1 for match in _HEADER_RE.finditer(text)]
    if len(lines) != count:
        return [None] * count
    return list(lines)
