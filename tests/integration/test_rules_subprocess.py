"""``rules.mode = "subprocess"`` (ingest/rules_child.py) on the launcher's mosquitto and influxd:
the rules in a child process of ingest find exactly what they find in ingest's thread, checkpoint
and resume like it, and never outlive ingest.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from coldchain.contract import device_topic
from coldchain.fleet import load_fleet
from coldchain.settings import RulesSettings, Settings
from deploy.launcher import Services
from ingest.evaluate import CHECKPOINT_KEY
from ingest.rules_child import RulesChild
from ingest.service import IngestService
from registry import open_registry
from tests.e2e.ingest_process import IngestProcess
from tests.harness import spine_settings, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ASSET, DEVICE = "truck-nt-01", "truck-nt-01-tcu"  # chilled: range 0..4 degC, 20 min delay
MIN_MS = 60_000


def _settings(services: Services, name: str, root: Path, mode: str) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    base = spine_settings(services, name, root)
    shutil.copyfile(ROOT / "fleet" / "demo.yaml", base.fleet_path)
    return base.model_copy(update={"rules": RulesSettings(mode=mode)})  # type: ignore[arg-type]


def _batches(start_ms: int, temps: list[float], seq0: int = 0) -> list[bytes]:
    """Batch messages of ``DEVICE``, 10 samples a minute apart each (a batch feeds no clock
    watch: the device time hours behind is a backlog, not a skewed clock)."""
    out = []
    for k in range(0, len(temps), 10):
        samples = [
            {
                "ts": datetime.fromtimestamp((start_ms + i * MIN_MS) / 1000, UTC).isoformat(),
                "seq": seq0 + i + 1,
                "temps_c": {"main-air": temps[i], "main-prod": temps[i]},
            }
            for i in range(k, min(k + 10, len(temps)))
        ]
        out.append(json.dumps({"v": 1, "device_id": DEVICE, "samples": samples}).encode())
    return out


def _publish(port: int, payloads: list[bytes]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{os.getpid()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for p in payloads:
            client.publish(device_topic(DEVICE), p, qos=1).wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()


def _excursions(settings: Settings) -> list[tuple[Any, ...]]:
    with open_registry(settings.registry_url) as reg:
        return [
            (e.rule, e.compartment_id, e.start_ms, e.end_ms, e.status, e.detected_late)
            for r in reg.find_excursions(asset_id=ASSET)
            if (e := r.excursion)
        ]


def _outbox_keys(settings: Settings) -> list[str]:
    db = sqlite3.connect(settings.registry_url.removeprefix("sqlite:///"))
    try:
        return sorted(k for (k,) in db.execute("SELECT key FROM alert_outbox"))
    finally:
        db.close()


def _run(settings: Settings, payloads: list[bytes], services: Services) -> IngestService:
    service = IngestService(settings, load_fleet(settings.fleet_path))
    service.start(wait_connected_s=30)
    _publish(services.mosquitto.port, payloads)
    assert wait_for(lambda: service.metrics.received_messages == len(payloads), 60)
    assert service.wait_drained(60), service.stats()
    return service


@pytest.fixture
def start_ms() -> Iterator[int]:
    # Three hours back, to the minute: inside the accepted age, far from any gap on this clock.
    yield (int(time.time() * 1000) - 3 * 3_600_000) // MIN_MS * MIN_MS


def test_the_child_finds_what_the_thread_finds_and_resumes_from_its_checkpoint(
    services: Services, unique_name: str, tmp_path: Path, start_ms: int
) -> None:
    # 20 min in band, 40 min at 6 degC (range opens after 20), 30 min back in band (closes).
    temps = [3.0] * 20 + [6.0] * 40 + [3.0] * 30
    payloads = _batches(start_ms, temps)
    found, alerts = {}, {}
    for mode in ("inprocess", "subprocess"):
        settings = _settings(services, f"{unique_name}-{mode}", tmp_path / mode, mode)
        service = _run(settings, payloads, services)
        if mode == "subprocess":
            assert isinstance(service.evaluate, RulesChild)
            stats = service.stats()
            assert stats["rules_evaluated"] == len(payloads), stats
            assert stats["rules_child_alive"] == 1, stats
        service.stop(drain_timeout_s=30)
        found[mode] = _excursions(settings)
        alerts[mode] = _outbox_keys(settings)
    assert found["subprocess"] == found["inprocess"], found
    rules = [(x[0], x[4]) for x in found["subprocess"]]
    assert rules == [("range", "closed")], found
    start = found["subprocess"][0][2]
    assert start == start_ms + 20 * MIN_MS  # the first sample at 6 degC

    # A restart resumes from the checkpoint the child left at its stop: more in band, and
    # the excursion stays one, closed once (no reopening, no repeat).
    settings = _settings(
        services, f"{unique_name}-subprocess", tmp_path / "subprocess", "subprocess"
    )
    with open_registry(settings.registry_url) as reg:
        saved = reg.load_checkpoint(CHECKPOINT_KEY)
        assert saved is not None and int(saved["fed_through"]) >= len(payloads), saved
    # The same alerts, queued in the outbox by the child in its own transactions.
    assert alerts["subprocess"] == alerts["inprocess"]
    assert {k.split(":", 1)[1] for k in alerts["subprocess"]} >= {"opened", "closed"}
    more = _batches(start_ms + len(temps) * MIN_MS, [3.0] * 20, seq0=len(temps))
    service = _run(settings, more, services)
    stats = service.stats()
    service.stop(drain_timeout_s=30)
    assert stats["rules_evaluated"] == len(more), stats
    assert stats["rules_recomputes"] == 0, stats  # a clean stop: nothing to recompute
    assert _excursions(settings) == found["subprocess"]


def test_a_dead_child_is_replaced_and_one_that_keeps_dying_raises_rules_dead(
    services: Services, unique_name: str, tmp_path: Path, start_ms: int
) -> None:
    settings = _settings(services, unique_name, tmp_path, "subprocess")
    service = IngestService(settings, load_fleet(settings.fleet_path))
    service.start(wait_connected_s=30)
    problems = service.metrics.health.problems
    try:
        child = service.evaluate
        assert isinstance(child, RulesChild) and child.pid is not None
        first = child.pid
        os.kill(first, signal.SIGKILL)  # e.g. the OOM killer
        assert wait_for(lambda: child.restarts_total == 1 and child.wait_ready(0), 60)
        assert child.pid != first
        # The replacement evaluates what comes next: the excursion of this backlog is found.
        payloads = _batches(start_ms, [3.0] * 20 + [6.0] * 40 + [3.0] * 30)
        _publish(services.mosquitto.port, payloads)
        assert wait_for(lambda: service.metrics.received_messages == len(payloads), 60)
        assert service.wait_drained(60), service.stats()
        assert [(x[0], x[4]) for x in _excursions(settings)] == [("range", "closed")]
        assert "rules_dead" not in problems()
        assert service.stats()["rules_child_restarts"] == 1
        # A child that keeps dying is a defect, not a condition that passes: after three
        # replacements in ten minutes the fourth death is reported, not replaced.
        for n in (2, 3):
            os.kill(child.pid, signal.SIGKILL)
            assert wait_for(lambda n=n: child.restarts_total == n and child.wait_ready(0), 60)
        os.kill(child.pid, signal.SIGKILL)
        assert wait_for(lambda: "rules_dead" in problems(), 60), problems()
        assert "4 times in 10 min" in problems()["rules_dead"], problems()
        assert child.restarts_total == 3
    finally:
        service.stop()


def test_the_child_dies_with_a_killed_ingest(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    """A SIGKILLed ingest cannot stop its child: the kernel does (PR_SET_PDEATHSIG), so the
    restarted ingest's child is the only one writing the checkpoint."""
    settings = _settings(services, unique_name, tmp_path, "subprocess")
    ingest = IngestProcess(settings, tmp_path / "ingest.log", COLDCHAIN_RULES__MODE="subprocess")
    ingest.start()
    assert ingest.proc is not None
    try:
        parent = ingest.proc.pid
        # The rules child (and multiprocessing's resource tracker beside it).
        assert wait_for(lambda: any(b"spawn_main" in c for c in _children(parent).values()), 30)
        kids = _children(parent)
        (child,) = [k for k, c in kids.items() if b"spawn_main" in c]
        # The operator's start-up line names the mode and the child.
        log = (tmp_path / "ingest.log").read_text()
        assert f"rules subprocess (child process {child})" in log, log[-2000:]
        ingest.proc.send_signal(signal.SIGKILL)
        ingest.proc.wait(10)
        assert wait_for(lambda: not any(_alive(k) for k in kids), 30), f"{kids} outlived ingest"
    finally:
        if ingest.proc.poll() is None:
            ingest.proc.kill()
            ingest.proc.wait(10)


def _children(pid: int) -> dict[int, bytes]:
    """The child processes of ``pid`` (started by any of its threads) -> command line."""
    out: dict[int, bytes] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for kid in (task / "children").read_text().split():
            out[int(kid)] = Path(f"/proc/{kid}/cmdline").read_bytes()
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie is dead, waiting for a reaper
