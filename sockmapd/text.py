"""Wording shared by messages and log lines."""

from __future__ import annotations


def counted(number: int, noun: str) -> str:
    """Return number and noun, the noun in the plural unless number is 1: '1 map', '3 maps'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
