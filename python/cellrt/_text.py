"""Wording shared by the CLI, the plate report and the runtime's errors."""

from __future__ import annotations


def counted(number: int, noun: str) -> str:
    """'1 field', '2 fields' (nouns whose plural takes an s)."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def one_line(text) -> str:
    """A multi-line message (ONNX Runtime's, torch's) as one line: its non-empty lines joined by '; '."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())
