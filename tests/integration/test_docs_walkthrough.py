"""The curl walk-through of docs/api.md (and README.md, which repeats it) run as written: its
shell blocks go to bash, against uvicorn on loopback with a real influxd and a real registry,
with the real ``curl`` and ``coldchain keys create`` (``uv run coldchain`` is this
interpreter's ``cli.main``). Every request must succeed (curl ``--fail-with-body``), and what
they leave behind is checked: the shipment, the acknowledgement, the report and EPCIS files. So
the examples a new integrator copies cannot drift from the API.

The server's clock stands at 2026-09-21T08:10:00+08:00, a few minutes after the walk-through's
custody event (the API takes events at most 30 days old); the truck's rear compartment read
3.0 degC, 5.0 from 08:06 to 08:08 (the excursion the operator acknowledges).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import create_app
from coldchain.epcis import validate_epcis
from coldchain.fleet import load_fleet
from coldchain.rules import load_presets
from coldchain.rules.excursion import Excursion
from coldchain.settings import InfluxSettings, Settings
from deploy.launcher import Services
from registry import Registry, open_registry, upgrade
from tests.api_server import serving
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_789_948_800_000  # 2026-09-21T00:00:00Z = 08:00 in Shanghai
MIN = 60_000
NOW_MS = T0 + 10 * MIN
EXCURSION_ID = "6238bd42e7cbd578579c3359"


def _section(path: Path, title: str) -> str:
    text = path.read_text(encoding="utf-8")
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _blocks(path: Path, title: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", _section(path, title), flags=re.S)


def _roles(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index("| role | may | sees |")
    return text[start : text.index("\n\n", start)]


def test_readme_repeats_the_walk_through_and_the_roles_table() -> None:
    api = _blocks(ROOT / "docs" / "api.md", "Walk-through: a business system with curl")
    readme = _blocks(ROOT / "README.md", "Walk-through: an integrator with curl")
    assert len(api) == 3 and readme == api
    assert _roles(ROOT / "README.md") == _roles(ROOT / "docs" / "api.md")
    assert [r.split("|")[1].strip(" `") for r in _roles(ROOT / "README.md").splitlines()[2:]] == [
        "admin",
        "operator",
        "integrator",
        "regulator",
    ]


@pytest.fixture
def server(
    services: Services, unique_name: str, tmp_path: Path
) -> Iterator[tuple[str, Registry, str]]:
    influx = InfluxClient(InfluxSettings(url=services.influxd.url, database=unique_name))
    influx.create_database()
    lines = []
    for minute in range(11):
        value = 5.0 if 6 <= minute <= 8 else 3.0
        for sensor, probe in (("rear-prod", "product"), ("rear-air", "air")):
            lines.append(
                f"temperature,asset=truck-jy-01,compartment=rear,probe={probe},sensor={sensor} "
                f"temp_c={value} {T0 + minute * MIN}"
            )
    influx.write("\n".join(lines).encode())
    registry_url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(registry_url)
    registry = open_registry(registry_url)
    app = create_app(
        Settings(fleet_path=ROOT / "fleet" / "demo.yaml", registry_url=registry_url),
        registry=registry,
        influx=influx,
        fleet=load_fleet(ROOT / "fleet" / "demo.yaml"),
        profiles=load_presets(),
        clock_ms=lambda: NOW_MS,
    )
    try:
        with serving(app) as url:
            yield url, registry, registry_url
    finally:
        registry.close()
        influx.close()


def test_the_walk_through_works_as_written(
    server: tuple[str, Registry, str], tmp_path: Path
) -> None:
    url, registry, registry_url = server
    # What the walk-through assumes exists: a shipment to cancel, an excursion to acknowledge
    # (the rules engine would have raised it from the readings above).
    registry.create_shipment("PO-2027/0001", profile="chilled", actor="erp", shipper="ACME Foods")
    registry.upsert_excursion(
        Excursion(
            asset_id="truck-jy-01",
            compartment_id="rear",
            rule="range",
            kind="range",
            severity="warning",
            status="closed",
            start_ms=T0 + 6 * MIN,
            end_ms=T0 + 9 * MIN,
            detected_ms=T0 + 9 * MIN,
            peak_c=5.0,
            profile="chilled",
            id=EXCURSION_ID,
        )
    )
    blocks = _blocks(ROOT / "docs" / "api.md", "Walk-through: a business system with curl")
    script = "\n".join(blocks)
    assert script.count("\nAPI=http://127.0.0.1:8080\n") == 0 and script.startswith(
        "API=http://127.0.0.1:8080\n"
    )
    script = script.replace("API=http://127.0.0.1:8080", f"API={url}", 1)
    prelude = f"""set -euo pipefail
uv() {{  # `uv run coldchain ...`: this interpreter's coldchain
  [ "$1" = run ] && shift; [ "$1" = coldchain ] && shift
  {sys.executable} -m cli.main "$@"
}}
curl() {{  # any 4xx/5xx fails the script; each call is counted
  echo call >> "$CURL_LOG"; command curl --fail-with-body --no-progress-meter "$@"; echo
}}
"""
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "curl.log"
    env = os.environ | {
        "COLDCHAIN_REGISTRY_URL": registry_url,
        "PYTHONPATH": str(ROOT),
        "CURL_LOG": str(log),
    }
    proc = subprocess.run(
        ["bash", "-c", prelude + script],
        cwd=work,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}"
    written = sum(len(re.findall(r"^curl ", b, flags=re.M)) for b in blocks)
    assert written == 14 and len(log.read_text().splitlines()) == written

    # Two keys, created by the CLI, used by the requests (an open API would have no keys).
    assert sorted(k.role for k in registry.keys.list()) == ["integrator", "operator"]
    shipment = registry.get_shipment("PO-2026/0042")
    assert shipment is not None and (shipment.status, shipment.quantity) == ("in_custody", 11.0)
    cancelled = registry.get_shipment("PO-2027/0001")
    assert cancelled is not None and cancelled.status == "cancelled"
    (ack,) = registry.excursion_acknowledgements(EXCURSION_ID)
    assert ack.disposition == "quarantined" and ack.role == "operator"
    assert (work / "trace.csv").read_text().startswith("shipment_id,")
    html = (work / "report.html").read_text(encoding="utf-8")
    assert '<span id="verdict-word">EXCURSION</span>' in html
    assert "rear door left open at the Shantou stop" in html
    assert (work / "report.pdf").read_bytes().startswith(b"%PDF")
    document = json.loads((work / "shipment.epcis.jsonld").read_text(encoding="utf-8"))
    assert validate_epcis(document, check_event_ids=True) == []
    assert document["epcisBody"]["eventList"][0]["eventTime"] == "2026-09-21T08:05:00.000+08:00"
