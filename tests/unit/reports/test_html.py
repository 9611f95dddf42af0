"""The report page: verdict and reasons up front, facts, legs table, excursions with their
acknowledgements, times in the zone asked for (and the zone stated), the audit head; nothing
external, everything escaped. Read back with the standard library's HTML parser."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from zoneinfo import ZoneInfoNotFoundError

import pytest

from reports import Clock, render_report_html
from reports.render import format_duration, localise_times
from tests.unit.reports.sample import sample_report


class _Page(HTMLParser):
    """Text by element id, table rows by table id, and every attribute value seen."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, list[str]] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.attrs: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self._open: list[tuple[str, str | None]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        if tag == "br" and self._cell is not None:
            self._cell.append(" ")
        if tag in ("br", "meta", "col", "circle", "rect", "line", "polyline", "polygon"):
            return
        self._open.append((tag, a.get("id")))
        if a.get("id"):
            self.by_id.setdefault(a["id"] or "", [])
        if tag == "table":
            self._table = a.get("id")
            self.rows.setdefault(self._table or "", [])
        elif tag == "tr" and self._table is not None:
            self.rows[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.rows[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "table":
            self._table = None
        while self._open:
            t, _ = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self._open:
            if ident:
                self.by_id[ident].append(data)
        if self._cell is not None:
            self._cell.append(data)

    def text(self, ident: str) -> str:
        return " ".join("".join(self.by_id[ident]).split())


def page(zone: str = "Asia/Shanghai") -> _Page:
    return _Page(render_report_html(sample_report(zone)))


def test_verdict_and_reasons_come_first() -> None:
    html = render_report_html(sample_report())
    p = _Page(html)
    assert p.text("verdict-word") == "EXCURSION"
    assert "outside its profile's limits" in p.text("verdict")
    # The reason's UTC time (03:50Z) is shown in the page's zone: 11:50 in Shanghai.
    assert "back within limits at 2026-09-22 11:50:00; above 4 degC for 30 min" in p.text("reasons")
    assert html.index('id="verdict"') < html.index('id="facts"') < html.index('id="legs"')


def test_facts_and_the_zone_are_stated() -> None:
    p = page()
    facts = dict(row for row in p.rows["facts-table"] if len(row) == 2)
    assert facts["Shipment id"] == "SHP-汕头-0042"
    assert facts["Origin"] == "汕头市 Shantou"
    assert facts["Allowed range"] == "0 to 4 °C"
    assert facts["Custody"] == "2026-09-22 08:00 to 2026-09-23 15:40, 5 legs"
    assert p.text("time-zone") == "Asia/Shanghai"
    assert "(UTC+08:00)" in p.text("times")
    # The same report in UTC: every time moves by 8 hours and the page says so.
    utc = page("UTC")
    assert utc.text("time-zone") == "UTC" and "(UTC+00:00)" in utc.text("times")
    assert dict(r for r in utc.rows["facts-table"] if len(r) == 2)["Custody"].startswith(
        "2026-09-22 00:00"
    )


def test_legs_table() -> None:
    rows = page().rows["legs-table"]
    header, *legs = rows
    assert header[:3] == ["#", "Held by, where", "From, to"]
    assert "MKT °C" in header and "Out of range" in header
    assert [r[0] for r in legs] == ["1", "2", "3", "4", "5"]
    first = legs[0]
    assert first[1].startswith("truck-st-01 · main (product probe)")
    assert "scanned in by driver 陈" in first[1]
    assert first[2] == "2026-09-22 08:00 to 16:00"
    # readings, min, max, mean, MKT, out of range, unmonitored, verdict + excursions
    assert first[3:] == ["480", "2.6", "6.8", "3.3", "3.4", "30 min", "0", "excursion E1 E2"]
    assert legs[1][1].startswith("truck-st-01 · dock (unmonitored)")
    assert legs[1][3:] == ["", "", "", "", "", "0", "10 min", "compliant"]
    assert legs[3][2] == "2026-09-22 16:40 to 2026-09-23 12:40"  # another day: the date too


def test_excursions_with_their_acknowledgements() -> None:
    rows = page().rows["excursions-table"][1:]
    assert [r[0] for r in rows] == ["E1", "E2", "E3"]
    assert rows[0][-1] == "not acknowledged"
    # Every acknowledgement, oldest first: who, when, the decision, the root cause, the comment.
    assert rows[1][-1] == (
        "1. qa.wang, 2026-09-22 13:00 product quarantined root cause: door left open "
        "“probe in the door draught”"  # (two <div>s: no space between)
        "2. qa.李, 2026-09-22 15:00 product released “product checked: released”"
    )
    p = page()
    assert "ack-2-1" in p.by_id and "ack-2-2" in p.by_id
    assert "back in range 11:50" in rows[1][3] and rows[1][4] == "30 min"
    assert "no registry record to acknowledge" in rows[2][-1]


def test_audit_head_is_printed() -> None:
    assert page().text("audit-head") == (
        "Audit chain head at printing: entry 1234, SHA-256 " + "9f" * 32
    )


def test_the_page_references_nothing_outside_itself() -> None:
    html = render_report_html(sample_report())
    p = _Page(html)
    assert "script" not in p.tags and "img" not in p.tags and "link" not in p.tags
    assert not [v for k, v in p.attrs if k in ("src", "href", "xlink:href", "action")]
    assert not re.search(r"(?i)\b(https?:|//[a-z0-9])|@import|url\(", html)
    csp = next(v for k, v in p.attrs if k == "content" and "default-src" in v)
    assert csp.startswith("default-src 'none'")
    assert {"temperature-chart", "route-map", "legs-table", "verdict"} <= set(p.by_id)


def test_text_from_records_is_escaped() -> None:
    evil = replace(
        sample_report(),
        shipment_id='<script>alert("x")</script>',
        facts=(("Description", "<img src=x onerror=alert(1)>"),),
    )
    html = render_report_html(evil)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(ZoneInfoNotFoundError):
        render_report_html(sample_report("Mars/Olympus_Mons"))


def test_durations_and_local_times() -> None:
    assert [format_duration(s) for s in (None, 0, 40, 600, 3900, 200_000)] == [
        "", "0", "40 s", "10 min", "1 h 05 min", "2 d 07 h",
    ]  # fmt: skip
    clock = Clock("Europe/Berlin")
    # Summer time (+02:00) in September; a January time shows its own offset against it.
    assert localise_times("at 2026-09-22T03:50:00Z, end", clock) == "at 2026-09-22 05:50:00, end"
    summer = 1_790_035_200_000
    winter = summer - 240 * 86_400_000
    assert clock.time(winter, ref_ms=summer).endswith("(UTC+01:00)")
    assert clock.time(summer, ref_ms=summer) == "2026-09-22 02:00"
