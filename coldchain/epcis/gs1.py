"""GS1 keys and their URIs: check digits, SSCC/GLN URIs, and the constrained canonical GS1
Digital Link form the EPCIS event hash compares identifiers in.

Sources: GS1 General Specifications 7.9.1 (check digit), GS1 EPC Tag Data Standard 2.0
section 6 (EPC URIs), GS1 Digital Link URI Syntax 1.2 section 4.11 (canonical form) and the
CBV 2.0 event hash, rules 17-18 (EPC URIs and Digital Link URIs hash as the *constrained*
canonical Digital Link URI: domain ``https://id.gs1.org``, no query string, only the finest
identification level).
The conversions follow the reference implementation of the event hash
(``epcis-event-hash-generator``, MIT, ``dl_normaliser.py``), table-driven here. One deliberate
difference: a percent-escape (``%2F``) inside a Digital Link value is kept valid, so an EPC URI
and the Digital Link URI it converts to canonicalise alike (the reference leaves the latter
unconverted).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from coldchain.identifiers import gs1_check_digit, is_gs1_key

__all__ = [
    "canonical_gs1_uri",
    "check_digit",
    "gln_uri",
    "is_gln",
    "is_sscc",
    "sscc_epc_urn",
    "sscc_uri",
]

GS1_RESOLVER = "https://id.gs1.org"


check_digit = gs1_check_digit


def is_sscc(value: str) -> bool:
    """True for an SSCC: 18 digits whose last is the right check digit."""
    return is_gs1_key(value, 18)


def is_gln(value: str) -> bool:
    """True for a GLN: 13 digits whose last is the right check digit."""
    return is_gs1_key(value, 13)


def sscc_uri(sscc: str) -> str:
    """The GS1 Digital Link URI of an SSCC, ``https://id.gs1.org/00/<sscc>`` (needs no company
    prefix length). Raises ``ValueError`` if ``sscc`` is not a valid SSCC."""
    if not is_sscc(sscc):
        raise ValueError(f"{sscc!r} is not an SSCC (18 digits with a valid check digit)")
    return f"{GS1_RESOLVER}/00/{sscc}"


def sscc_epc_urn(sscc: str, company_prefix_length: int) -> str:
    """The EPC pure identity URI of an SSCC, ``urn:epc:id:sscc:<prefix>.<extension><serial>``
    (Tag Data Standard 2.0, 6.3.2): the extension digit moves behind the company prefix and the
    check digit is dropped. ``company_prefix_length`` is 6..12 digits. Raises ``ValueError``."""
    if not is_sscc(sscc):
        raise ValueError(f"{sscc!r} is not an SSCC (18 digits with a valid check digit)")
    if not 6 <= company_prefix_length <= 12:
        raise ValueError(f"a GS1 company prefix has 6 to 12 digits, not {company_prefix_length}")
    prefix = sscc[1 : 1 + company_prefix_length]
    serial = sscc[0] + sscc[1 + company_prefix_length : 17]
    return f"urn:epc:id:sscc:{prefix}.{serial}"


_EXT_CHARS = re.compile(r"^[A-Za-z0-9._-]{1,20}$")


def gln_uri(gln: str, extension: str | None = None) -> str:
    """The Digital Link URI of a location: ``https://id.gs1.org/414/<gln>``, with
    ``/254/<extension>`` for a sub-location (the Digital Link form of an SGLN; the extension is
    1-20 of ``A-Z a-z 0-9 . _ -``). Raises ``ValueError``."""
    if not is_gln(gln):
        raise ValueError(f"{gln!r} is not a GLN (13 digits with a valid check digit)")
    if extension is None:
        return f"{GS1_RESOLVER}/414/{gln}"
    if not _EXT_CHARS.match(extension):
        raise ValueError(f"{extension!r} cannot be a GLN extension (1-20 of A-Z a-z 0-9 . _ -)")
    return f"{GS1_RESOLVER}/414/{gln}/254/{extension}"


# --- EPC URIs -> Digital Link (Tag Data Standard 2.0 section 6, one line per scheme) ----------

# One character of an EPC URI serial/reference: GS1 AI encodable set 82, some percent-escaped.
_X = r"(?:%[0-9A-Fa-f]{2}|[!'()*+,.0-9:;=A-Za-z_-])"
_CPI = r"(?:%[0-9A-Fa-f]{2}|[0-9A-Z-])"


def _dl_escape(value: str) -> str:
    """Escape what GS1 Digital Link 1.2 table 7-1 requires and an EPC URI leaves bare."""
    for char, escape in (("!", "%21"), ("(", "%28"), (")", "%29"), ("*", "%2A")):
        value = value.replace(char, escape)
    for char, escape in (("+", "%2B"), (",", "%2C"), (":", "%3A")):
        value = value.replace(char, escape)
    return value


def _chars(value: str) -> int:
    """Length of an EPC URI component counting a percent-escape as one character."""
    return len(re.sub(r"%[0-9A-Fa-f]{2}", "_", value))


def _lead(cp: str, ref: str) -> str:
    """A key whose reference's first digit leads (GTIN indicator, SSCC extension digit)."""
    raw = ref[0] + cp + ref[1:]
    return raw + str(check_digit(raw))


