"""docs/registry.md describes every Alembic revision, in the order they run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_every_revision_has_a_section_in_order() -> None:
    text = (ROOT / "docs" / "registry.md").read_text(encoding="utf-8")
    section = text.split("\n## Migrations\n", 1)[1].split("\n## ", 1)[0]
    described = re.findall(r"^### (\d{4}): ", section, flags=re.M)
    versions = ROOT / "registry" / "migrations" / "versions"
    revisions = sorted(p.name[:4] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert revisions[:8] == [f"{n:04d}" for n in range(1, 9)]
    assert described == revisions
    # No revision section left outside the Migrations section.
    elsewhere = text.replace(section, "")
    assert not re.findall(r"^### \d{4}: ", elsewhere, flags=re.M)
