"""Rows to replies: the legacy daemon's and Postfix's SQL tables' answer rules."""

from __future__ import annotations

import pytest

from sockmapd.lookup.answers import format_rows
from sockmapd.protocol import Reply, Status


def test_no_rows_is_notfound() -> None:
    assert format_rows([]) == Reply.notfound()


def test_one_value() -> None:
    assert format_rows([("alice@example.com",)]) == Reply.ok("alice@example.com")


def test_value_and_reason_joined_by_one_space() -> None:
    rows = [("REJECT", "Sender identified as spammer")]
    assert format_rows(rows) == Reply.ok("REJECT Sender identified as spammer")


@pytest.mark.parametrize("reason", [None, ""])
def test_missing_reason_adds_nothing(reason: str | None) -> None:
    assert format_rows([("REJECT", reason)]) == Reply.ok("REJECT")


def test_rows_joined_with_commas_skipping_null_and_empty_values() -> None:
    rows = [("a", None), (None, "why"), ("", "x"), ("b", "because")]
    assert format_rows(rows) == Reply.ok("a,b because")


@pytest.mark.parametrize("rows", [[(None,)], [("",)], [(None, "r"), ("", "r")]])
def test_nothing_left_is_notfound_never_empty_ok(rows: list[tuple[object, ...]]) -> None:
    reply = format_rows(rows)
    assert reply.status is Status.NOTFOUND


def test_non_text_values_are_rendered() -> None:
    assert format_rows([(42,), (b"bytes\xff",)]) == Reply.ok("42,bytes\ufffd")