def _keyed(cp: str, ref: str) -> str:
    raw = cp + ref
    return raw + str(check_digit(raw))


_Conv = Callable[[re.Match[str]], str | None]


def _sized(total: int, build: Callable[[str, str], str]) -> _Conv:
    """Convert when prefix + reference make ``total`` digits (a GS1 key's fixed length)."""

    def conv(m: re.Match[str]) -> str | None:
        return build(m["cp"], m["r"]) if len(m["cp"]) + len(m["r"]) == total else None

    return conv


def _sgtin(m: re.Match[str]) -> str | None:
    if len(m["cp"]) + len(m["r"]) != 13 or _chars(m["s"]) > 20:
        return None
    return f"/01/{_lead(m['cp'], m['r'])}/21/{_dl_escape(m['s'])}"


def _sgln(m: re.Match[str]) -> str | None:
    if len(m["cp"]) + len(m["r"]) != 12 or _chars(m["s"]) > 20:
        return None
    gln = _keyed(m["cp"], m["r"])
    return f"/414/{gln}" if m["s"] == "0" else f"/414/{gln}/254/{_dl_escape(m['s'])}"


def _serialised(ai: str, total: int, serial_max: int, pad: str = "") -> _Conv:
    """Key (``pad`` + prefix + reference + check digit) then the serial, as GRAI, GDTI, SGCN."""

    def conv(m: re.Match[str]) -> str | None:
        if len(m["cp"]) + len(m["r"]) != total or _chars(m["s"]) > serial_max:
            return None
        return f"/{ai}/{_keyed(pad + m['cp'], m['r'])}{_dl_escape(m['s'])}"

    return conv


def _free(ai: str, total_max: int) -> _Conv:
    def conv(m: re.Match[str]) -> str | None:
        if len(m["cp"]) + _chars(m["r"]) > total_max:
            return None
        return f"/{ai}/{m['cp']}{_dl_escape(m['r'])}"

    return conv


def _itip(m: re.Match[str]) -> str | None:
    if len(m["cp"]) + len(m["r"]) != 13 or _chars(m["s"]) > 20:
        return None
    return f"/8006/{_lead(m['cp'], m['r'])}{m['pp']}{m['tt']}/21/{_dl_escape(m['s'])}"


def _gtin_with(ai: str, max_len: int) -> _Conv:
    def conv(m: re.Match[str]) -> str | None:
        if len(m["cp"]) + len(m["r"]) != 13 or _chars(m["s"]) > max_len:
            return None
        return f"/01/{_lead(m['cp'], m['r'])}/{ai}/{_dl_escape(m['s'])}"

    return conv


def _cpi(m: re.Match[str]) -> str | None:
    if len(m["cp"]) + _chars(m["r"]) > 30:
        return None
    tail = f"/8011/{m['s']}" if m.groupdict().get("s") else ""
    return f"/8010/{m['cp']}{_dl_escape(m['r'])}{tail}"


def _itip_class(m: re.Match[str]) -> str | None:
    if len(m["cp"]) + len(m["r"]) != 13:
        return None
    return f"/8006/{_lead(m['cp'], m['r'])}{m['pp']}{m['tt']}"


