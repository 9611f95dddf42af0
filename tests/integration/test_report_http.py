"""The report endpoints against a real influxd and a real (SQLite, migrated) registry, with the
data of test_trace_series.py: SHP-S on truck-5/c1 leaving Shantou, a 5-minute spike (a
hard_high excursion, acknowledged here), delivered at 120. The trace is fetched too: series and
track present and bounded; the HTML and the PDF say the same; times in the zone asked for."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from coldchain.rules import load_presets
from coldchain.rules.mkt import mean_kinetic_temperature
from coldchain.series import MAX_BUCKETS_PER_LEG
from coldchain.settings import ApiSettings, Settings
from registry import Registry
from tests.integration.test_trace_series import (
    SPIKE,
    # The fixtures influx and registry, used by name (hence the F811s below).
    influx,  # noqa: F401
    m,
    registry,  # noqa: F401
)
from tests.integration.test_trace_service import FLEET
from tests.pdf_tools import page_ink, pdf_text
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

KEY = {"X-API-Key": "reg"}


@pytest.fixture
def client(registry: Registry, influx: InfluxClient) -> Iterator[TestClient]:  # noqa: F811
    registry.acknowledge_excursion(SPIKE.id, by="qa.wang", comment="probe checked, released")
    app = create_app(
        Settings(api=ApiSettings(keys={"reg": "regulator", "op": "operator"})),
        registry=registry,
        influx=influx,
        fleet=FLEET,
        profiles=load_presets(),
        clock_ms=lambda: m(200),
    )
    with TestClient(app) as c:
        yield c


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_trace_has_bounded_series_and_track(client: TestClient) -> None:
    body = client.get("/v1/shipments/SHP-S/trace", headers=KEY).json()
    (leg,) = body["legs"]
    product, track = leg["series"]["product"], leg["track"]
    assert 0 < len(product["t_ms"]) <= MAX_BUCKETS_PER_LEG
    assert 0 < len(track["t_ms"]) <= MAX_BUCKETS_PER_LEG
    assert max(product["max_c"]) == 10.0 and leg["max_c"] == 9.5
    assert leg["excursion_starts"][0]["excursion_id"] == SPIKE.id


def test_report_html(client: TestClient, registry: Registry) -> None:  # noqa: F811
    r = client.get("/v1/shipments/SHP-S/report.html", params={"tz": "Asia/Shanghai"}, headers=KEY)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    html = r.text
    text = _text(html)
    assert "Verdict: EXCURSION" in text
    assert "hard_limit hard_high on truck-5/c1 (critical): out of range 300 s" in text
    # T1 + 42 min = 14:42 UTC = 22:42 in Shanghai; the page states the zone.
    assert "all times in Asia/Shanghai (UTC+08:00)" in text
    assert "2026-09-21 22:42" in text
    assert "qa.wang" in text and "probe checked, released" in text
    # The legs table: truck-5, 120 readings, min 3.5, max 9.5, mean 3.75.
    row = re.search(r'<tr class="leg">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]
    assert cells[0] == "1" and cells[1].startswith("truck-5 · c1 (product probe)")
    mkt = mean_kinetic_temperature([3.5, 9.5], [6900.0, 300.0])
    # readings, min, max, mean (3.75 to one decimal), MKT, out of range, unmonitored
    assert cells[3:10] == ["120", "3.5", "9.5", "3.8", f"{mkt:.1f}", "5 min", "0"]
    # The route: the track (no fix at 59 left out) and the city it starts from.
    assert 'class="track"' in html and "Shantou 汕头" in html
    assert 'id="temperature-chart"' in html and 'class="excursion"' in html
    seq, head = registry.audit_head()
    assert f"entry <b>{seq}</b>, SHA-256 <code>{head}</code>" in html


def test_report_pdf_says_the_same(client: TestClient, tmp_path: Path) -> None:
    html = client.get("/v1/shipments/SHP-S/report.html", headers=KEY).text
    r = client.get("/v1/shipments/SHP-S/report.pdf", headers=KEY)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == 'attachment; filename="report-SHP-S.pdf"'
    text = " ".join(pdf_text(r.content, tmp_path).split())
    verdict = re.search(r'id="verdict-word">([A-Z]+)<', html)
    assert verdict is not None and f"Verdict: {verdict.group(1)}" in text
    assert "all times in UTC (UTC+00:00)" in text  # no tz: UTC, and said so
    assert "汕头" in text  # the route's city label, a Han glyph in the PDF
    _, ink = page_ink(r.content, tmp_path)
    assert ink > 0.02


def test_client_mistakes_are_4xx(client: TestClient) -> None:
    r = client.get("/v1/shipments/SHP-S/report.html", params={"tz": "Mars/Olympus"}, headers=KEY)
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "query parameter 'tz': unknown time zone 'Mars/Olympus': give an IANA name such as "
        "Asia/Shanghai"
    )
    r = client.get("/v1/shipments/SHP-S/report.pdf", params={"tz": "../../etc/passwd"}, headers=KEY)
    assert r.status_code == 422 and "unknown time zone" in r.text
    for ext in ("html", "pdf"):
        r = client.get(f"/v1/shipments/NOPE/report.{ext}", headers=KEY)
        assert (r.status_code, r.json()) == (404, {"detail": "shipment 'NOPE' not found"})
    assert client.get("/v1/shipments/SHP-S/report.html").status_code == 401


def test_an_id_with_a_slash(client: TestClient, registry: Registry) -> None:  # noqa: F811
    # Shipment ids may hold "/" (a customer reference): the report routes take the id as a path.
    registry.create_shipment("PO-2026/0042", profile="chilled", actor="planner", created_ms=m(0))
    registry.record_custody_event("PO-2026/0042", "load", "truck-5", "c1", ts_ms=m(0), actor="d")
    r = client.get("/v1/shipments/PO-2026/0042/report.html", headers=KEY)
    assert r.status_code == 200, r.text
    assert '<span id="shipment-id">PO-2026/0042</span>' in r.text
    r = client.get("/v1/shipments/PO-2026%2F0042/report.pdf", headers=KEY)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="report-PO-2026_0042.pdf"'


def test_every_acknowledgement_is_in_the_report(
    client: TestClient,
    registry: Registry,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The fixture's acknowledgement, then an operator's decision over HTTP: the second appends.
    r = client.post(
        f"/v1/excursions/{SPIKE.id}/acknowledgements",
        json={
            "disposition": "quarantined",
            "root_cause": "compressor relay stuck",
            "comment": "QA to sample two pallets",
        },
        headers={"X-API-Key": "op"},
    )
    assert r.status_code == 201, r.text
    html = client.get("/v1/shipments/SHP-S/report.html", headers=KEY).text
    cell = re.search(r'<tr class="excursion" id="excursion-1">.*?</tr>', html, re.S)
    assert cell is not None
    text = _text(cell.group(0))
    first, second = text.index("qa.wang"), text.index("product quarantined")
    assert first < second  # oldest first
    assert "probe checked, released" in text and "root cause: compressor relay stuck" in text
    assert "QA to sample two pallets" in text
    assert 'id="ack-1-1"' in cell.group(0) and 'id="ack-1-2"' in cell.group(0)
    pdf = client.get("/v1/shipments/SHP-S/report.pdf", headers=KEY).content
    flat = " ".join(pdf_text(pdf, tmp_path).split())
    for said in ("probe checked, released", "product quarantined", "compressor relay stuck"):
        assert said in flat, said
