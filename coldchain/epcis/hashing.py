"""The GS1 canonical EPCIS event hash: ``ni:///sha-256;<hex>?ver=CBV2.0``.

Source: GS1 Core Business Vocabulary (CBV) 2.0, "EPCIS Event Hash ID", whose algorithm is
spelled out as numbered rules (cited below as "rule N") in the README of its reference
implementation ``epcis-event-hash-generator`` (MIT; the tests reproduce every vector of its
repository, vendored under tests/data/epcis/hash-vectors/). An event (a JSON-LD object
as in an ``EPCISDocument``'s ``eventList``) becomes a *pre-hash string*, hashed with SHA-256 and
wrapped as an RFC 6920 ``ni`` URI:

- ``eventType=<type>``, then the standard fields in the canonical property order, each as
  ``name=value`` (a parent's name followed by its children), concatenated without separators;
  repeated values (``epc`` in ``epcList``, ``sensorReport``\\ s, ...) sorted by code point;
- then every other member of the event (``bizTransactionList``, ``sourceList``,
  ``destinationList``, ``ilmd``, user extensions) as one sorted run; extensions inside
  ``readPoint``, ``bizLocation``, ``sensorElement``, ``sensorMetadata``, ``sensorReport`` go
  after their parent's standard fields. Extension names are ``{namespace}localName``.
  ``eventID``, ``recordTime``, ``errorDeclaration`` and an event's own ``@context`` are left out;
- values: surrounding whitespace stripped; timestamps in UTC with milliseconds
  (``2020-03-04T10:00:30.000Z``, finer fractions rounded half to even like the reference);
  numbers without trailing zeros (``26.0`` -> ``26``); CBV terms in bare form (``shipping``) or
  as ``urn:epcglobal:cbv:`` URNs become their web URIs
  (``https://ref.gs1.org/cbv/BizStep-shipping``), sensor ``type``/``exception`` their
  ``https://gs1.org/voc/`` URIs; compact URIs (``gs1:Temperature``) are expanded; EPC URIs
  and GS1 Digital Link URIs become constrained canonical Digital Link URIs (``gs1.py``).

The placement of the three business-transaction/source/destination lists in the final sorted
run (not at their place in the CBV table) and the ``type``-first order inside each entry are
what the reference implementation does and its vectors pin. Where the reference misbehaves
on input outside its vectors, this implementation does the evident thing instead: a boolean is
``true``/``false`` (not Python's ``True``), an entry without ``type`` is hashed (not dropped),
an integer beyond 2**53 keeps its digits, a timestamp without an offset is left as written
(the reference reads it in the machine's local zone).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any, Literal

from coldchain.epcis.gs1 import canonical_gs1_uri

__all__ = [
    "EPCIS_CONTEXT_URL",
    "HashAlgorithm",
    "document_event_hashes",
    "document_prehashes",
    "event_hash",
    "prehash",
]

EPCIS_CONTEXT_URL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
HashAlgorithm = Literal["sha-256", "sha3-256", "sha-384", "sha-512"]
_DIGESTS: dict[str, Callable[[bytes], Any]] = {
    "sha-256": hashlib.sha256,
    "sha3-256": hashlib.sha3_256,
    "sha-384": hashlib.sha384,
    "sha-512": hashlib.sha512,
}
# Prefixes the EPCIS context always defines (rule 15).
_STANDARD_PREFIXES = {
    "gs1": "https://gs1.org/voc/",
    "cbv": "https://ref.gs1.org/cbv/",
    "epcis": "https://ref.gs1.org/epcis/",
}
_SKIPPED = frozenset({"#text", "comment", "rdfs:comment"})  # annotations, never hashed
_NOT_HASHED = _SKIPPED | {"eventID", "recordTime", "type", "errorDeclaration", "@context"}
_TYPED_LISTS = {"bizTransactionList": "bizTransaction", "sourceList": "source",
                "destinationList": "destination"}  # fmt: skip


# --- vocabularies: bare CBV/GS1 terms as the EPCIS JSON-LD context defines them ---------------


@cache
def _vocabularies() -> dict[str, dict[str, str]]:
    """Term -> web URI per vocabulary, read from GS1's EPCIS 2.0 context (vendored)."""
    text = resources.files("coldchain.epcis").joinpath("schema/epcis-context.jsonld").read_text()
    ctx = json.loads(text)["@context"]

    def terms(definition: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in definition if isinstance(definition, list) else [definition]:
            for term, iri in part.items():
                if isinstance(iri, str) and ":" in iri and not term.startswith("@"):
                    prefix, rest = iri.split(":", 1)
                    out[term] = _STANDARD_PREFIXES.get(prefix, prefix + ":") + rest
        return out

    report = ctx["sensorElementList"]["@context"]["sensorReport"]["@context"]
    return {
        "bizStep": terms(ctx["bizStep"]["@context"]),
        "disposition": terms(ctx["disposition"]["@context"]),
        "measurement": terms(report["type"]["@context"]),
        "exception": terms(report["exception"]["@context"]),
        "component": terms(report["component"]["@context"]),
        "bizTransaction": terms(ctx["bizTransactionList"]["@context"]["type"]["@context"]),
        "source": terms(ctx["sourceList"]["@context"]["type"]["@context"]),
        "destination": terms(ctx["destinationList"]["@context"]["type"]["@context"]),
    }


# --- values -------------------------------------------------------------------------------------

_CBV_URNS = (
    ("urn:epcglobal:cbv:bizstep:", "https://ref.gs1.org/cbv/BizStep-"),
    ("urn:epcglobal:cbv:disp:", "https://ref.gs1.org/cbv/Disp-"),
    ("urn:epcglobal:cbv:btt:", "https://ref.gs1.org/cbv/BTT-"),
    ("urn:epcglobal:cbv:sdt:", "https://ref.gs1.org/cbv/SDT-"),
    ("urn:epcglobal:cbv:er:", "https://ref.gs1.org/cbv/ER-"),
)
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?"
    r"\s*(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>\d\d)(?::?(?P<om>\d\d))?)$"
)


