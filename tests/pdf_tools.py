"""Reading a PDF back with poppler's command-line tools (Debian poppler-utils): its text, its
fonts, and page 1 rendered to PNG. For the report tests (unit and integration)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from PIL import Image

__all__ = ["page_ink", "pdf_fonts", "pdf_text"]


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: run scripts/bootstrap.sh (Debian poppler-utils)"
    return found


def _save(pdf: bytes, folder: Path) -> Path:
    path = folder / "report.pdf"
    path.write_bytes(pdf)
    return path


def pdf_text(pdf: bytes, folder: Path) -> str:
    """All text of the PDF (pdftotext, UTF-8)."""
    out = subprocess.run(
        [_tool("pdftotext"), "-enc", "UTF-8", str(_save(pdf, folder)), "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return out.stdout.decode("utf-8")


def pdf_fonts(pdf: bytes, folder: Path) -> list[tuple[str, bool]]:
    """(font name, embedded) of every font in the PDF (pdffonts)."""
    out = subprocess.run(
        [_tool("pdffonts"), str(_save(pdf, folder))],
        capture_output=True,
        check=True,
        timeout=60,
        text=True,
    )
    fonts = []
    for line in out.stdout.splitlines()[2:]:
        cols = line.split()
        # name, type words..., encoding, emb, sub, uni, object, id
        fonts.append((cols[0], cols[-5] == "yes"))
    return fonts


def page_ink(pdf: bytes, folder: Path) -> tuple[Path, float]:
    """Page 1 rendered at 50 dpi to PNG (pdftoppm), and the share of its pixels that are not
    white."""
    prefix = folder / "page"
    subprocess.run(
        [
            _tool("pdftoppm"),
            "-r",
            "50",
            "-f",
            "1",
            "-l",
            "1",
            "-png",
            "-singlefile",
            str(_save(pdf, folder)),
            str(prefix),
        ],
        check=True,
        timeout=60,
    )
    png = prefix.with_suffix(".png")
    with Image.open(png) as img:
        histogram = img.convert("L").histogram()  # pixels per grey level, 0 black .. 255 white
    return png, sum(histogram[:240]) / sum(histogram)
