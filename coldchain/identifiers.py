"""Identifier syntax shared by the telemetry contract and the fleet registry.

Kept apart from both so that neither imports the other just for this type.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

__all__ = ["IDENTIFIER_PATTERN", "Identifier", "gs1_check_digit", "is_gs1_key"]

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, max_length=64)]


def gs1_check_digit(digits: str) -> int:
    """The GS1 mod-10 check digit of ``digits`` (a GS1 key without its check digit): weights
    3, 1, 3, ... from the right (GS1 General Specifications 7.9.1). Raises ``ValueError`` on a
    non-digit."""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"a GS1 key is digits only, got {digits!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return -total % 10


def is_gs1_key(value: str, length: int) -> bool:
    """True if ``value`` is ``length`` digits ending in the right GS1 check digit (a GLN has 13,
    an SSCC 18)."""
    return (
        len(value) == length
        and value.isascii()
        and value.isdigit()
        and gs1_check_digit(value[:-1]) == int(value[-1])
    )