class _Names:
    """Compact-URI prefixes in force for one document (its ``@context`` plus the standard ones)."""

    def __init__(self, context: Any) -> None:
        self.prefixes = dict(_STANDARD_PREFIXES)
        for part in context if isinstance(context, list) else [context]:
            if isinstance(part, Mapping):
                for prefix, iri in part.items():
                    if isinstance(iri, Mapping):
                        iri = iri.get("@id")
                    if isinstance(iri, str) and not prefix.startswith("@"):
                        self.prefixes.setdefault(prefix, iri)

    def key(self, name: str) -> str:
        """``ex:field`` -> ``{https://ns.example.com/epcis/}field``; standard names unchanged."""
        prefix, sep, local = name.partition(":")
        ns = self.prefixes.get(prefix) if sep else None
        return "{" + ns + "}" + local if ns is not None else name

    def value(self, raw: Any) -> str:
        """A JSON scalar as text, compact URIs expanded (``gs1:Temperature`` -> full URI)."""
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, float):
            return repr(raw)
        if not isinstance(raw, str):
            return str(raw)
        prefix, sep, rest = raw.partition(":")
        ns = self.prefixes.get(prefix) if sep else None
        return ns + rest if ns is not None else raw


def _number(text: str) -> str | None:
    """Canonical text of a number (no trailing zeros, no ``+``), or None if not a number."""
    if not _NUMBER.match(text):
        return None
    try:
        exact = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
        return None
    if exact.adjusted() > 40:
        return None  # absurdly large: leave as written rather than expand the digits
    if exact == exact.to_integral_value():
        return str(int(exact))
    approx = float(exact)  # as the reference implementation prints non-integers
    return str(int(approx)) if approx.is_integer() else repr(approx)


def _canonical(text: str) -> str:
    """A non-time value in canonical form (rules 6, 14, 16-18)."""
    for urn, web in _CBV_URNS:
        text = text.replace(urn, web)
    number = _number(text)
    if number is not None:
        return number
    return canonical_gs1_uri(text) or text


def _timestamp(text: str) -> str:
    """An ISO 8601 timestamp in UTC with milliseconds and ``Z`` (rules 8-9); unchanged if it is
    not one or has no offset."""
    m = _TIMESTAMP.match(text)
    if m is None or (m["z"] is None and m["sign"] is None):
        return text
    offset = timedelta(0)
    if m["sign"] is not None:
        offset = timedelta(hours=int(m["oh"]), minutes=int(m["om"] or 0))
        offset = -offset if m["sign"] == "-" else offset
    micros = int((m[7] or "").ljust(6, "0")[:6])
    millis, rest = divmod(micros, 1000)
    if rest > 500 or (rest == 500 and millis % 2 == 1):  # half to even, as the reference
        millis += 1
    try:
        year, month, day, hour, minute = (int(m[i]) for i in range(1, 6))
        moment = datetime(year, month, day, hour, minute, int(m[6] or 0), tzinfo=timezone(offset))
        moment = moment.astimezone(UTC) + timedelta(milliseconds=millis)
    except (ValueError, OverflowError):
        return text
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- the pre-hash string ----------------------------------------------------------------------

