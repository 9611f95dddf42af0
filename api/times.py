"""Times at the HTTP boundary: RFC 3339 with an explicit offset in, epoch ms UTC inside.

A time without an offset is refused rather than guessed: a regulator's "as of 14:00" read in
the server's zone instead of theirs would silently shift every figure of a trace. A time
outside what coldchain can store is refused too (``MIN_MS``..``MAX_MS``: InfluxDB keeps times
as signed 64-bit nanoseconds since 1970, 1677-09-21 to 2262-04-11): asked of the store, it
would fail there, and that is not the store's fault.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException
from pydantic import WithJsonSchema

__all__ = ["DATE_TIME", "MAX_MS", "MIN_MS", "parse_time_param", "rfc3339"]

# RFC 3339 section 5.6 date-time (a space for "T" is allowed by its note), seconds required.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?"
)
_EXAMPLE = "2026-03-01T12:00:00Z or 2026-03-01T13:00:00%2B01:00"
# Integer arithmetic from the epoch: float seconds would be off by a millisecond now and then.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Whole milliseconds inside InfluxDB's signed 64-bit nanosecond range.
MIN_MS = -(2**63) // 1_000_000 + 1
MAX_MS = (2**63 - 1) // 1_000_000

# The OpenAPI schema of a time query parameter (``Annotated[str | None, DATE_TIME, Query()]``):
# a JSON Schema "date-time" is RFC 3339's, offset required, as ``parse_time_param`` wants. The
# parameter stays a string in Python: pydantic's datetime would also take epoch numbers and
# times without an offset, which this API refuses rather than guesses.
DATE_TIME = WithJsonSchema({"type": "string", "format": "date-time"})


def parse_time_param(name: str, value: str) -> int:
    """Epoch ms UTC of query parameter ``name``; 422 naming the parameter and the value."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        reason = f"is not an RFC 3339 date-time (e.g. {_EXAMPLE})"
        if re.fullmatch(r".*\d \d{2}:\d{2}", value):
            # A "+" in a URL's query decodes to a space.
            reason += "; send a '+' offset as %2B"
        raise HTTPException(422, f"query parameter {name!r}: {value!r} {reason}")
    if match.group("offset") is None:
        raise HTTPException(
            422,
            f"query parameter {name!r}: {value!r} has no UTC offset; add one "
            f"(e.g. {_EXAMPLE}) so the time is not read in the server's time zone",
        )
    try:
        # fromisoformat takes what the pattern admits, but keeps at most microseconds.
        parsed = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).upper())
    except ValueError as exc:  # e.g. month 13
        raise HTTPException(422, f"query parameter {name!r}: {value!r}: {exc}") from None
    ms = (parsed - _EPOCH) // _MS
    if not MIN_MS <= ms <= MAX_MS:
        side = "before the first" if ms < MIN_MS else "after the last"
        bound = MIN_MS if ms < MIN_MS else MAX_MS
        raise HTTPException(
            422,
            f"query parameter {name!r}: {value!r} is {side} instant coldchain can store "
            f"({rfc3339(bound)}; InfluxDB keeps 64-bit nanoseconds since 1970)",
        )
    return ms


def rfc3339(ms: int | None) -> str:
    """``2026-03-01T12:00:00Z`` (milliseconds only when there are some); "" for None."""
    if ms is None:
        return ""
    t = _EPOCH + ms * _MS
    spec = "milliseconds" if ms % 1000 else "seconds"
    return t.isoformat(timespec=spec).replace("+00:00", "Z")
