"""The PDF is the same report: same verdict and figures as text, Han characters rendered with an
embedded CJK font (Debian fonts-noto-cjk), page 1 not blank. WeasyPrint lays it out; poppler
reads it back."""

from __future__ import annotations

from pathlib import Path

from reports import render_report_html, render_report_pdf
from tests.pdf_tools import page_ink, pdf_fonts, pdf_text
from tests.unit.reports.sample import sample_report


def test_pdf_has_the_report_with_han_characters(tmp_path: Path) -> None:
    report = sample_report()
    pdf = render_report_pdf(report)
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf, tmp_path)
    assert "Verdict: EXCURSION" in text
    assert "outside its profile's limits" in text
    # Han characters came through as text (so as glyphs of a font that has them): the shipment
    # id, the origin, the city labels of the route map.
    for han in ("SHP-汕头-0042", "汕头市 Shantou", "酸奶", "广州"):
        assert han in text, han
    assert "Asia/Shanghai" in text and "9f9f9f9f" in text
    # The acknowledgement history, both entries (quarantined, then released).
    flat = " ".join(text.split())
    for said in ("product quarantined", "door left open", "qa.李", "product released"):
        assert said in flat, said
    fonts = pdf_fonts(pdf, tmp_path)
    assert any("CJK" in name and embedded for name, embedded in fonts), fonts
    assert all(embedded for _, embedded in fonts), fonts  # nothing left to the reader's machine


def test_pdf_page_one_renders(tmp_path: Path) -> None:
    png, ink = page_ink(render_report_pdf(sample_report()), tmp_path)
    assert png.stat().st_size > 1000
    # The verdict box, the facts and the chart: a few percent of the page is ink, not all of it.
    assert 0.02 < ink < 0.6, ink


def test_pdf_from_given_html_is_that_html(tmp_path: Path) -> None:
    report = sample_report("UTC")
    html = render_report_html(report)
    text = pdf_text(render_report_pdf(report, html), tmp_path)
    assert "all times in UTC (UTC+00:00)" in " ".join(text.split())
