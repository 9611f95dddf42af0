"""``coldchain demo``: the whole system on one machine, ending by itself in a couple of minutes.

Starts mosquitto and influxd (temporary, loopback), creates the registry, registers the demo
fleet and its shipments, runs ingest with the rules engine, replays a simulated day of reefer
trucks and cold stores with faults (accelerated), then reads everything back: readings
published vs stored per asset, dead letters, excursions found, and a traceability report per
shipment. ``--json`` prints the same summary as one JSON object.

It then scores what the rules engine raised (the registry's excursions and the traces' custody
gaps) against the scenario's expectations (simulators/scoring.py): ``found``, ``missed``
(declared, not raised) and ``false_alarms`` (raised, explained by nothing declared), under
``score`` in the JSON. The exit status is 0 only if every reading was stored once, ingest
drained, and the score has no miss and no false alarm.

Last, it writes every shipment's report and EPCIS export, as the API serves them, into
``--report-dir DIR`` (or ``reports/`` in ``--keep DIR``, or a new temporary folder it keeps):
``<shipment>.html``, ``<shipment>.pdf`` and ``<shipment>.epcis.jsonld``, the shipment id
percent-encoded into a safe file name (cli/report_files.py), and prints where (``report_dir``
in the JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="services, a simulated fleet day with faults, ingest, rules, report"
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--scenario", default="demo", help="library scenario name or YAML path")
    p.add_argument("--speedup", type=float, default=1440.0, help="simulated s per wall s")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", type=Path, help="keep data (services, registry, truth) in DIR")
    p.add_argument(
        "--report-dir",
        type=Path,
        metavar="DIR",
        help="write each shipment's report and EPCIS export here: <id>.html, <id>.pdf, "
        "<id>.epcis.jsonld, the id percent-encoded as a file name (PO-2026/0042 -> "
        "PO-2026%%2F0042; a leading '.' as %%2E; urllib.parse.unquote gives it back). "
        "Default: DIR/reports with --keep DIR, else a new temporary folder, kept and printed",
    )
    p.add_argument(
        "--report-tz",
        default="UTC",
        metavar="ZONE",
        help="IANA time zone of the reports' and exports' times (default UTC)",
    )
    p.set_defaults(func=run)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from api.report import UnknownTimeZone, check_zone

    # Bad report options fail now, not after the replay.
    try:
        check_zone(args.report_tz)
        if args.report_dir is not None:
            args.report_dir.mkdir(parents=True, exist_ok=True)
    except (UnknownTimeZone, OSError) as exc:
        print(f"coldchain demo: {exc}", file=sys.stderr)
        return 2
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return _run(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="coldchain-demo-") as tmp:
        return _run(args, Path(tmp))


def _load_scenario(name: str) -> Any:
    from simulators import library_scenario, load_scenario

    return load_scenario(name) if name.endswith((".yaml", ".yml")) else library_scenario(name)


def _run(args: argparse.Namespace, root: Path) -> int:
    from coldchain.settings import InfluxSettings, MqttSettings, Settings, SpoolSettings
    from deploy.launcher import Services
    from ingest.heap import settle_heap
    from ingest.service import IngestService
    from registry import open_registry, upgrade
    from simulators.publish import ReplayClock, ReplayProgress, replay_window, run_live
    from simulators.replay_clock import ingest_progress

    quiet = args.json
    t_wall = time.monotonic()
    scenario = _load_scenario(args.scenario)
    fleet = scenario.fleet()
    (root / "fleet.yaml").write_text(fleet.to_yaml())
    _say(quiet, "coldchain demo: starting mosquitto and influxd on loopback ...")
    with Services(root / "services") as services:
        settings = Settings(
            fleet_path=root / "fleet.yaml",
            registry_url=f"sqlite:///{root / 'registry.sqlite3'}",
            mqtt=MqttSettings(port=services.mosquitto.port, client_id="demo-ingest"),
            influx=InfluxSettings(url=services.influxd.url, retry_max_s=2.0),
            spool=SpoolSettings(path=root / "spool.sqlite3"),
        )
        # One process with its rules in a thread, whatever COLDCHAIN_RULES__MODE says: the
        # replay clock cannot cross into a child process, and forward mode has no workers here.
        if settings.rules.mode != "inprocess":
            _say(quiet, f"coldchain demo: rules.mode {settings.rules.mode} -> inprocess here")
            settings.rules.mode = "inprocess"
        upgrade(settings.registry_url)
        start, end = replay_window(scenario)
        with open_registry(settings.registry_url) as reg:
            _register_shipments(reg, scenario, start)
        # The rules judge silence (data gaps) and detection times on the replay's clock, which
        # a stall of the publisher or of ingest stops (simulators/replay_clock.py): on a busy
        # machine a fraction of a second is minutes of the day.
        progress = ReplayProgress(start)
        clock = ReplayClock(
            start, args.speedup, end, progress=progress, slack_s=scenario.sample_interval_s
        )
        service = IngestService(settings, fleet, clock_ms=clock)
        progress.follow(ingest_progress(service))
        settle_heap()  # as `coldchain ingest` does
        service.start()
        published = _PublishedReadings(fleet)
        _say(
            quiet,
            f"coldchain demo: replaying scenario {scenario.name!r} ({len(fleet.assets)} assets, "
            f"{scenario.duration_s / 3600:.0f} h) at {args.speedup:g}x ...",
        )
        clock.begin()
        stats = run_live(
            scenario,
            host="127.0.0.1",
            port=services.mosquitto.port,
            seed=args.seed,
            speedup=args.speedup,
            start=start,
            truth_path=root / "truth.json",
            on_publish=published.add,
            progress=progress,
        )
        _say(quiet, "coldchain demo: waiting for ingest and the rules engine to catch up ...")
        drained = service.wait_drained(120)
        ingest_stats = service.stats()
        dead = service.dead_letters()
        service.stop(drain_timeout_s=30)
        now_ms = int(time.time() * 1000)
        summary = _summarize(settings, fleet, services, published, dead, start, scenario, now_ms)
        report_dir = args.report_dir or (
            root / "reports"
            if args.keep
            else Path(tempfile.mkdtemp(prefix="coldchain-demo-reports-"))
        )
        _say(quiet, f"coldchain demo: writing reports and EPCIS exports to {report_dir} ...")
        written = _write_reports(settings, fleet, scenario, report_dir, args.report_tz, now_ms)
        summary["report_dir"] = str(report_dir.resolve())
        summary["report_files"] = written
        summary["publish"] = stats.to_dict()
        summary["ingest"] = ingest_stats
        summary["drained"] = drained
        summary["wall_s"] = round(time.monotonic() - t_wall, 1)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        from cli.report import render

        print(render(summary))
    # Where the reports are, also with --json (on stderr there: stdout is the JSON).
    print(
        f"Reports and EPCIS exports ({len(summary['report_files'])} shipments): "
        f"{summary['report_dir']}",
        file=sys.stderr if args.json else sys.stdout,
    )
    score = summary["score"]
    ok = drained and all(a["match"] for a in summary["assets"])
    ok = ok and score["missed"] == 0 and score["false_alarms"] == 0
    return 0 if ok else 1


def _register_shipments(reg: Any, scenario: Any, start: datetime) -> None:
    """What a dispatcher enters before the day: the shipments, and where each one starts."""
    t0 = int(start.timestamp() * 1000)
    for sh in scenario.shipments:
        reg.create_shipment(
            sh.id, profile=sh.profile, actor="dispatcher", description=sh.description, created_ms=t0
        )
        if sh.initial:
            store, zone = sh.initial.split("/", 1)
            reg.record_custody_event(
                sh.id, "load", store, zone, ts_ms=t0, actor="dispatcher", source="api"
            )


class _PublishedReadings:
    """Distinct (sensor, device time) readings per asset, as the devices sent them."""

    def __init__(self, fleet: Any) -> None:
        self._fleet = fleet
        self._lock = threading.Lock()
        self.readings: dict[str, set[tuple[str, str]]] = {a: set() for a in fleet.assets}
        self.messages: Counter[str] = Counter()

    def add(self, msg: Any) -> None:
        self.messages[msg.kind] += 1
        if msg.kind != "telemetry":
            return
        body = json.loads(msg.payload)
        asset = self._fleet.asset_of(body["device_id"])
        with self._lock:
            for s in body.get("samples", [body]):
                for sensor in s.get("temps_c", {}):
                    self.readings[asset.id].add((sensor, s["ts"]))


def _summarize(
    settings: Any,
    fleet: Any,
    services: Any,
    published: _PublishedReadings,
    dead: list[dict[str, object]],
    start: datetime,
    scenario: Any,
    now_ms: int,
) -> dict[str, Any]:
    from api.trace import TraceService, trace_to_dict
    from coldchain.rules import load_presets
    from registry import open_registry
    from simulators.scoring import evidence_from, expectations, score
    from timeseries.client import InfluxClient

    influx = InfluxClient(settings.influx)
    stored: Counter[str] = Counter()
    for s in influx.query('SELECT count("temp_c") FROM "temperature" GROUP BY "asset"'):
        stored[s.tags["asset"]] = int(s.values[0][1])
    dead_by_reason = Counter(str(d["reason"]) for d in dead)
    with open_registry(settings.registry_url) as reg:
        excursions = [r.excursion for r in reg.find_excursions(superseded=False)]
        tracer = TraceService(reg, influx, fleet, load_presets())
        traces = [trace_to_dict(tracer.trace(sh.id, now_ms)) for sh in scenario.shipments]
        chain = reg.verify_audit_chain()
    influx.close()
    truth = json.loads((settings.fleet_path.parent / "truth.json").read_text())
    # What was raised: the registry's excursions, and the custody gaps the traces compute.
    raised = evidence_from(
        [asdict(e) for e in excursions] + [e for t in traces for e in t["excursions"]]
    )
    t0_ms = round(start.timestamp() * 1000)
    scored = score(
        expectations(scenario, start),
        raised,
        t0_ms=t0_ms,
        run_end_ms=t0_ms + round(scenario.duration_s * 1000),
    )
    return {
        "scenario": scenario.name,
        "window": {
            "start": start.isoformat(),
            "end": datetime.fromtimestamp(start.timestamp() + scenario.duration_s, UTC).isoformat(),
        },
        "messages_published": dict(published.messages),
        "assets": [
            {
                "asset": a,
                "readings_published": len(published.readings[a]),
                "readings_stored": stored.get(a, 0),
                "match": len(published.readings[a]) == stored.get(a, 0),
            }
            for a in sorted(fleet.assets)
        ],
        "dead_letters": dict(dead_by_reason),
        "faults": truth["faults"],
        "excursions": [
            {"asset": e.asset_id, "compartment": e.compartment_id, **asdict(e)} for e in excursions
        ],
        "shipments": traces,
        "score": scored.to_dict(),
        "audit": {"entries": chain.checked, "intact": chain.ok, "head": chain.head_hash},
    }


def _write_reports(
    settings: Any, fleet: Any, scenario: Any, directory: Path, zone: str, now_ms: int
) -> dict[str, dict[str, str]]:
    """Every shipment's report (HTML, PDF) and EPCIS export as of ``now_ms``, through the
    services the API uses; shipment id -> {"html", "pdf", "epcis"}: the file names."""
    from api.epcis import EpcisExporter
    from api.report import ReportService
    from api.trace import TraceService
    from cli.report_files import write_shipment_reports
    from coldchain.rules import load_presets
    from registry import open_registry
    from timeseries.client import InfluxClient

    profiles = load_presets(settings.profiles_path)
    influx = InfluxClient(settings.influx)
    try:
        with open_registry(settings.registry_url) as reg:
            tracer = TraceService(reg, influx, fleet, profiles)
            files = write_shipment_reports(
                [sh.id for sh in scenario.shipments],
                directory,
                reporter=ReportService(tracer, reg, fleet, profiles),
                exporter=EpcisExporter(tracer, reg, fleet, settings.epcis),
                at_ms=now_ms,
                printed_ms=now_ms,
                zone=zone,
            )
    finally:
        influx.close()
    return {
        f.shipment_id: {"html": f.html.name, "pdf": f.pdf.name, "epcis": f.epcis.name}
        for f in files
    }
