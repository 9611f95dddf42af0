"""docs/api.md's curl walk-through, run: every request it shows is sent to the app (the trace
reads need InfluxDB and are left to the integration tests) and answers 2xx, so the examples a
new integrator copies stay true."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from coldchain.fleet import load_fleet
from coldchain.rules import ProfileSet
from coldchain.rules.excursion import Excursion
from coldchain.settings import ApiSettings, Settings
from registry import Registry
from timeseries.client import InfluxClient

ROOT = Path(__file__).resolve().parents[3]
# 2026-09-21T08:10:00+08:00: a few minutes after the walk-through's custody event.
NOW_MS = 1_790_007_000_000 - 8 * 3_600_000 - 400_000


def _commands() -> list[list[str]]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("## Walk-through", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    tokens = shlex.split("\n".join(blocks), comments=True)
    variables = dict(t.split("=", 1) for t in tokens if re.fullmatch(r"[A-Z]+=.*", t, re.S))
    commands: list[list[str]] = []
    for token in tokens:
        if token == "curl":
            commands.append([])
        elif commands:
            commands[-1].append(re.sub(r"\$(\w+)", lambda m: variables[m[1]], token))
    return commands


@pytest.fixture
def client(
    registry: Registry, influx: InfluxClient, profiles: ProfileSet, tmp_path: Path
) -> Iterator[TestClient]:
    keys = {"int-7f3a...": "integrator", "op-...": "operator"}
    app = create_app(
        Settings(fleet_path=tmp_path / "unused.yaml", api=ApiSettings(keys=keys)),
        registry=registry,
        influx=influx,
        fleet=load_fleet(ROOT / "fleet" / "demo.yaml"),
        profiles=profiles,
        clock_ms=lambda: NOW_MS,
    )
    with TestClient(app) as c:
        yield c


def test_the_walk_through_works_as_written(client: TestClient, registry: Registry) -> None:
    # What the walk-through assumes exists: a shipment to cancel, an excursion to acknowledge.
    registry.create_shipment("PO-2027/0001", profile="chilled", actor="erp", shipper="ACME Foods")
    exc = Excursion(
        asset_id="truck-jy-01",
        compartment_id="rear",
        rule="range",
        kind="range",
        severity="warning",
        status="closed",
        start_ms=NOW_MS,
        end_ms=NOW_MS + 60_000,
        detected_ms=NOW_MS,
        id="6238bd42e7cbd578579c3359",
    )
    registry.upsert_excursion(exc)
    sent = 0
    for words in _commands():
        method, headers, body, url = "GET", {}, None, None
        it = iter(words)
        for word in it:
            if word == "-X":
                method = next(it)
            elif word == "-H":
                name, value = next(it).split(": ", 1)
                headers[name] = value
            elif word == "-d":
                body = next(it).encode()
            elif word in ("-o", "-D"):
                next(it)
            elif word.startswith("http"):
                url = word
        assert url is not None, words
        if "/trace" in url:
            continue
        r = client.request(method, url.replace("http://127.0.0.1:8080", ""), content=body,
                           headers=headers)  # fmt: skip
        assert r.status_code in (200, 201), (words, r.text)
        sent += 1
    assert sent == 7
    shipment = registry.get_shipment("PO-2026/0042")
    assert shipment is not None and (shipment.status, shipment.quantity) == ("in_custody", 11.0)
    cancelled = registry.get_shipment("PO-2027/0001")
    assert cancelled is not None and cancelled.status == "cancelled"
    assert registry.excursion_acknowledgements(exc.id)[0].disposition == "quarantined"
