"""How far ``EvaluateStage``'s recompute reads a real influxd: up to what the stage has been fed
for the asset, never samples the writer stored that the stage has not taken yet
(docs/rules.md section 13, "Late data" and "Restart").

The writer runs ahead of the rules thread: when a recompute runs, InfluxDB may already hold
samples still queued for the stage. Read by the recompute, they put the compartment's state
ahead of the stream (each compartment of an asset at the moment its own read ran), so the
stream's next samples count as late and a sibling compartment read earlier looks silent (a data
gap that never was). Here InfluxDB's content and ``written_through`` are set by the test, so
the outcome does not depend on timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coldchain.contract import PointEncoder, Sample, ts_ms
from coldchain.rules import RulesEngine, load_presets
from coldchain.settings import InfluxSettings
from deploy.launcher import Services
from ingest.evaluate import Accepted, EvaluateStage
from ingest.spool import Spool, SpooledMessage
from registry import open_registry, upgrade
from simulators.loadgen import make_fleet
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000
MIN = 60_000
TRUCK, DEVICE = "load-truck-0000", "load-dev-0000"
FLEET = make_fleet(1)


def _sample(minute: int, c2_c: float = 3.0) -> Sample:
    ts = datetime.fromtimestamp((T0 + minute * MIN) / 1000, tz=UTC)
    temps = {"c1-air": -20.0, "c1-prod": -19.5, "c2-air": c2_c, "c2-prod": c2_c + 0.5}
    return Sample(ts=ts, seq=minute, temps_c=temps)


def _item(minute: int, row: int, c2_c: float = 3.0) -> Accepted:
    s = _sample(minute, c2_c)
    return Accepted(TRUCK, [s], row, DEVICE, ts_ms(s))


class _Setup:
    def __init__(self, tmp_path: Path, influxd_url: str, database: str) -> None:
        self.url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
        upgrade(self.url)
        self.influx = InfluxClient(InfluxSettings(url=influxd_url, database=database))
        self.influx.create_database()
        self.spool = Spool(tmp_path / "spool.sqlite3", synchronous="NORMAL", rules_journal=True)
        self.written = 0  # the writer's high-water spool row, as the test says

    def store(self, minutes: range, c2_c: float = 3.0) -> None:
        samples = [_sample(m, c2_c) for m in minutes]
        lines = PointEncoder(FLEET).encode(DEVICE, FLEET.assets[TRUCK], samples, T0)
        self.influx.write("\n".join(lines).encode())

    def stage(self, now_ms: int) -> EvaluateStage:
        return EvaluateStage(
            RulesEngine(FLEET, load_presets()),
            FLEET,
            open_registry(self.url),
            self.influx,
            annotate=lambda lines: None,
            written_through=lambda: self.written,
            clock_ms=lambda: now_ms,
            journal_since=self.spool.journal_since,
            journal_newest_since=self.spool.journal_newest_since,
            prune_journal=self.spool.prune_journal,
            recompute_interval_s=0.0,
        )

    def close(self) -> None:
        self.spool.close()
        self.influx.close()


@pytest.fixture
def setup(tmp_path: Path, services: Services, unique_name: str) -> Iterator[_Setup]:
    s = _Setup(tmp_path, services.influxd.url, unique_name)
    yield s
    s.close()


def test_a_restart_recompute_reads_only_what_was_acknowledged_before_it(setup: _Setup) -> None:
    now = T0 + 60 * MIN
    # Minutes 0..9 fed and checkpointed; 10..19 acknowledged (journal rows 11..20), then SIGKILL.
    first = setup.stage(now)
    journal = [SpooledMessage(T0, DEVICE, ["x"], T0 + m * MIN, T0 + m * MIN) for m in range(20)]
    assert setup.spool.append(journal, []) == 20
    setup.store(range(0, 20))
    first.submit_many(_item(m, m + 1) for m in range(10))
    for item in first._take():
        assert item is not None
        first._feed(item)
    first._save_checkpoint(prune=True)
    first._registry.close()

    # After the restart the writer stores minutes 20..59 (rows 21..60) before the rules
    # thread takes them: the restart recompute must stop at minute 19.
    second = setup.stage(now)
    second.resume(backlog_row=20)
    assert second._held == {TRUCK}
    setup.store(range(20, 60))
    setup.written = 60
    second._run_pending()
    assert second._pending == {} and second._held == set()
    for comp in ("c1", "c2"):
        assert second.engine.evaluator(TRUCK, comp).ts == T0 + 19 * MIN
    # Minutes 20..59 then stream on: none is late data, no compartment is silent.
    changes = []
    for m in range(20, 60):
        changes += second._feed(_item(m, m + 1))
        changes += second._tick()
    assert second._pending == {}, "samples fed after the recompute were taken as late data"
    assert changes == []
    assert second.recomputes_total == 2


def test_a_late_data_recompute_leaves_samples_not_fed_yet_to_the_stream(setup: _Setup) -> None:
    now = T0 + 90 * MIN
    stage = setup.stage(now)
    # Minutes 0..29 fed; the writer already stored 30..59, with c2 at 9 degC from 40 to 54.
    setup.store(range(0, 40))
    setup.store(range(40, 55), c2_c=9.0)
    setup.store(range(55, 60))
    setup.written = 60
    for m in range(30):
        assert stage._feed(_item(m, m + 1)) == []
    # Minute 10 again with another reading: late data, a recompute of the compartments.
    rewrite = Accepted(TRUCK, [_sample(10, 3.2)], 31, DEVICE, ts_ms(_sample(10)))
    stage._feed(rewrite)
    assert (TRUCK, "c2") in stage._pending
    stage._run_pending()
    assert stage._pending == {}
    assert stage.engine.evaluator(TRUCK, "c2").ts == T0 + 29 * MIN
    # The excursion in minutes 40..54 is found by streaming when they are fed: not late.
    changes = []
    for m in range(30, 60):
        changes += stage._feed(_item(m, m + 2, c2_c=9.0 if 40 <= m < 55 else 3.0))
    opened = [c.excursion for c in changes if c.kind == "opened"]
    assert opened and all(not e.detected_late for e in opened), opened
    assert {e.compartment_id for e in opened} == {"c2"}
    assert stage._pending == {}