def _pattern(scheme: str, body: str) -> re.Pattern[str]:
    return re.compile(rf"^urn:epc:{scheme}:(?P<cp>\d{{6,12}})\.{body}$")


_EPC: list[tuple[re.Pattern[str], _Conv]] = [
    (_pattern("id:sgtin", rf"(?P<r>\d{{1,7}})\.(?P<s>{_X}+)"), _sgtin),
    (_pattern("id:sscc", r"(?P<r>\d{5,11})"), _sized(17, lambda cp, r: f"/00/{_lead(cp, r)}")),
    (_pattern("id:sgln", rf"(?P<r>\d{{0,6}})\.(?P<s>{_X}+)"), _sgln),
    (_pattern("id:grai", rf"(?P<r>\d{{0,6}})\.(?P<s>{_X}+)"), _serialised("8003", 12, 16, "0")),
    (_pattern("id:giai", rf"(?P<r>{_X}+)"), _free("8004", 30)),
    (_pattern("id:gsrn", r"(?P<r>\d{5,11})"), _sized(17, lambda cp, r: f"/8018/{_keyed(cp, r)}")),
    (_pattern("id:gsrnp", r"(?P<r>\d{5,11})"), _sized(17, lambda cp, r: f"/8017/{_keyed(cp, r)}")),
    (_pattern("id:gdti", rf"(?P<r>\d{{0,6}})\.(?P<s>{_X}+)"), _serialised("253", 12, 17)),
    (_pattern("id:cpi", rf"(?P<r>{_CPI}+)\.(?P<s>\d{{1,12}})"), _cpi),
    (_pattern("id:sgcn", r"(?P<r>\d{0,6})\.(?P<s>\d{1,12})"), _serialised("255", 12, 12)),
    (_pattern("id:ginc", rf"(?P<r>{_X}+)"), _free("401", 30)),
    (_pattern("id:gsin", r"(?P<r>\d{4,10})"), _sized(16, lambda cp, r: f"/402/{_keyed(cp, r)}")),
    (
        _pattern("id:itip", rf"(?P<r>\d{{1,7}})\.(?P<pp>\d\d)\.(?P<tt>\d\d)\.(?P<s>{_X}+)"),
        _itip,
    ),
    (_pattern("id:upui", rf"(?P<r>\d{{1,7}})\.(?P<s>{_X}+)"), _gtin_with("235", 28)),
    (_pattern("id:pgln", r"(?P<r>\d{0,6})"), _sized(12, lambda cp, r: f"/417/{_keyed(cp, r)}")),
    (_pattern("class:lgtin", rf"(?P<r>\d{{1,7}})\.(?P<s>{_X}+)"), _gtin_with("10", 20)),
    (
        _pattern("idpat:sgtin", r"(?P<r>\d{1,7})\.\*"),
        _sized(13, lambda cp, r: f"/01/{_lead(cp, r)}"),
    ),
    (
        _pattern("idpat:grai", r"(?P<r>\d{0,6})\.\*"),
        _sized(12, lambda cp, r: f"/8003/{_keyed('0' + cp, r)}"),
    ),
    (
        _pattern("idpat:gdti", r"(?P<r>\d{0,6})\.\*"),
        _sized(12, lambda cp, r: f"/253/{_keyed(cp, r)}"),
    ),
    (
        _pattern("idpat:sgcn", r"(?P<r>\d{0,6})\.\*"),
        _sized(12, lambda cp, r: f"/255/{_keyed(cp, r)}"),
    ),
    (_pattern("idpat:cpi", rf"(?P<r>{_CPI}+)\.\*"), _cpi),
    (_pattern("idpat:itip", r"(?P<r>\d{1,7})\.(?P<pp>\d\d)\.(?P<tt>\d\d)\.\*"), _itip_class),
    (
        _pattern("idpat:upui", r"(?P<r>\d{1,7})\.\*"),
        _sized(13, lambda cp, r: f"/01/{_lead(cp, r)}"),
    ),
]


