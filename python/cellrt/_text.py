"""Wording shared by the CLI and the plate report."""

from __future__ import annotations


def counted(number: int, noun: str) -> str:
    """'1 field', '2 fields' (nouns whose plural takes an s)."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
