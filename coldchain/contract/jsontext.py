"""JSON text as the contract reads it: duplicate keys, literals Python's json accepts but JSON
does not (RFC 8259 §6: ``NaN``/``Infinity`` are not numbers), numbers beyond a double, lone
surrogate escapes.

Two tools, for the two paths of ``parse_telemetry``:

- ``has_duplicate_keys(payload, message)``: the fast path's check on a payload that passed strict
  validation, by counting bytes (no second parse);
- ``load_tree(text)``: the salvage path's reader: Python's json with hooks that keep every
  problem where it was found, and ``problems(tree)`` listing each with its location.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coldchain.contract.telemetry import BatchMessage, Sample, SingleMessage

__all__ = ["Problem", "has_duplicate_keys", "load_tree", "loc_order", "problems"]

Loc = tuple[str | int, ...]
# (location, reason code, offending value, detail)
Problem = tuple[Loc, str, object, str]

_SPACED_KEY_END = re.compile(rb'"[ \t\n\r]+:')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# A decimal integer of fewer digits always fits a double; longer ones are checked exactly.
_SAFE_INT_DIGITS = 300


def has_duplicate_keys(payload: bytes, message: SingleMessage | BatchMessage) -> bool:
    """True if an object of ``payload`` may repeat a key; ``message`` is the payload validated.

    Every key written ends with ``"``, optional whitespace and ``:``, so counting those gives at
    least the number of keys written; the models hold the number of distinct keys
    (``model_fields_set`` and the id-keyed maps). A repeated key makes the first exceed the
    second, so none is missed. Only a string value holding a quote could make the count too
    high (a false True, which the caller's exact check clears); in a payload that passed strict
    validation no string can (field names, identifiers, literals and timestamps have none).
    """
    written = payload.count(b'":')
    if _SPACED_KEY_END.search(payload) is not None:
        written += len(_SPACED_KEY_END.findall(payload))
    fields_set = message.__pydantic_fields_set__
    if "samples" not in fields_set:  # required in a batch; a single sample has no such field
        return written != _sample_keys(message)  # type: ignore[arg-type]
    distinct = len(fields_set)
    for sample in message.samples:  # type: ignore[union-attr]
        distinct += _sample_keys(sample)
    return written != distinct


def _sample_keys(s: Sample) -> int:
    # __pydantic_fields_set__ is what the model_fields_set property returns, without the call.
    n = len(s.__pydantic_fields_set__) + len(s.temps_c)
    compartments = s.compartments
    if compartments:
        n += len(compartments)
        for state in compartments.values():
            n += len(state.__pydantic_fields_set__)
    position = s.position
    if position is not None:
        n += len(position.__pydantic_fields_set__)
    power = s.power
    if power is not None:
        n += len(power.__pydantic_fields_set__)
    return n


class _Bad:
    """A number Python's json reads but the contract cannot hold, kept with its text."""

    __slots__ = ("reason", "text")

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason

    def __repr__(self) -> str:
        return self.text


class _Object(dict[str, Any]):
    """A JSON object; ``repeated`` holds every value of a key given more than once."""

    __slots__ = ("repeated",)
    repeated: dict[str, list[Any]]


def load_tree(text: str) -> tuple[Any, bool]:
    """Parse JSON text with Python's json; (tree, whether ``problems`` may find anything).

    Raises ``ValueError`` (``json.JSONDecodeError``) or ``RecursionError`` when it is not JSON.
    """
    found: list[object] = []

    def pairs(items: list[tuple[str, Any]]) -> _Object:
        obj = _Object(items)
        if len(obj) != len(items):
            seen: dict[str, list[Any]] = {}
            for key, value in items:
                seen.setdefault(key, []).append(value)
            obj.repeated = {k: v for k, v in seen.items() if len(v) > 1}
            found.append(obj)
        return obj

    def constant(literal: str) -> _Bad:
        found.append(literal)
        return _Bad(literal, "not_finite")

    def integer(literal: str) -> int | _Bad:
        if len(literal) < _SAFE_INT_DIGITS:
            return int(literal)
        try:
            value = int(literal)
            float(value)
        except (ValueError, OverflowError):  # over sys.int_info digits, or over a double
            found.append(literal)
            return _Bad(literal, "number_too_large")
        return value

    # Floats are left to json (a Python hook per float would double the cost): 1e400 reads as
    # inf, which validation rejects and the caller names (``number_too_large``).
    tree = json.loads(text, object_pairs_hook=pairs, parse_constant=constant, parse_int=integer)
    return tree, bool(found) or _SURROGATE_ESCAPE.search(text) is not None


def problems(tree: Any) -> list[Problem]:
    """Every duplicate key, ``NaN``/``Infinity`` literal, integer beyond a double and lone
    surrogate in ``tree``, ordered by location (iterative: depth is bounded only by the parser).
    """
    found: list[Problem] = []
    stack: list[tuple[Loc, Any]] = [((), tree)]
    while stack:
        loc, node = stack.pop()
        if isinstance(node, dict):
            repeated = getattr(node, "repeated", None)
            for key, value in node.items():
                where = (*loc, key)
                if repeated and key in repeated:
                    values = repeated[key]
                    detail = f"key {key!r} appears {len(values)} times; which is meant is unknown"
                    found.append((where, "duplicate_key", values, detail))
                if not _is_text(key):
                    found.append((where, "invalid_unicode", key, "key holds a lone surrogate"))
                stack.append((where, value))
        elif isinstance(node, list):
            stack.extend(((*loc, i), v) for i, v in enumerate(node))
        elif isinstance(node, _Bad):
            detail = (
                "NaN and Infinity are not JSON numbers (RFC 8259 §6)"
                if node.reason == "not_finite"
                else "beyond the range of a 64-bit float"
            )
            found.append((loc, node.reason, node.text, detail))
        elif isinstance(node, str) and not _is_text(node):
            found.append((loc, "invalid_unicode", node, "string holds a lone surrogate"))
    found.sort(key=lambda p: loc_order(p[0]))
    return found


def loc_order(loc: Loc) -> tuple[tuple[int, int | str], ...]:
    """A sort key for locations: sample indices in numeric order, keys alphabetically."""
    return tuple((0, p) if isinstance(p, int) else (1, p) for p in loc)


def _is_text(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
