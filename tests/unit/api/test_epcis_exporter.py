"""The EPCIS exporter: options checked at start-up naming the variable to fix; a time zone the
document cannot state is a 422."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from api.epcis import EpcisExporter
from coldchain.exceptions import ConfigError
from coldchain.fleet import Fleet
from coldchain.rules import ProfileSet
from coldchain.settings import ApiSettings, EpcisSettings, Settings, load_settings
from registry import Registry
from tests.unit.support import STORE
from timeseries.client import InfluxClient


def test_a_base_uri_that_is_no_http_uri_fails_at_loading() -> None:
    with pytest.raises(ConfigError, match="COLDCHAIN_EPCIS__BASE_URI"):
        load_settings(epcis={"base_uri": "truck-jy-01"})
    with pytest.raises(ConfigError, match="COLDCHAIN_EPCIS__SSCC_COMPANY_PREFIX_LENGTH"):
        load_settings(epcis={"sscc_company_prefix_length": 13})


def test_the_exporter_refuses_what_the_document_builder_would() -> None:
    # Passes the settings' pattern, but "|" is no URI path character.
    settings = EpcisSettings(base_uri="https://acme.example/a|b")
    with pytest.raises(ConfigError, match=r"^COLDCHAIN_EPCIS__BASE_URI="):
        EpcisExporter(None, None, Fleet([]), settings)  # type: ignore[arg-type]
    EpcisExporter(None, None, Fleet([]), EpcisSettings())  # type: ignore[arg-type]


def test_a_zone_without_whole_minute_offsets_is_a_422(
    registry: Registry, influx: InfluxClient, profiles: ProfileSet, tmp_path: Path
) -> None:
    # Shanghai kept local mean time (+08:05:43) until 1901; EPCIS offsets are +hh:mm. A dock
    # leg in a store reads nothing from InfluxDB (closed here).
    t = -2_208_988_800_000  # 1900-01-01T00:00:00Z
    registry.create_shipment("OLD-1", profile="chilled", actor="test", created_ms=t)
    registry.record_custody_event("OLD-1", "load", "store-1", None, ts_ms=t, actor="d")
    app = create_app(
        Settings(fleet_path=tmp_path / "none.yaml", api=ApiSettings(keys={"k": "admin"})),
        registry=registry,
        influx=influx,
        fleet=Fleet([STORE]),
        profiles=profiles,
        clock_ms=lambda: 1_790_000_000_000,
    )
    with TestClient(app) as client:
        at = "1900-01-01T01:00:00Z"
        r = client.get(f"/v1/shipments/OLD-1/epcis?at={at}", headers={"X-API-Key": "k"})
        assert r.status_code == 200, r.text
        assert r.json()["epcisBody"]["eventList"][0]["eventTimeZoneOffset"] == "+00:00"
        r = client.get(
            f"/v1/shipments/OLD-1/epcis?at={at}&tz=Asia/Shanghai", headers={"X-API-Key": "k"}
        )
        assert r.status_code == 422
        assert r.json()["detail"].startswith("query parameter 'tz': time zone 'Asia/Shanghai'")
