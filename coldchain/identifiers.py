"""Identifier syntax shared by the telemetry contract, the fleet registry and the HTTP API.

Kept apart from all of them so that none imports another just for these types.

Two kinds of identifier, told apart by where they come from:

- **Identifiers** (``Identifier``) name what coldchain itself registers: devices, assets,
  compartments, sensors. 1-64 characters, ``^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$``: safe as MQTT
  topic levels, InfluxDB tags and URL path segments without any escaping.
- **Shipment ids** (``ShipmentId``) come from outside: GS1 keys (an SSCC is 18 digits, a GRAI or
  GIAI may carry ``/`` and other symbols in its serial) and customers' own references
  (``PO-2026/0042``, ``ACME:778-A``). 1-128 characters of the GS1 "AI encodable character set
  82" (GS1 General Specifications, section 7.11, figure 7.11-1): letters, digits and
  ``! " % & ' ( ) * + , - . / : ; < = > ? _``. No spaces, no control characters, nothing outside
  ASCII (no look-alike letters). Because ``/`` is legal and an id is one path parameter of the
  HTTP API, three more rules keep every id one unambiguous URL path: no empty segment (no
  leading, trailing or doubled ``/``), no ``.`` or ``..`` segment (URL normalisation would
  remove it, RFC 3986 section 5.2.4), and no last segment naming one of the API's shipment
  sub-resources (``trace``, ``trace.csv``, ``report.html``, ``report.pdf``, ``epcis``,
  ``cancel``: ``/v1/shipments/{id}/trace``).

Both are case-sensitive and never normalised: what is checked is what is stored.
``identifier_problem`` and ``shipment_id_problem`` say in one phrase what is wrong with a value
(for 422 answers, registry rejections and migration reports); the pydantic types raise the same
phrases.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, StringConstraints, WithJsonSchema

__all__ = [
    "ACTOR_MAX",
    "IDENTIFIER_MAX",
    "IDENTIFIER_PATTERN",
    "SHIPMENT_ID_CHARS",
    "SHIPMENT_ID_MAX",
    "SHIPMENT_ID_PATTERN",
    "Actor",
    "Identifier",
    "ShipmentId",
    "actor_problem",
    "gs1_check_digit",
    "identifier_problem",
    "is_gs1_key",
    "is_identifier",
    "is_shipment_id",
    "shipment_id_problem",
]

IDENTIFIER_MAX = 64
# Anchored for pydantic and JSON Schema, where "$" is the end of the text. Python's re.match
# would let "$" match before a trailing newline: use is_identifier(), which fullmatches.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, max_length=64)]

SHIPMENT_ID_MAX = 128
# GS1 AI encodable character set 82, in ASCII order.
SHIPMENT_ID_CHARS = (
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
_SEGMENT_CHARS = frozenset(SHIPMENT_ID_CHARS) - {"/"}
# The names of the API's shipment sub-resources (/v1/shipments/{id}/<name>): an id ending in
# one could not be told from the sub-resource of a shorter id.
_RESERVED_LAST = ("trace", "trace.csv", "report.html", "report.pdf", "epcis", "cancel")
# For JSON Schema readers: characters and segments (not "." or ".."); the length and the
# reserved last segment are stated beside it. No look-arounds (pydantic's regex engine has none).
_C = r"""[!"%&'()*+,\-.0-9:;<=>?A-Z_a-z]"""  # a segment character
_D = r"""[!"%&'()*+,\-0-9:;<=>?A-Z_a-z]"""  # ... other than "."
_SEG = rf"{_C}*{_D}{_C}*|\.\.\.+"
SHIPMENT_ID_PATTERN = rf"^(?:{_SEG})(?:/(?:{_SEG}))*$"


def _char_name(ch: str) -> str:
    name = unicodedata.name(ch, "")
    code = f"U+{ord(ch):04X}"
    return f"{code} {name}" if name else code


def is_identifier(value: str) -> bool:
    """True if ``value`` is an Identifier (a whole-string match: a trailing newline fails)."""
    return _IDENTIFIER.fullmatch(value) is not None


def identifier_problem(value: str) -> str | None:
    """None if ``value`` is an Identifier, else what is wrong, e.g. ``"contains U+000A (a
    control character) at position 8"``. Positions count from 1."""
    if is_identifier(value):
        return None
    if not value:
        return "is empty"
    if len(value) > IDENTIFIER_MAX:
        return f"is {len(value)} characters long; at most {IDENTIFIER_MAX} are allowed"
    for i, ch in enumerate(value, start=1):
        ok = ch.isascii() and (ch.isalnum() or (i > 1 and ch in "._-"))
        if not ok:
            what = _char_name(ch) if not ch.isprintable() or not ch.isascii() else repr(ch)
            allowed = "letters and digits" if i == 1 else "letters, digits, '.', '_' and '-'"
            return f"contains {what} at position {i}; only {allowed} are allowed there"
    return "is not an identifier"  # pragma: no cover - every failing case is named above


def shipment_id_problem(value: str) -> str | None:
    """None if ``value`` is a ShipmentId (see the module docstring), else what is wrong."""
    if not value:
        return "is empty"
    if len(value) > SHIPMENT_ID_MAX:
        return f"is {len(value)} characters long; at most {SHIPMENT_ID_MAX} are allowed"
    for i, ch in enumerate(value, start=1):
        if ch != "/" and ch not in _SEGMENT_CHARS:
            kind = "whitespace" if ch.isspace() else "not allowed"
            if not ch.isprintable():
                kind = "a control character"
            elif not ch.isascii():
                kind = "not ASCII"
            return (
                f"contains {_char_name(ch)} ({kind}) at position {i}; allowed are letters, "
                "digits and ! \" % & ' ( ) * + , - . / : ; < = > ? _ (GS1 character set 82)"
            )
    segments = value.split("/")
    if "" in segments:
        return "has an empty path segment (a leading, trailing or doubled '/')"
    for seg in segments:
        if seg in (".", ".."):
            return f"has a {seg!r} path segment, which URLs resolve away"
    if len(segments) > 1 and segments[-1] in _RESERVED_LAST:
        return f"ends in '/{segments[-1]}', reserved for the API's sub-resources"
    return None


def is_shipment_id(value: str) -> bool:
    """True if ``value`` is a ShipmentId (``shipment_id_problem`` says why not)."""
    return shipment_id_problem(value) is None


def _check_shipment_id(value: str) -> str:
    problem = shipment_id_problem(value)
    if problem is not None:
        raise ValueError(f"shipment id {problem}")
    return value


ShipmentId = Annotated[
    str,
    AfterValidator(_check_shipment_id),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": SHIPMENT_ID_MAX,
            "pattern": SHIPMENT_ID_PATTERN,
            "description": "GS1 character set 82; '/'-separated segments, none empty, '.' or "
            "'..'; the last segment is not 'trace', 'trace.csv', 'report.html', 'report.pdf', "
            "'epcis' or 'cancel'",
        }
    ),
]

ACTOR_MAX = 128


def actor_problem(value: str) -> str | None:
    """None if ``value`` can name a person or system in a record (1-128 characters, any
    script, no control characters, not blank), else what is wrong."""
    if not value.strip():
        return "is empty or blank"
    if len(value) > ACTOR_MAX:
        return f"is {len(value)} characters long; at most {ACTOR_MAX} are allowed"
    for i, ch in enumerate(value, start=1):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return f"contains {_char_name(ch)} (a control character) at position {i}"
    return None


def _check_actor(value: str) -> str:
    problem = actor_problem(value)
    if problem is not None:
        raise ValueError(f"actor {problem}")
    return value


Actor = Annotated[
    str,
    AfterValidator(_check_actor),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": ACTOR_MAX}),
]


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
