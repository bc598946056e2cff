"""[[tests]] tables: what expect accepts and matches, unknown maps, test files, line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sockmapd.config import ConfigError, MapTest, load_config, parse_config, parse_tests, to_toml
from sockmapd.config.map_tests import expectation_matches, header_lines

CONFIG = """
[databases.mail]
url = "sqlite+aiosqlite:////nonexistent/mail.db"

[maps.recipient]
database = "mail"
table = "mailboxes"
key = "address"
value = "maildir"

[maps.access]
database = "mail"
table = "access"
key = "sender"
value = "action"
"""


def _test(expect: str) -> MapTest:
    return MapTest(map="recipient", key="alice@example.com", expect=expect)


@pytest.mark.parametrize(
    ("expect", "reply", "matches"),
    [
        ("OK example.com/alice/", "OK example.com/alice/", True),
        ("OK example.com/alice/", "OK example.com/alice", False),
        ("OK example.com/alice", "OK example.com/alice/", False),
        ("NOTFOUND", "NOTFOUND", True),
        ("NOTFOUND", "OK x", False),
        ("OK REJECT *", "OK REJECT spam source", True),
        ("OK REJECT *", "OK REJECT", False),
        ("OK REJECT*", "OK REJECT", True),
        ("OK *", "OK x", True),
        ("OK *", "NOTFOUND", False),
        ("OK *alice@example.com*", "OK bob@example.com,alice@example.com", True),
        ("OK *alice@example.com*", "OK bob@example.com", False),
        ("TEMP *", "TEMP database unavailable, try again later", True),
        ("TEMP *", "TIMEOUT lookup did not finish within 30s", False),
        # Nothing but "*" is special: brackets, dots and "?" are themselves.
        ("OK user@[192.0.2.1]", "OK user@[192.0.2.1]", True),
        ("OK user@[192.0.2.1]", "OK user@1", False),
        ("OK a.b?", "OK a.b?", True),
        ("OK a.b?", "OK axbc", False),
        ("OK a*[*]", "OK abc[x]", True),
        ("OK a*[*]", "OK abcx", False),
        # A pattern covers the whole reply: a prefix or suffix alone is no match.
        ("OK REJECT *", "XOK REJECT spam", False),
        ("OK *spam", "OK spam source", False),
    ],
)
def test_expect_matches_exactly_or_with_stars_over_the_whole_reply(
    expect: str, reply: str, matches: bool
) -> None:
    assert expectation_matches(expect, reply) is matches
    assert _test(expect).matches(reply) is matches


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ("ok example.com/alice/", "must start with one of OK, NOTFOUND"),
        ("example.com/alice/", "must start with one of OK, NOTFOUND"),
        ("", "must start with one of OK, NOTFOUND"),
        ("* REJECT", "must start with one of OK, NOTFOUND"),
        ("NOTFOUND ", "carries no text"),
        ("NOTFOUND x", "carries no text"),
        ("OK", "needs the value found"),
        ("OK ", "needs the value found"),
    ],
)
def test_expect_must_read_as_a_reply(expect: str, message: str) -> None:
    with pytest.raises(ValidationError, match="expect") as raised:
        _test(expect)
    assert message in str(raised.value)


@pytest.mark.parametrize("expect", ["TEMP", "PERM bad", "TIMEOUT *", "OK  two spaces"])
def test_expect_accepts_every_status(expect: str) -> None:
    assert _test(expect).expect == expect


def test_key_must_be_sendable() -> None:
    with pytest.raises(ValidationError, match="key"):
        MapTest(map="recipient", key="", expect="NOTFOUND")
    with pytest.raises(ValidationError, match="NUL"):
        MapTest(map="recipient", key="a\0b", expect="NOTFOUND")


def test_config_tests_are_validated_with_the_config() -> None:
    config = parse_config(
        CONFIG
        + """
[[tests]]
map = "recipient"
key = "alice@example.com"
expect = "OK example.com/alice/"
note = "the first mailbox"

[[tests]]
map = "access"
key = "spammer@example.net"
expect = "OK REJECT*"
"""
    )
    assert [(t.map, t.key, t.expect, t.note) for t in config.tests] == [
        ("recipient", "alice@example.com", "OK example.com/alice/", "the first mailbox"),
        ("access", "spammer@example.net", "OK REJECT*", None),
    ]


def test_a_test_of_an_unknown_map_is_reported_at_its_path() -> None:
    text = CONFIG + '\n[[tests]]\nmap = "recipent"\nkey = "a"\nexpect = "NOTFOUND"\n'
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "sockmapd.toml")
    assert str(raised.value) == (
        "sockmapd.toml: tests[0].map: map 'recipent' is not defined; "
        "defined maps: 'access', 'recipient'"
    )


def test_a_test_is_not_checked_against_maps_that_failed_validation() -> None:
    # The broken map is reported; a second error at the test that names it adds nothing.
    text = (
        CONFIG.replace('table = "access"', 'table = "a b"')
        + '\n[[tests]]\nmap = "access"\nkey = "a"\nexpect = "NOTFOUND"\n'
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "sockmapd.toml")
    assert [p.path for p in raised.value.problems] == ["maps.access.table"]


def test_a_test_file_holds_tests_only() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_tests('[maps.x]\ntable = "t"\n', "t.toml")
    assert {(p.path, p.message) for p in raised.value.problems} == {
        ("maps", "unknown key"),
        ("tests", "required key is missing"),
    }


def test_a_test_file_needs_a_test() -> None:
    with pytest.raises(ConfigError, match="tests"):
        parse_tests("tests = []\n", "t.toml")


def test_a_test_file_names_known_maps_when_the_maps_are_known() -> None:
    text = '[[tests]]\nmap = "nope"\nkey = "a"\nexpect = "NOTFOUND"\n'
    assert parse_tests(text, map_names=None)[0].map == "nope"
    with pytest.raises(ConfigError, match=r"tests\[0\]\.map: map 'nope' is not defined"):
        parse_tests(text, "t.toml", map_names=["recipient"])


def test_a_test_file_with_a_toml_error_says_where() -> None:
    with pytest.raises(ConfigError, match=r"t\.toml: line 2 column"):
        parse_tests('[[tests]]\nmap = "x\n', "t.toml")


def test_header_lines_number_each_test() -> None:
    text = (
        "# tests\n"
        "[[tests]]\n"
        'map = "a"\n'
        "\n"
        "  [[ tests ]]  # indented, with a comment\n"
        'map = "b"\n'
        "[[tests]]\n"
    )
    assert header_lines(text, 3) == [2, 5, 7]


def test_header_lines_are_unknown_when_the_headers_do_not_add_up() -> None:
    # An inline array of tables has no header per test.
    text = 'tests = [{map = "a", key = "k", expect = "NOTFOUND"}]\n'
    assert header_lines(text, 1) == [None]
    assert header_lines("[[tests]]\n[[tests]]\n", 1) == [None]


def test_convert_keeps_the_tests() -> None:
    text = CONFIG + '\n[[tests]]\nmap = "access"\nkey = "a b"\nexpect = "OK *"\nnote = "n"\n'
    config = parse_config(text)
    converted = to_toml(config)
    assert '[[tests]]\nmap = "access"\nkey = "a b"\nexpect = "OK *"\nnote = "n"\n' in converted
    assert parse_config(converted) == config


def test_a_config_file_loads_its_tests(tmp_path: Path) -> None:
    path = tmp_path / "sockmapd.toml"
    path.write_text(CONFIG + '\n[[tests]]\nmap = "recipient"\nkey = "k"\nexpect = "NOTFOUND"\n')
    assert len(load_config(path).tests) == 1
