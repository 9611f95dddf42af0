"""Ingest start-up against real services: what the registry holds must not stop it.

Failure 5 of issue 8: a profile reassignment in the registry made ``build_engine`` raise
``TypeError`` at start-up (a pydantic model built positionally).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from coldchain.contract import device_topic
from deploy.launcher import Services
from ingest.service import IngestService
from registry import open_registry
from simulators.loadgen import LoadPublisher, make_fleet
from tests.harness import spine_settings, wait_for

pytestmark = pytest.mark.e2e


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_ms / 1000))


def test_ingest_starts_with_a_profile_reassignment_and_applies_it(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    fleet = make_fleet(1)  # load-truck-0000: c1 frozen, c2 chilled
    settings = spine_settings(services, unique_name, tmp_path)
    now = int(time.time() * 1000)
    with open_registry(settings.registry_url) as reg:
        # c2 now carries frozen goods: 3 degC is fine for chilled, a hard limit for frozen.
        reg.assign_profile(
            "load-truck-0000", "c2", "frozen", from_ms=now - 3_600_000, assigned_by="test"
        )
    service = IngestService(settings, fleet)
    service.start()
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    try:
        for i in range(3):
            payload = {
                "v": 1,
                "device_id": "load-dev-0000",
                "ts": _iso(now - (3 - i) * 60_000),
                "seq": i + 1,
                "temps_c": {"c2-air": 3.0, "c2-prod": 3.0},
            }
            pub.publish(device_topic("load-dev-0000"), json.dumps(payload).encode())
        assert pub.flush(30)
        assert service.wait_drained(60), service.stats()

        def hard_limit_raised() -> bool:
            with open_registry(settings.registry_url) as reg:
                found = reg.find_excursions(asset_id="load-truck-0000", compartment_id="c2")
            return any(r.excursion.kind == "hard_limit" for r in found)

        assert wait_for(hard_limit_raised, 30), "the reassigned profile's hard limit applies"
    finally:
        pub.close()
        service.stop()
