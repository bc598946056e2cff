"""Wording shared by messages and log lines."""

from __future__ import annotations

import pytest

from sockmapd.text import counted


@pytest.mark.parametrize(
    ("number", "expected"),
    [(0, "0 maps"), (1, "1 map"), (2, "2 maps"), (1000, "1000 maps")],
)
def test_counted_uses_the_singular_for_one_only(number: int, expected: str) -> None:
    assert counted(number, "map") == expected
