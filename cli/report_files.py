"""Shipment reports and EPCIS exports written to a folder (``coldchain demo --report-dir``), by
the same service code the API serves them with (``api.report.ReportService``,
``api.epcis.EpcisExporter``): for every shipment ``<stem>.html``, ``<stem>.pdf`` and
``<stem>.epcis.jsonld``.

File names: a shipment id may hold ``/``, ``:``, ``%``, ``"``, ``*``, ``<``, ``>``, ``?`` and
other GS1 character set 82 characters no file system takes everywhere, so the stem is the id
percent-encoded as one path segment, as in the EPCIS URIs (``urllib.parse.quote(id, safe="")``:
``PO-2026/0042`` -> ``PO-2026%2F0042``, ``(00)3401`` -> ``%2800%293401``), a leading ``.``
as ``%2E`` (no hidden files). ``urllib.parse.unquote`` gives the id back. A stem longer than
180 characters (an id of many encoded characters) is cut to at most 163 (never inside an
escape) and ends in ``~`` and 16 hex of the id's SHA-256, so it stays unique and within every
file system's 255-byte limit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from api.epcis import EpcisExporter
from api.report import ReportService
from reports import render_report_html, render_report_pdf

__all__ = ["MAX_STEM", "ShipmentFiles", "report_file_stem", "write_shipment_reports"]

MAX_STEM = 180


def report_file_stem(shipment_id: str) -> str:
    """The file name stem of a shipment's report files (module docstring); never empty, no
    ``/``, no leading ``.``, at most ``MAX_STEM`` characters, distinct for distinct ids."""
    stem = quote(shipment_id, safe="")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if len(stem) > MAX_STEM:
        digest = hashlib.sha256(shipment_id.encode("utf-8")).hexdigest()[:16]
        cut = stem[: MAX_STEM - 17]
        escape = cut.find("%", len(cut) - 2)  # never half an escape
        stem = (cut if escape < 0 else cut[:escape]) + "~" + digest
    return stem


@dataclass(frozen=True, slots=True)
class ShipmentFiles:
    """The files written for one shipment."""

    shipment_id: str
    html: Path
    pdf: Path
    epcis: Path


def write_shipment_reports(
    shipment_ids: Iterable[str],
    directory: Path,
    *,
    reporter: ReportService,
    exporter: EpcisExporter,
    at_ms: int,
    printed_ms: int,
    zone: str = "UTC",
) -> list[ShipmentFiles]:
    """Write each shipment's report (HTML, PDF) and EPCIS document as of ``at_ms`` (device
    time) into ``directory`` (created if missing), times in ``zone``. Returns the paths.
    Raises as ``ReportService.report`` and ``EpcisExporter.document``; OSError."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for sid in shipment_ids:
        stem = report_file_stem(sid)
        files = ShipmentFiles(
            sid,
            directory / f"{stem}.html",
            directory / f"{stem}.pdf",
            directory / f"{stem}.epcis.jsonld",
        )
        report = reporter.report(sid, at_ms=at_ms, zone=zone, printed_ms=printed_ms)
        html = render_report_html(report)
        files.html.write_text(html, encoding="utf-8")
        files.pdf.write_bytes(render_report_pdf(report, html))
        document = exporter.document(sid, at_ms=at_ms, zone=zone, creation_ms=printed_ms)
        files.epcis.write_text(
            json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        out.append(files)
    return out
