"""Reading a telemetry payload so that a bad value costs only the smallest unit it spoils.

Fast path: the whole payload is validated strictly by the models and checked for repeated keys
by a byte count (``jsontext.has_duplicate_keys``); a good message pays about a microsecond more
than plain validation. Only a payload that fails takes the salvage path: it is read again with
Python's json (which sees repeated keys, ``NaN`` literals and numbers beyond a double), each
problem is mapped to its unit, those units are cut out, and what is left is validated again by
the same models, so the models stay the one definition of a valid value.

The units, smallest first (docs/telemetry.md, "Rejections"):

- a probe value ``temps_c.<sensor>`` (and the whole ``temps_c`` map if it is not a map of at
  most 32 probes);
- one field of a compartment's state ``compartments.<id>.<field>``, or that compartment's state
  when it is not an object or has a key the contract does not have; ``power`` likewise;
  ``signal_dbm``;
- the ``position``, for any of its fields: lat, lon, speed, heading and fix qualify each other;
- a sample: its ``ts`` or ``seq`` (the sample's identity), a key the contract does not have (its
  meaning for the values beside it is unknown), or the sample not being an object;
- the message: undecodable bytes, not JSON, not an object, and the envelope (``v``,
  ``device_id``, ``samples`` as a whole). In a single-sample message the sample is the message.

A repeated key spoils the unit its key belongs to: both values are kept in the dead letter, and
neither is stored, since which one the device meant is unknowable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

from pydantic import ValidationError

from coldchain.contract.jsontext import Loc, has_duplicate_keys, load_tree, loc_order, problems
from coldchain.contract.reasons import detect_encoding, reason_for
from coldchain.contract.telemetry import (
    _ADAPTER,
    BatchMessage,
    CompartmentState,
    Power,
    Sample,
    SingleMessage,
)
from coldchain.exceptions import TelemetryRejected

__all__ = ["ParsedTelemetry", "field_path", "parse_accepted_whole", "parse_telemetry"]

_STATE_FIELDS = frozenset(CompartmentState.model_fields)
_POWER_FIELDS = frozenset(Power.model_fields)
_ENVELOPE_KEYS = ("v", "device_id")
_PLACEHOLDER = {"ts": "1970-01-01T00:00:00Z", "seq": 0}
# Rounds of cut-and-validate. The first usually succeeds (the fast path's errors located every
# problem); another is needed only when a cut exposes a problem validation had not reached.
_MAX_ROUNDS = 4


class ParsedTelemetry(NamedTuple):
    """The good part of one telemetry payload.

    ``samples`` are validated (oldest first as sent); ``positions[k]`` is the index in the
    payload's ``samples`` of ``samples[k]`` (None for a single-sample message); ``rejected``
    holds one ``TelemetryRejected`` per problem, each naming the unit it cost. (A NamedTuple:
    one is made per message on the hot path, and a frozen dataclass costs ~1 us more.)
    """

    device_id: str
    batch: bool
    samples: Sequence[Sample]
    positions: Sequence[int] | None
    rejected: Sequence[TelemetryRejected]

    def where(self, k: int) -> str:
        """The field path of ``samples[k]`` in the payload ("" for a single-sample message)."""
        return "" if self.positions is None else f"samples[{self.positions[k]}]"


def field_path(loc: Loc) -> str:
    """``("samples", 17, "temps_c", "c1-air")`` -> ``samples[17].temps_c.c1-air``.

    A key that is not text (a lone surrogate) is written with backslash escapes, so the path
    can always be stored.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        if not part.isascii():
            part = part.encode("utf-8", "backslashreplace").decode("utf-8")
        out += f".{part}" if out else part
    return out


def parse_telemetry(payload: bytes, device_id: str | None = None) -> ParsedTelemetry:
    """Validate a payload, keeping every unit not spoiled by a problem.

    ``device_id`` (the topic's) is stamped on rejections. Raises ``TelemetryRejected`` only when
    the message as a whole is rejected (its first message-level problem, the count of others in
    the detail); never raises anything else.
    """
    try:
        message = _ADAPTER.validate_json(payload)
    except ValidationError as exc:
        return _salvage(payload, device_id, exc)
    if has_duplicate_keys(payload, message):
        return _salvage(payload, device_id, None)
    if type(message) is SingleMessage:
        return ParsedTelemetry(message.device_id, False, (message,), None, ())
    return _parsed(message, None, ())


