"""``coldchain.lineprotocol`` is byte-identical to ``influxdb_client.Point.to_line_protocol()``.

Where the two could reasonably differ, the choice is pinned below with the reason; each reason was
checked against a real ``influxd`` 1.6 (the server the integration tests run), writing with
``precision=ms`` and reading the point back.
"""

# mypy: allow-untyped-calls

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from coldchain.lineprotocol import escape_key, escape_measurement, format_fields, line, series_key

# Every character line protocol treats specially, mixed with arbitrary unicode.
SPECIAL = [*',= "\\\n\t\r#', "é", "温", "🧊", "\x00", "\u2028", "a", "Z", "0"]
# Special-heavy strings (trailing backslashes, separators) or arbitrary unicode, half and half.
text = st.text(alphabet=st.sampled_from(SPECIAL), max_size=10) | st.text(max_size=10)
measurements = st.text(alphabet=st.sampled_from(SPECIAL), min_size=1, max_size=10) | st.text(
    min_size=1, max_size=10
)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
field_values = st.one_of(
    st.none(),
    st.booleans(),
    int64,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1e16, 1e-7, 123456789.0, 2.5e-300, 1.7976931348623157e308]),
    text,
)
tags = st.dictionaries(text, st.none() | text, max_size=5)
fields = st.dictionaries(text, field_values, max_size=6)
timestamps = st.none() | st.integers(min_value=0, max_value=2**53)

FAST = settings(max_examples=250, deadline=None)


def reference(
    measurement: str, tag_set: dict[str, str | None], field_set: dict[str, object], ts: int | None
) -> str:
    point = Point(measurement)
    for tag_key, tag_value in tag_set.items():
        point.tag(tag_key, tag_value)
    for field_key, field_value in field_set.items():
        point.field(field_key, field_value)
    if ts is not None:
        point.time(ts, WritePrecision.MS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # Point warns about a leading '#'
        return str(point.to_line_protocol())


def ours(
    measurement: str, tag_set: dict[str, str | None], field_set: dict[str, object], ts: int | None
) -> str:
    out = line(series_key(measurement, tag_set), field_set, ts)  # type: ignore[arg-type]
    return "" if out is None else out


@FAST
@given(measurements, tags, fields, timestamps)
def test_byte_identical_to_point(
    measurement: str, tag_set: dict[str, str | None], field_set: dict[str, object], ts: int | None
) -> None:
    assert ours(measurement, tag_set, field_set, ts) == reference(
        measurement, tag_set, field_set, ts
    )


@FAST
@given(fields)
def test_format_fields_matches_point_field_set(field_set: dict[str, object]) -> None:
    expected = reference("m", {}, field_set, None)
    body = format_fields(field_set)  # type: ignore[arg-type]
    assert (f"m {body}" if body else "") == expected


@FAST
@given(measurements, tags, fields, timestamps)
def test_no_raw_line_break_outside_string_fields(
    measurement: str, tag_set: dict[str, str | None], field_set: dict[str, object], ts: int | None
) -> None:
    """A newline or carriage return in a name, key or tag value never splits the line."""
    str_free = {k: v for k, v in field_set.items() if not isinstance(v, str)}
    out = ours(measurement, tag_set, str_free, ts)
    assert "\n" not in out and "\r" not in out


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_float_round_trips(value: float) -> None:
    """The trimmed text still parses back to the same float (and never carries an 'i')."""
    text_value = format_fields({"f": value})[2:]
    assert not text_value.endswith("i")
    assert float(text_value) == value


def test_pinned_examples() -> None:
    assert line(series_key("temperature", {"b": "2", "a": "x y"}), {"v": 1.0}, 5) == (
        "temperature,a=x\\ y,b=2 v=1 5"
    )
    assert format_fields({"b": True, "a": 3, "c": 'say "hi" \\', "d": -0.5}) == (
        'a=3i,b=true,c="say \\"hi\\" \\\\",d=-0.5'
    )
    assert escape_measurement("a,b c=d") == "a\\,b\\ c=d"  # '=' is legal in a measurement
    assert escape_key("a,b c=d") == "a\\,b\\ c\\=d"


def test_empty_tag_values_are_dropped() -> None:
    """Point drops a tag whose key or value is empty (or None); so do we, and that is correct:
    influxd answers ``m,k= f=1`` with HTTP 400 "missing tag value", failing the whole batch."""
    assert series_key("m", {"k": "", "": "v", "n": None, "ok": "1"}) == "m,ok=1"
    assert reference("m", {"k": "", "": "v", "n": None, "ok": "1"}, {"f": 1}, None) == "m,ok=1 f=1i"


def test_newline_in_keys_and_tag_values_is_escaped_to_backslash_n() -> None:
    """Point writes a newline (tab, CR) in a name, key or tag value as the two characters ``\\n``.

    Line protocol has no escape for a newline there, so no encoding is lossless; influxd 1.6 stores
    ``a\\nb`` (backslash, n) literally. The alternative, a raw newline, would end the line and
    corrupt the rest of the batch. We keep Point's choice. Identifiers (coldchain.identifiers)
    cannot contain these characters, so telemetry never meets this case.
    """
    assert series_key("m\n", {"k\t": "a\nb\r"}) == "m\\n,k\\t=a\\nb\\r"


def test_newline_in_string_field_stays_raw() -> None:
    """Inside a quoted string field a raw newline is legal for influxd 1.x (its scanner tracks
    quotes; writing ``s="a<LF>b"`` reads back ``"a\\nb"`` exactly), so, like Point, we keep it."""
    assert format_fields({"s": "a\nb"}) == 's="a\nb"'


def test_trailing_backslash_in_tag_value_gets_a_space() -> None:
    """A tag value ending in a backslash would escape the separator after it. Point appends a
    space (influxd then reads the value as ``a `` — lossy, but the line parses); we match it.
    Identifiers cannot contain a backslash."""
    assert series_key("m", {"k": "a\\"}) == "m,k=a\\ "
    assert reference("m", {"k": "a\\"}, {"f": 1.0}, 7) == "m,k=a\\  f=1 7"


def test_non_finite_floats_and_none_fields_are_dropped() -> None:
    assert format_fields({"a": math.nan, "b": math.inf, "c": -math.inf, "d": None, "e": 2}) == (
        "e=2i"
    )
    assert line("m", {"a": math.nan, "d": None}, 1) is None  # nothing left to write
    assert reference("m", {}, {"a": math.nan, "d": None}, 1) == ""


def test_integer_outside_int64_raises() -> None:
    """Deliberate difference: Point writes ``f=9223372036854775808i``, which influxd rejects with
    HTTP 400 ("value out of range") — and a 400 fails every point in the same write. We raise
    instead, at the caller that produced the value. The contract bounds every integer it accepts
    (seq <= 2**53, alarm codes <= 65535), so telemetry cannot reach this."""
    assert format_fields({"f": 2**63 - 1}) == "f=9223372036854775807i"
    assert format_fields({"f": -(2**63)}) == "f=-9223372036854775808i"
    with pytest.raises(ValueError, match="64-bit"):
        format_fields({"f": 2**63})
    with pytest.raises(ValueError, match="64-bit"):
        format_fields({"f": -(2**63) - 1})
    assert reference("m", {}, {"f": 2**63}, None) == "m f=9223372036854775808i"


def test_bool_is_not_an_integer() -> None:
    assert format_fields({"t": True, "f": False}) == "f=false,t=true"
