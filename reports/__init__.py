"""The traceability report a regulator takes away: a ``ShipmentReport`` (data, built from a
trace by ``api.report.ReportService``) rendered as one self-contained HTML page or the same page
as PDF. Pure rendering: templates, inline SVG, WeasyPrint; no database or network.

    html = render_report_html(report)
    pdf = render_report_pdf(report)
"""

from reports.model import Acknowledgement, Clock, ReportExcursion, ReportLeg, ShipmentReport
from reports.render import render_report_html, render_report_pdf

__all__ = [
    "Acknowledgement",
    "Clock",
    "ReportExcursion",
    "ReportLeg",
    "ShipmentReport",
    "render_report_html",
    "render_report_pdf",
]