def parse_accepted_whole(payload: bytes) -> Sequence[Sample]:
    """The samples of a payload ``parse_telemetry`` accepted whole (no rejection at all, the
    message's samples all stored), read again with one strict validation: for such a payload
    that is exactly what ``parse_telemetry`` returned (no duplicate key, no unit cut), without
    its duplicate-key count or salvage. Only for such a payload: a repeated key is not looked
    for here (pydantic keeps the last value). Raises ``TelemetryRejected`` (the first error's
    reason code) if the payload does not validate strictly: it was not such a payload.
    """
    try:
        message = _ADAPTER.validate_json(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        reason, detail = reason_for(err["type"], err.get("input"), err["msg"])
        raise TelemetryRejected(
            reason, f"not a payload accepted whole: {detail}", device_id=None
        ) from None
    if type(message) is SingleMessage:
        return (message,)
    return message.samples  # type: ignore[union-attr]


def _parsed(
    message: SingleMessage | BatchMessage,
    kept: list[int] | None,
    rejected: Sequence[TelemetryRejected],
) -> ParsedTelemetry:
    if isinstance(message, BatchMessage):
        if kept == []:  # every sample was rejected; the envelope was checked on a placeholder
            return ParsedTelemetry(message.device_id, True, [], [], rejected)
        positions = range(len(message.samples)) if kept is None else kept
        return ParsedTelemetry(message.device_id, True, message.samples, positions, rejected)
    return ParsedTelemetry(message.device_id, False, (message,), None, rejected)


def _whole(reason: str, detail: str, device_id: str | None, value: object) -> NoReturn:
    raise TelemetryRejected(reason, detail, device_id=device_id, field="", value=value)


def _load(
    payload: bytes, device_id: str | None, first: ValidationError | None
) -> tuple[dict[str, Any], bool]:
    """(the payload as a Python tree, whether it may hold problems the models cannot see), or
    the message's rejection."""
    unparsable = None
    if first is not None:
        err = first.errors(include_url=False)[0]
        if err["type"] == "json_invalid":
            unparsable = err["msg"]
    if unparsable is not None:
        encoding = detect_encoding(payload)
        if encoding is not None:
            detail = f"the payload is {encoding}; JSON must be UTF-8 without a byte order mark"
            _whole("bad_encoding", detail, device_id, encoding)
        if "recursion limit" in unparsable:
            _whole("malformed_json", unparsable, device_id, payload)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        _whole("invalid_utf8", f"not UTF-8 at byte {exc.start}", device_id, payload)
    try:
        tree, suspect = load_tree(text)
    except (ValueError, RecursionError) as exc:
        _whole("malformed_json", unparsable or f"Invalid JSON: {exc}", device_id, payload)
    if not isinstance(tree, dict):
        _whole("not_an_object", "the payload is JSON but not an object", device_id, tree)
    return tree, suspect


# (unit, reason, detail, location, value)
_Found = tuple[Loc, str, str, Loc, object]


def _salvage(
    payload: bytes, device_id: str | None, first: ValidationError | None
) -> ParsedTelemetry:
    tree, suspect = _load(payload, device_id, first)
    batch = "samples" in tree
    found: list[_Found] = [
        (_unit(loc, batch), reason, detail, loc, value)
        for loc, reason, value, detail in (problems(tree) if suspect else ())
    ]
    seen = {f[3] for f in found}
    # The fast path's errors locate every problem pydantic sees in the payload as sent (unless
    # it could not even parse it): the first round needs no validation of its own.
    errors = None
    if first is not None and first.errors(include_url=False)[0]["type"] != "json_invalid":
        errors = first.errors(include_url=False)
    kept: list[int] | None = None  # sample indices of the validated payload (None: as sent)
    for _ in range(_MAX_ROUNDS):
        if errors is not None:
            for err in errors:
                loc = _original_loc(err["loc"], kept, batch)
                if loc in seen:  # already named by the scan (e.g. NaN: not_finite)
                    continue
                value = err.get("input")
                reason, detail = reason_for(err["type"], value, err["msg"])
                if _too_large(_at(tree, loc)):
                    reason, detail = "number_too_large", "beyond the range of a 64-bit float"
                found.append((_unit(loc, batch), reason, detail, loc, value))
                seen.add(loc)
        units = {f[0] for f in found}
        if () in units:
            break
        cleaned, kept = _cut(tree, units, batch)
        try:
            message = _ADAPTER.validate_json(json.dumps(cleaned, allow_nan=False))
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            continue
        except (TypeError, ValueError) as exc:  # not serialisable: cannot happen, but say so
            found.append(((), "malformed_json", str(exc), (), None))
            break
        return _parsed(message, kept if batch else None, _reported(found, device_id))
    whole = [f for f in found if f[0] == ()] or found
    _, reason, detail, loc, value = whole[0]
    if len(found) > 1:
        more = len(found) - 1
        detail += f" (and {more} more problem{'s' if more > 1 else ''} in the message)"
    raise TelemetryRejected(reason, detail, device_id=device_id, field=field_path(loc), value=value)


def _at(tree: Any, loc: Loc) -> Any:
    """The value at ``loc`` in ``tree``, or None."""
    node = tree
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _too_large(value: Any) -> bool:
    """A number literal beyond a double: Python's json reads ``1e400`` as inf (``Infinity``
    literals are kept apart by ``load_tree``) and ``10**400`` as an exact int."""
    if isinstance(value, float):
        return math.isinf(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return True
    return False


def _envelope_device(tree: dict[str, Any]) -> str:
    device = tree.get("device_id")
    return device if isinstance(device, str) else ""


def _reported(found: list[_Found], device_id: str | None) -> list[TelemetryRejected]:
    """One rejection per problem in payload order, less those inside a larger rejected unit
    (that unit's letter covers them: e.g. a bad probe value of a sample whose ``ts`` is bad)."""
    units = {f[0] for f in found}
    return [
        TelemetryRejected(reason, detail, device_id=device_id, field=field_path(loc), value=value)
        for unit, reason, detail, loc, value in sorted(found, key=lambda f: loc_order(f[3]))
        if not any(unit[:n] in units for n in range(len(unit)))
    ]


def _original_loc(loc: tuple[str | int, ...], kept: list[int] | None, batch: bool) -> Loc:
    """A pydantic location in the cleaned payload -> the location in the payload.

    Drops the union tag (first element) and the dict-key marker; maps sample indices back (a
    placeholder sample stands in when none is kept: its index maps to nothing).
    """
    parts = list(loc[1:])
    if parts and parts[-1] == "[key]":
        parts.pop()
    if (
        kept is not None
        and batch
        and len(parts) >= 2
        and parts[0] == "samples"
        and isinstance(parts[1], int)
    ):
        parts[1] = kept[parts[1]] if parts[1] < len(kept) else -1
    return tuple(parts)


def _unit(loc: Loc, batch: bool) -> Loc:
    """The smallest unit a problem at ``loc`` spoils; ``()`` is the whole message."""
    if batch:
        if len(loc) < 2 or loc[0] != "samples" or not isinstance(loc[1], int):
            return ()
        base, rest = loc[:2], loc[2:]
    else:
        if not loc or loc[0] in _ENVELOPE_KEYS:
            return ()
        base, rest = (), loc
    if not rest:
        return base
    head = rest[0]
    if head == "temps_c":
        return base + rest[:2]
    if head == "compartments":
        if len(rest) >= 3 and rest[2] in _STATE_FIELDS:
            return base + rest[:3]
        return base + rest[:2]
    if head == "power":
        if len(rest) >= 2 and rest[1] in _POWER_FIELDS:
            return base + rest[:2]
        return base + rest[:1]
    if head in ("position", "signal_dbm"):
        return base + rest[:1]
    return base  # ts, seq, or a key the contract does not have: the sample


def _cut(tree: dict[str, Any], units: set[Loc], batch: bool) -> tuple[dict[str, Any], list[int]]:
    """A copy of ``tree`` without ``units`` (copying only what changes), and the payload index
    of each sample kept."""
    if not batch:
        out = tree
        for unit in units:
            out = _without(out, unit)
        return out, [0]
    samples = tree["samples"]
    if not isinstance(samples, list):
        return tree, []  # validation rejects the envelope
    by_sample: dict[int, list[Loc]] = {}
    for unit in units:
        by_sample.setdefault(int(unit[1]), []).append(unit[2:])
    kept = [i for i in range(len(samples)) if () not in by_sample.get(i, ())]
    cleaned = []
    for i in kept:
        sample = samples[i]
        for rest in by_sample.get(i, ()):
            sample = _without(sample, rest)
        cleaned.append(sample)
    if samples and not cleaned:
        # With no sample left the envelope is still checked, on a placeholder that is valid.
        cleaned = [_PLACEHOLDER]
    return {**tree, "samples": cleaned}, kept


def _without(node: Any, path: Loc) -> Any:
    if not isinstance(node, dict):
        return node
    head = path[0]
    if head not in node:
        return node
    copy = dict(node)
    if len(path) == 1:
        del copy[head]
    else:
        copy[head] = _without(node[head], path[1:])
    return copy
