"""Validation of EPCIS 2.0 documents against GS1's JSON Schema, formats enforced.

The schema (GS1, EPCIS 2.0, draft-07, vendored in ``schema/``; provenance in
``schema/README.md``) types identifiers as ``format: uri`` and times as ``format: date-time``.
A plain ``Draft7Validator`` ignores formats, so a readPoint ``"truck-jy-01"`` would pass; this
validator checks them (``jsonschema[format-nongpl]`` supplies the checkers) and refuses to run
if the ``uri`` checker is missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, get_args

from coldchain.epcis.hashing import HashAlgorithm, event_hash

if TYPE_CHECKING:
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import ValidationError

__all__ = ["epcis_schema", "validate_epcis"]


@cache
def epcis_schema() -> dict[str, Any]:
    """GS1's EPCIS 2.0 JSON Schema (a dict; do not modify it)."""
    text = resources.files("coldchain.epcis").joinpath("schema/EPCIS-JSON-Schema.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema


@cache
def _validator() -> Draft7Validator:
    # Imported on first use: with its format checkers jsonschema takes ~1 s to import (the
    # RFC 3987 grammar), which hashing and building documents do not need.
    from jsonschema import Draft7Validator

    checker = Draft7Validator.FORMAT_CHECKER
    if checker.conforms("truck-jy-01", "uri"):
        raise RuntimeError(
            "jsonschema does not check format 'uri' here: install jsonschema[format-nongpl]"
        )
    return Draft7Validator(epcis_schema(), format_checker=checker)


def _where(error: ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return path.lstrip(".") or "(document)"


def _what(error: ValidationError) -> str:
    if error.context:  # anyOf/oneOf: the alternatives' own reasons say more than the summary
        reasons = list(dict.fromkeys(e.message for e in error.context))
        text = f"{error.validator} failed: " + "; ".join(reasons[:4])
    else:
        text = error.message
    return text if len(text) <= 300 else text[:297] + "..."


def validate_epcis(document: Any, *, check_event_ids: bool = False) -> list[str]:
    """Errors of an EPCIS 2.0 document (``[]`` if valid), each ``"<path>: <reason>"``, e.g.
    ``"epcisBody.eventList[0].readPoint.id: 'truck-jy-01' is not a 'uri'"``.

    Checks GS1's JSON Schema with format checking on. With ``check_event_ids``, an event whose
    ``eventID`` is a CBV 2.0 hash (``ni:///...?ver=CBV2.0``) must also equal the hash computed
    from its content (GS1's own examples carry placeholder ids, so this is off by default).
    """
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.path)))
    out = [f"{_where(e)}: {_what(e)}" for e in errors]
    if check_event_ids and not out and isinstance(document, Mapping):
        context = document.get("@context")
        for i, event in enumerate(document.get("epcisBody", {}).get("eventList", [])):
            claimed = event.get("eventID", "")
            if not (claimed.startswith("ni:///") and claimed.endswith("?ver=CBV2.0")):
                continue
            algorithm = claimed[len("ni:///") : claimed.find(";")]
            if algorithm not in get_args(HashAlgorithm):
                out.append(f"epcisBody.eventList[{i}].eventID: unknown algorithm {algorithm!r}")
                continue
            actual = event_hash(event, context=context, algorithm=algorithm)
            if actual != claimed:
                out.append(
                    f"epcisBody.eventList[{i}].eventID: {claimed} is not the event's hash "
                    f"({actual})"
                )
    return out