def _epc_to_dl(uri: str) -> str | None:
    for pattern, convert in _EPC:
        m = pattern.match(uri)
        if m is not None:
            path = convert(m)
            return None if path is None else GS1_RESOLVER + path
    return None


# --- Digital Link URIs -> constrained canonical form -----------------------------------------

_SHORT_NAMES = {
    "gtin": "01", "itip": "8006", "cpid": "8010", "gln": "414", "party": "417", "gsrnp": "8017",
    "gsrn": "8018", "gcn": "255", "sscc": "00", "gdti": "253", "ginc": "401", "gsin": "402",
    "grai": "8003", "giai": "8004", "cpv": "22", "lot": "10", "ser": "21",
}  # fmt: skip
# Primary keys in the order the reference implementation looks for them.
_PRIMARY = ("00", "01", "253", "255", "401", "402", "414", "417", "8003", "8004", "8006", "8010",
            "8017", "8018")  # fmt: skip
_V = r"(?:%[0-9A-Fa-f]{2}|[\"'\-.0-9;-?A-Z_a-z])"  # a Digital Link value character
_CANONICAL = re.compile(
    "^/(?:"
    + "|".join(
        (
            r"00/\d{18}",
            rf"01/\d{{14}}(?:/21/{_V}{{0,20}}|/10/{_V}{{0,20}}|/235/{_V}{{0,28}})?",
            rf"253/\d{{13}}{_V}{{0,17}}",
            r"255/\d{13}\d{0,12}",
            rf"401/{_V}{{0,30}}",
            r"402/\d{17}",
            rf"414/\d{{13}}(?:/254/{_V}{{0,20}})?",
            r"417/\d{13}",
            rf"8003/\d{{14}}{_V}{{0,16}}",
            rf"8004/{_V}{{0,30}}",
            rf"8006/\d{{18}}(?:/21/{_V}{{0,20}}|/10/{_V}{{0,20}})?",
            r"8010/(?:%2[3Ff]|[#\-/0-9A-Z]){0,30}(?:/8011/\d{0,12})?",
            r"8017/\d{18}",
            r"8018/\d{18}",
        )
    )
    + ")$"
)
_DL = re.compile(r"^https?://[^/?#]*(?P<path>/[^?#]*)(?:\?[^#]*)?(?P<frag>#.*)?$")


def _dl_canonical(uri: str) -> str | None:
    m = _DL.match(uri)
    if m is None or m["frag"] is not None:
        return None
    segments = [_SHORT_NAMES.get(s, s) for s in m["path"].split("/")[1:]]
    start = next(
        (
            i
            for key in _PRIMARY
            for i in range(len(segments) - 1)
            if segments[i] == key and re.match(r"^\d{4}", segments[i + 1])
        ),
        None,
    )
    if start is None:
        return None
    segments = segments[start:]
    if segments[0] == "01" and re.fullmatch(r"\d{8}|\d{12}|\d{13}", segments[1]):
        segments[1] = segments[1].zfill(14)  # GTIN-8/12/13 as GTIN-14
    pairs = [segments[i : i + 2] for i in range(2, len(segments), 2)]
    # Only the finest level: no consumer product variant, no lot when a serial is present.
    pairs = [p for p in pairs if p[0] != "22"]
    if any(p[0] == "21" for p in pairs):
        pairs = [p for p in pairs if p[0] != "10"]
    path = "/" + "/".join(segments[:2] + [part for pair in pairs for part in pair])
    return GS1_RESOLVER + path if _CANONICAL.match(path) else None


def canonical_gs1_uri(uri: str) -> str | None:
    """The constrained canonical GS1 Digital Link URI of an identifier, or None if ``uri`` is
    not a GS1 key in a form this knows (EPC pure identity, class or pattern URI; Digital Link
    URI on any domain, long or short key names). CBV 2.0 event hash rules 17-18.

    >>> canonical_gs1_uri("urn:epc:id:sscc:4012345.0000000333")
    'https://id.gs1.org/00/040123450000003338'
    """
    if uri.startswith("urn:epc:"):
        return _epc_to_dl(uri)
    if uri.startswith(("https://", "http://")):
        return _dl_canonical(uri)
    return None
