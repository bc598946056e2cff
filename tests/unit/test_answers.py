"""Rows to replies: the legacy daemon's and Postfix's SQL tables' answer rules."""

from __future__ import annotations

import pytest

from sockmapd.config.expansions import RESULT_CODES, parse_template
from sockmapd.lookup.answers import format_rows
from sockmapd.lookup.keys import KeyParts, ResultFormatter
from sockmapd.protocol import Reply, Status


def test_no_rows_is_notfound() -> None:
    assert format_rows([]) == Reply.notfound()


def test_one_value() -> None:
    assert format_rows([("alice@example.com",)]) == Reply.ok("alice@example.com")


def test_value_and_reason_joined_by_one_space() -> None:
    rows = [("REJECT", "Sender identified as spammer")]
    assert format_rows(rows, reason_column=True) == Reply.ok("REJECT Sender identified as spammer")


@pytest.mark.parametrize("reason", [None, ""])
def test_missing_reason_adds_nothing(reason: str | None) -> None:
    assert format_rows([("REJECT", reason)], reason_column=True) == Reply.ok("REJECT")


def test_reason_rows_joined_with_commas_skipping_null_and_empty_values() -> None:
    rows = [("a", None), (None, "why"), ("", "x"), ("b", "because")]
    assert format_rows(rows, reason_column=True) == Reply.ok("a,b because")


def test_every_row_and_column_is_a_value_without_reason_column() -> None:
    rows = [("a", None, "b"), ("", "c", None)]
    assert format_rows(rows) == Reply.ok("a,b,c")


@pytest.mark.parametrize("rows", [[(None,)], [("",)], [(None, "r"), ("", "r")]])
def test_nothing_left_is_notfound_never_empty_ok(rows: list[tuple[object, ...]]) -> None:
    reply = format_rows(rows, reason_column=True)
    assert reply.status is Status.NOTFOUND


def test_result_format_is_applied_and_may_skip_values() -> None:
    formatter = ResultFormatter(parse_template("smtp:[%d]", RESULT_CODES))
    rows = [("a@mx1.example", "unqualified"), ("b@mx2.example",)]
    reply = format_rows(rows, formatter=formatter, parts=KeyParts.of("k@example.com"))
    assert reply == Reply.ok("smtp:[mx1.example],smtp:[mx2.example]")


def test_expansion_limit_counts_values_not_rows() -> None:
    rows = [("a", "b"), ("c", None)]
    assert format_rows(rows, expansion_limit=3) == Reply.ok("a,b,c")
    reply = format_rows(rows, expansion_limit=2)
    assert reply.status is Status.TEMP
    assert "expansion_limit=2" in reply.text


def test_skipped_values_do_not_count_against_the_limit() -> None:
    assert format_rows([(None, "", "a")], expansion_limit=1) == Reply.ok("a")


def test_non_text_values_are_rendered() -> None:
    assert format_rows([(42,), (b"bytes\xff",)]) == Reply.ok("42,bytes\ufffd")
