"""Issue 10's traceability flow end to end, on real mosquitto, influxd and uvicorn (loopback).

An integrator key registers a shipment over HTTP; the devices' telemetry and the custody scans
arrive over MQTT into a running ingest (rules engine on), plus one custody event over HTTP. The
shipment goes truck-a/c1 -> truck-a's dock -> store-1's dock (40 min on docks: a custody gap)
-> store-1/z1 (a 40-minute warm spell injected: a range excursion on the second monitored leg)
-> truck-b/c1 -> delivered. An operator key acknowledges the excursion; a regulator key scoped
to the shipper reads the trace (series and track), the CSV, the EPCIS export (schema-valid) and
the report (HTML and PDF), each read audited; a regulator of another shipper gets 404; an
expired key gets 401.

Deterministic: device times are fixed (minutes from T0 below); ingest's clock stands just after
the last of them, so the rules judge silence on device time, never on the wall clock's hour;
every outcome is waited for with a generous deadline. The API runs on the wall clock (key
expiry, acknowledgement times), and takes custody events up to 100 years old.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from api import create_app
from coldchain.contract.topics import device_topic
from coldchain.epcis import validate_epcis
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules import load_presets
from coldchain.settings import Settings, ValidationSettings
from deploy.launcher import Services
from ingest.service import IngestService
from registry import Registry, open_registry, wall_clock_ms
from tests.api_server import serving
from tests.harness import spine_settings, wait_for
from tests.pdf_tools import pdf_text
from timeseries.client import InfluxClient

pytestmark = pytest.mark.e2e

T0 = 1_789_948_800_000  # 2026-09-21T00:00:00Z
MIN = 60_000
END = 520  # the delivery, minute 520
WARM = range(250, 290)  # the injected warm spell in store-1/z1, minutes
SHIPMENT = "PO-2026/0042"
SHIPPER = "ACME Foods"


def m(minutes: float) -> int:
    return T0 + round(minutes * MIN)


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _compartment(cid: str) -> Compartment:
    return Compartment(
        id=cid,
        profile="chilled",
        sensors=(SensorSpec(id=f"{cid}-prod", probe="product"), SensorSpec(id=f"{cid}-air")),
    )


FLEET = Fleet(
    [
        Asset(id="truck-a", kind="vehicle", devices=("tcu-a",), compartments=(_compartment("c1"),)),
        Asset(id="store-1", kind="store", devices=("gw-1",), compartments=(_compartment("z1"),)),
        Asset(id="truck-b", kind="vehicle", devices=("tcu-b",), compartments=(_compartment("c1"),)),
    ]
)


def _temp(asset: str, minute: int) -> float:
    """Product temperature: about 2.5 degC (varying, or the stuck-probe check would fire), 6.5
    in store-1 during the warm spell (chilled: 0..4 degC, range after 20 min)."""
    if asset == "store-1" and minute in WARM:
        return 6.5
    return 2.5 + (0.0, 0.1, 0.2, 0.1)[minute % 4]


def _telemetry(asset: Asset) -> dict[str, Any]:
    """One backlog batch: a sample a minute for the whole journey (reefers run throughout)."""
    (comp,) = asset.compartments
    samples = []
    for i in range(END + 1):
        product = _temp(asset.id, i)
        sample: dict[str, Any] = {
            "ts": iso(m(i)),
            "seq": i,
            "temps_c": {f"{comp.id}-prod": product, f"{comp.id}-air": round(product - 0.3, 1)},
        }
        if asset.kind == "vehicle":  # driving east from Jieyang, 0.01 degrees a minute
            lon = 116.37 + 0.01 * i
            sample["position"] = {"lat": 23.55, "lon": round(lon, 4), "speed_kmh": 60.0}
        samples.append(sample)
    return {"v": 1, "device_id": asset.devices[0], "samples": samples}


def _scan(device: str, seq: int, minute: int, action: str, asset: str, comp: str | None) -> bytes:
    body = {
        "v": 1,
        "device_id": device,
        "ts": iso(m(minute)),
        "seq": seq,
        "type": "custody",
        "action": action,
        "shipment_id": SHIPMENT,
        "asset_id": asset,
        "compartment_id": comp,
        "actor": f"scanner on {asset}",
    }
    return json.dumps(body).encode()


class _Publisher:
    def __init__(self, port: int) -> None:
        self._c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-devices")
        self._c.connect("127.0.0.1", port)
        self._c.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        info = self._c.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=30)
        assert info.is_published(), topic

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()


@pytest.fixture
def stack(
    services: Services, unique_name: str, tmp_path: Path
) -> Iterator[tuple[str, Settings, Registry]]:
    """Ingest (rules on) and the API on uvicorn, on the same registry and InfluxDB database."""
    (tmp_path / "fleet.yaml").write_text(FLEET.to_yaml())
    settings = spine_settings(services, unique_name, tmp_path)
    # HTTP custody events at the fixed device times: accept them however old they are now.
    settings = settings.model_copy(
        update={"validation": ValidationSettings(max_sample_age_s=100 * 365 * 86400.0)}
    )
    InfluxClient(settings.influx).create_database()
    ingest = IngestService(settings, FLEET, clock_ms=lambda: m(END + 1))
    ingest.start()
    registry = open_registry(settings.registry_url)
    app = create_app(settings, registry=registry, fleet=FLEET, profiles=load_presets())
    try:
        with serving(app) as url:
            yield url, settings, registry
    finally:
        ingest.stop()
        registry.close()


def _h(token: str) -> dict[str, str]:
    return {"X-API-Key": token}


def test_integrator_devices_operator_and_regulators(
    stack: tuple[str, Settings, Registry], services: Services
) -> None:
    url, settings, registry = stack
    _, integrator = registry.keys.create("integrator", created_by="test", name="ERP")
    _, operator = registry.keys.create("operator", created_by="test", name="QA desk")
    reg_key, regulator = registry.keys.create("regulator", created_by="test", shippers=[SHIPPER])
    _, other = registry.keys.create("regulator", created_by="test", shippers=["Other Foods"])
    expires_ms = wall_clock_ms() + 1000
    _, expiring = registry.keys.create("regulator", created_by="test", expires_ms=expires_ms)
    devices = _Publisher(services.mosquitto.port)
    http = httpx.Client(base_url=url, timeout=60)
    try:
        # 1. The integrator registers the shipment.
        r = http.post(
            "/v1/shipments",
            json={"id": SHIPMENT, "profile": "chilled", "shipper": SHIPPER, "origin": "揭阳"},
            headers=_h(integrator),
        )
        assert r.status_code == 201, r.text

        # 2. Scans on truck-a and at store-1's dock, over MQTT.
        devices.send(device_topic("tcu-a", "events"), _scan("tcu-a", 0, 0, "load", "truck-a", "c1"))
        devices.send(
            device_topic("tcu-a", "events"), _scan("tcu-a", 1, 120, "unload", "truck-a", "c1")
        )
        devices.send(
            device_topic("gw-1", "events"), _scan("gw-1", 0, 121, "handover", "store-1", None)
        )
        assert wait_for(lambda: len(registry.custody_events(SHIPMENT)) == 3, 60)

        # 3. The warehouse system puts it into zone z1 after 40 min on the docks (HTTP).
        r = http.post(
            "/v1/custody-events",
            json={
                "event_id": "wms-7781",
                "shipment_id": SHIPMENT,
                "action": "load",
                "asset_id": "store-1",
                "compartment_id": "z1",
                "ts": iso(m(160)),
                "actor": "WMS putaway",
            },
            headers=_h(integrator),
        )
        assert r.status_code == 201, r.text

        # 4. Out of the store onto truck-b, delivered; and every device's telemetry.
        for device, seq, minute, action, asset, comp in (
            ("gw-1", 1, 398, "unload", "store-1", "z1"),
            ("tcu-b", 0, 400, "load", "truck-b", "c1"),
            ("tcu-b", 1, END, "deliver", "truck-b", None),
        ):
            devices.send(
                device_topic(device, "events"), _scan(device, seq, minute, action, asset, comp)
            )
        for asset in FLEET.assets.values():
            body = json.dumps(_telemetry(asset)).encode()
            devices.send(device_topic(asset.devices[0], "telemetry"), body)
        assert wait_for(lambda: len(registry.custody_events(SHIPMENT)) == 7, 60)

        def warm_spell() -> list[Any]:
            found = registry.find_excursions(asset_id="store-1", superseded=False)
            return [r for r in found if r.excursion.kind == "range"]

        def closed() -> bool:
            found = warm_spell()
            return bool(found) and found[0].excursion.end_ms is not None

        assert wait_for(closed, 60)
        assert ingest_drained(settings)
        (spell,) = warm_spell()
        exc = spell.excursion
        assert (exc.compartment_id, exc.start_ms) == ("z1", m(WARM.start))

        # 5. The operator acknowledges it.
        r = http.post(
            f"/v1/excursions/{exc.id}/acknowledgements",
            json={
                "disposition": "quarantined",
                "root_cause": "zone z1 door held open during putaway",
                "comment": "QA to sample two cases",
            },
            headers=_h(operator),
        )
        assert r.status_code == 201, r.text
        assert (
            http.post(
                f"/v1/excursions/{exc.id}/acknowledgements",
                json={"disposition": "released", "comment": "no"},
                headers=_h(regulator),
            ).status_code
            == 403
        )

        # 6. The shipper's regulator: trace with series and track.
        path = "/v1/shipments/PO-2026/0042"
        r = http.get(f"{path}/trace", headers=_h(regulator))
        assert r.status_code == 200, r.text
        trace = r.json()
        places = [(x["leg"]["asset_id"], x["leg"]["compartment_id"]) for x in trace["legs"]]
        assert places == [
            ("truck-a", "c1"),
            ("truck-a", None),
            ("store-1", None),
            ("store-1", "z1"),
            ("store-1", None),
            ("truck-b", "c1"),
        ]
        monitored = [x for x in trace["legs"] if x["leg"]["compartment_id"] is not None]
        for leg in monitored:
            assert leg["readings"] > 100 and leg["series"]["product"]["t_ms"], leg["leg"]
        truck_a, store, truck_b = monitored
        assert truck_a["track"]["t_ms"] and truck_b["track"]["t_ms"]  # the vehicles' GPS
        assert exc.id in store["excursion_ids"] and store["max_c"] == 6.5
        assert not truck_a["excursion_ids"] and not truck_b["excursion_ids"]
        assert trace["legs"][-1]["leg"]["to_ms"] == m(END)
        kinds = {e["kind"] for e in trace["excursions"]}
        assert {"range", "custody_gap"} <= kinds  # the warm spell; 40 min on the docks
        assert trace["verdict"] == "excursion"

        # ... the CSV, one row per leg.
        r = http.get(f"{path}/trace.csv", headers=_h(regulator))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["asset_id"] for row in rows] == [p[0] for p in places]
        assert rows[3]["max_c"] == "6.5" and exc.id in rows[3]["excursion_ids"]

        # ... the EPCIS export, valid against GS1's schema with formats and event hashes.
        r = http.get(f"{path}/epcis", headers=_h(regulator))
        assert r.status_code == 200 and r.headers["content-type"] == "application/ld+json"
        document = r.json()
        assert validate_epcis(document, check_event_ids=True) == []
        sensors = [
            e for e in document["epcisBody"]["eventList"] if e["bizStep"] == "sensor_reporting"
        ]
        exceptions = [
            e["sensorElementList"][0]["sensorReport"][0].get("exception") for e in sensors
        ]
        assert exceptions == [None, "ALARM_CONDITION", None]

        # ... and the report, as HTML and as PDF, showing the acknowledgement.
        r = http.get(f"{path}/report.html", params={"tz": "Asia/Shanghai"}, headers=_h(regulator))
        assert r.status_code == 200, r.text
        html = r.text
        assert '<span id="verdict-word">EXCURSION</span>' in html
        assert "zone z1 door held open during putaway" in html
        r = http.get(f"{path}/report.pdf", headers=_h(regulator))
        assert r.status_code == 200 and r.content.startswith(b"%PDF")
        text = " ".join(pdf_text(r.content, Path(settings.spool.path).parent).split())
        assert "Verdict: EXCURSION" in text and "product quarantined" in text

        # Every regulator read is in the read chain, with the key id.
        reads = [e.action for e in registry.trail.read_entries() if e.actor == reg_key.key_id]
        assert sorted(reads) == sorted(
            ["read.trace", "read.trace.csv", "read.epcis", "read.report.html", "read.report.pdf"]
        )
        assert registry.verify_audit_chain().ok and registry.trail.verify().ok

        # 7. Another shipper's regulator: the shipment does not exist for it.
        for sub in ("", "/trace", "/trace.csv", "/epcis", "/report.html", "/report.pdf"):
            r = http.get(f"{path}{sub}", headers=_h(other))
            assert (r.status_code, r.json()) == (
                404,
                {"detail": f"shipment {SHIPMENT!r} not found"},
            ), sub
        assert http.get("/v1/excursions", headers=_h(other)).json() == []

        # 8. An expired key: 401 for everything.
        assert wait_for(lambda: wall_clock_ms() > expires_ms, 30)
        for sub in ("", "/trace", "/epcis", "/report.html"):
            r = http.get(f"{path}{sub}", headers=_h(expiring))
            assert r.status_code == 401 and "expired" in r.json()["detail"], sub
    finally:
        http.close()
        devices.close()


def ingest_drained(settings: Settings) -> bool:
    """Every reading of the journey is in InfluxDB (3 assets x 2 probes x 521 minutes)."""
    client = InfluxClient(settings.influx)
    try:

        def stored() -> int:
            rows = client.query('SELECT count("temp_c") FROM "temperature"')
            return sum(int(s.values[0][1]) for s in rows)

        return wait_for(lambda: stored() == 3 * 2 * (END + 1), 60)
    finally:
        client.close()
