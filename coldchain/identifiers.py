"""Identifier syntax shared by the telemetry contract and the fleet registry.

Kept apart from both so that neither imports the other just for this type.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

__all__ = ["IDENTIFIER_PATTERN", "Identifier"]

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, max_length=64)]