# A field renders as a list of strings (several for a repeated field), "" parts dropped.
_Render = Callable[[str, Any, _Names], list[str]]


def _items(raw: Any) -> list[Any]:
    return list(raw) if isinstance(raw, list) else [raw]


def _scalar(vocabulary: str | None = None) -> _Render:
    def render(name: str, raw: Any, names: _Names) -> list[str]:
        out = []
        for item in _items(raw):
            if item is None or isinstance(item, Mapping | list):
                continue
            text = names.value(item).strip()
            if vocabulary is not None:
                text = _vocabularies()[vocabulary].get(text, text)
            if "time" in name.lower() and "offset" not in name.lower():
                text = _timestamp(text)
            else:
                text = _canonical(text)
            if text:
                out.append(f"{name}={text}")
        return out

    return render


def _wrapped(item_name: str, render_item: _Render) -> _Render:
    """A list field (``epcList``) whose items are named ``item_name`` (``epc``)."""

    def render(name: str, raw: Any, names: _Names) -> list[str]:
        parts = sorted(s for item in _items(raw) for s in render_item(item_name, item, names))
        return [name + "".join(parts)] if parts else []

    return render


def _element(order: Sequence[tuple[str, _Render]]) -> _Render:
    """An object: its standard fields in ``order``, then its other members (extensions) sorted;
    a list of objects renders one string per object."""

    def render(name: str, raw: Any, names: _Names) -> list[str]:
        out = []
        for item in _items(raw):
            if isinstance(item, Mapping):
                body = _fields(item, order, names)
                if body:
                    out.append(name + body)
        return out

    return render


def _fields(
    obj: Mapping[str, Any],
    order: Sequence[tuple[str, _Render]],
    names: _Names,
    *,
    skip: frozenset[str] = _SKIPPED,
) -> str:
    known = {field for field, _ in order}
    text = "".join(
        "".join(sorted(render(field, obj[field], names))) for field, render in order if field in obj
    )
    others = [
        s
        for key, raw in obj.items()
        if key not in known and key not in skip
        for s in _other(key, raw, names)
    ]
    return text + "".join(sorted(others))


def _other(key: str, raw: Any, names: _Names) -> list[str]:
    """A member outside the canonical order: name, ``=value`` if any, its children sorted."""
    name = names.key(key)
    if key in _TYPED_LISTS:
        return [name + "".join(sorted(_typed(_TYPED_LISTS[key], e, names) for e in _items(raw)))]
    if isinstance(raw, list):
        if key.endswith("List"):  # a list element wraps its items (the XML form), as reference
            inner = [s for item in raw for s in _other(key[:-4], item, names)]
            return [name + "".join(sorted(inner))]
        return [s for item in raw for s in _other(key, item, names)]
    if isinstance(raw, Mapping):
        inner = [s for k, v in raw.items() if k not in _SKIPPED for s in _other(k, v, names)]
        return [name + "".join(sorted(inner))]
    if raw is None:
        return []
    text = names.value(raw).strip()
    return [name + ("=" + _canonical(text) if text else "")]


def _typed(id_name: str, entry: Any, names: _Names) -> str:
    """``type=<type URI><id_name>=<id>`` of one business transaction, source or destination."""
    if not isinstance(entry, Mapping):
        return ""
    out = ""
    if entry.get("type") is not None:
        kind = names.value(entry["type"]).strip()
        out += "type=" + _canonical(_vocabularies()[id_name].get(kind, kind))
    if entry.get(id_name) is not None:
        out += f"{id_name}=" + _canonical(names.value(entry[id_name]).strip())
    return out


