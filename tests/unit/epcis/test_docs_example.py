"""docs/epcis.md's example document is what the code builds for the record it describes."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from coldchain.epcis import CustodyRecord, ShipmentRecord, epcis_document, validate_epcis
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules.excursion import Excursion
from coldchain.trace import Leg, LegReport

DOC = Path(__file__).resolve().parents[3] / "docs" / "epcis.md"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_the_documented_example_is_what_the_code_builds() -> None:
    fleet = Fleet(
        [
            Asset(
                id="truck-jy-01",
                kind="vehicle",
                devices=("truck-jy-01-tcu",),
                compartments=(
                    Compartment(
                        id="rear",
                        profile="chilled",
                        sensors=(SensorSpec(id="rear-prod", probe="product"),),
                    ),
                ),
            )
        ]
    )
    load, unload = ms("2026-09-21T08:00:00+08:00"), ms("2026-09-21T10:00:00+08:00")
    spike = Excursion(
        "truck-jy-01", "rear", "range", "range", "warning", "closed",
        ms("2026-09-21T08:40:00+08:00"), ms("2026-09-21T08:55:00+08:00"),
        ms("2026-09-21T08:41:00+08:00"), peak_c=9.4,
    )  # fmt: skip
    record = ShipmentRecord(
        shipment_id="106141412345678908",
        profile="chilled",
        as_of_ms=ms("2026-09-21T12:00:00+08:00"),
        custody=(
            CustodyRecord("load", load, "truck-jy-01", "rear", "driver Wang"),
            CustodyRecord("unload", unload, "truck-jy-01", "rear", "driver Wang"),
        ),
        legs=(
            LegReport(
                Leg("truck-jy-01", "rear", load, unload),
                readings=120,
                min_c=3.1,
                max_c=9.4,
                mean_c=4.6249,
                mkt_c=4.93,
                monitored_s=7200.0,
                out_of_range_s=900.0,
                excursion_ids=(spike.id,),
            ),
            LegReport(Leg("truck-jy-01", None, unload, None), unmonitored_s=7200.0),
        ),
        excursions=(spike,),
        shipper="Jieyang Foods",
        consignee="4012345000009",
    )
    built = epcis_document(
        record, base_uri="https://coldchain.example/id", fleet=fleet, tz=ZoneInfo("Asia/Shanghai")
    )
    [block] = re.findall(r"```json\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.S)
    assert json.loads(block) == built
    assert validate_epcis(built, check_event_ids=True) == []
