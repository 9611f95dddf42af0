"""Opaque cursors for keyset-paged listings.

A cursor is base64url of canonical JSON ``{"v": 1, "after": <last id>, "f": <filters hash>}``:
the listing continues after the last id it returned, in a stable order, however many records
are added meanwhile. The filters' hash ties a cursor to the query that produced it: a cursor
reused with other filters is refused rather than silently answering a different question.
Clients must treat it as opaque (its content may change).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from coldchain.exceptions import RecordInvalid
from registry.audit import canonical_json

__all__ = ["decode_cursor", "encode_cursor"]

_VERSION = 1


def _fingerprint(filters: Mapping[str, Any]) -> str:
    given = {k: v for k, v in filters.items() if v is not None}
    return hashlib.sha256(canonical_json(given).encode()).hexdigest()[:16]


def encode_cursor(after: str, filters: Mapping[str, Any]) -> str:
    """The cursor of the page that follows ``after`` for the listing with ``filters``."""
    text = canonical_json({"v": _VERSION, "after": after, "f": _fingerprint(filters)})
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, filters: Mapping[str, Any]) -> str:
    """The id to continue after; RecordInvalid if ``cursor`` is not one of ours or was made
    for other filters."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise RecordInvalid(
            "cursor is not a cursor this API gave out (pass next_cursor back unchanged)"
        ) from None
    if (
        not isinstance(value, dict)
        or value.get("v") != _VERSION
        or not isinstance(value.get("after"), str)
    ):
        raise RecordInvalid("cursor is not a cursor this API gave out (or from an older version)")
    if value.get("f") != _fingerprint(filters):
        raise RecordInvalid(
            "cursor was made for other filters: repeat the first request's filters with it, "
            "or start again without a cursor"
        )
    return str(value["after"])