_QUANTITY = _wrapped(
    "quantityElement",
    _element([("epcClass", _scalar()), ("quantity", _scalar()), ("uom", _scalar())]),
)
_EPCS = _wrapped("epc", _scalar())
_ID = _element([("id", _scalar())])
_SENSOR_METADATA = [
    (field, _scalar())
    for field in [
        "time",
        "startTime",
        "endTime",
        "deviceID",
        "deviceMetadata",
        "rawData",
        "dataProcessingMethod",
        "bizRules",
    ]
]
_SENSOR_REPORT: list[tuple[str, _Render]] = [
    ("type", _scalar("measurement")),
    ("exception", _scalar("exception")),
    *(
        (field, _scalar("component" if field == "component" else None))
        for field in [
            "deviceID",
            "deviceMetadata",
            "rawData",
            "dataProcessingMethod",
            "time",
            "microorganism",
            "chemicalSubstance",
            "value",
            "component",
            "stringValue",
            "booleanValue",
            "hexBinaryValue",
            "uriValue",
            "minValue",
            "maxValue",
            "meanValue",
            "sDev",
            "percRank",
            "percValue",
            "uom",
            "coordinateReferenceSystem",
        ]
    ),
]


_SENSOR_ELEMENTS = _wrapped(
    "sensorElement",
    _element(
        [("sensorMetadata", _element(_SENSOR_METADATA)), ("sensorReport", _element(_SENSOR_REPORT))]
    ),
)


# The canonical property order (CBV 2.0), as the reference implementation applies it.
_EVENT_ORDER: list[tuple[str, _Render]] = [
    ("eventTime", _scalar()),
    ("eventTimeZoneOffset", _scalar()),
    ("certificationInfo", _scalar()),
    ("parentID", _scalar()),
    ("epcList", _EPCS),
    ("inputEPCList", _EPCS),
    ("childEPCs", _EPCS),
    ("quantityList", _QUANTITY),
    ("childQuantityList", _QUANTITY),
    ("inputQuantityList", _QUANTITY),
    ("outputEPCList", _EPCS),
    ("outputQuantityList", _QUANTITY),
    ("action", _scalar()),
    ("transformationID", _scalar()),
    ("bizStep", _scalar("bizStep")),
    ("disposition", _scalar("disposition")),
    (
        "persistentDisposition",
        _element([("set", _scalar("disposition")), ("unset", _scalar("disposition"))]),
    ),
    ("readPoint", _ID),
    ("bizLocation", _ID),
    ("sensorElementList", _SENSOR_ELEMENTS),
]


def prehash(event: Mapping[str, Any], *, context: Any = None) -> str:
    """The canonical pre-hash string of one EPCIS event (CBV 2.0 EPCIS Event Hash ID).

    ``event`` is the JSON object of an event as it appears in an ``EPCISDocument``;
    ``context`` the document's ``@context`` (its prefixes name the extension fields). Raises
    ``ValueError`` if the event has no ``type``.
    """
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError("an EPCIS event needs a 'type' (ObjectEvent, AggregationEvent, ...)")
    names = _Names(context if context is not None else event.get("@context"))
    return f"eventType={kind}" + _fields(event, _EVENT_ORDER, names, skip=_NOT_HASHED)


def event_hash(
    event: Mapping[str, Any], *, context: Any = None, algorithm: HashAlgorithm = "sha-256"
) -> str:
    """The event hash ID ``ni:///<algorithm>;<hex digest>?ver=CBV2.0`` (RFC 6920 ``ni`` URI of
    the UTF-8 pre-hash string; rules 22-24). See ``prehash`` for the arguments."""
    digest = _DIGESTS[algorithm](prehash(event, context=context).encode("utf-8")).hexdigest()
    return f"ni:///{algorithm};{digest}?ver=CBV2.0"


def _events(document: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    body = document.get("epcisBody")
    if not isinstance(body, Mapping):
        raise ValueError("not an EPCIS document: no 'epcisBody' object")
    if "eventList" in body:
        return list(body["eventList"])
    return [body["event"]] if "event" in body else []


def document_prehashes(document: Mapping[str, Any]) -> list[str]:
    """The pre-hash string of every event in an ``EPCISDocument``, in order."""
    context = document.get("@context")
    return [prehash(e, context=context) for e in _events(document)]


def document_event_hashes(
    document: Mapping[str, Any], *, algorithm: HashAlgorithm = "sha-256"
) -> list[str]:
    """The event hash ID of every event in an ``EPCISDocument``, in order."""
    context = document.get("@context")
    return [event_hash(e, context=context, algorithm=algorithm) for e in _events(document)]
