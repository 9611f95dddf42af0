"""Fault suite at full size: issue 8's runs (60,000 QoS 1 messages at 2,000 msg/s, the fault
at 40 %) through real mosquitto, influxd and ``coldchain ingest``.

The same machinery as tests/e2e/test_faults.py (tests/e2e/faults_support), sized up: 30 trucks,
one sample a minute of device time each, the scripted excursions and custody scans of
``faults_support.plan``. A baseline run without a fault goes first; then each fault. Prints one
JSON object per fault run: the run's report (lost readings, duplicate alerts, /healthz red
during the fault, differences from the baseline, the timeline in seconds) beside the same-run
baseline's figures. Nothing is asserted: the tests do that.

Usage: ``uv run python bench/faults.py [--messages 60000] [--rate 2000] [--devices 30]
[--fault-at 0.4] [case ...]`` (cases: the names in ``faults_support.faults.FAULTS``; default
all). ``disk_full`` mounts a tmpfs and needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.launcher import Services
from tests.e2e.faults_support.faults import FAULTS
from tests.e2e.faults_support.outcome import compare
from tests.e2e.faults_support.plan import build_plan
from tests.e2e.faults_support.run import Fault, run_case

# Faults that stop or restart a service get services of their own.
_OWN_SERVICES = {"broker_restart", "broker_sigkill", "influx_down"}
_BASELINE_FIELDS = (
    "messages",
    "acked_messages",
    "readings_acked",
    "readings_stored",
    "lost_readings",
    "excursions",
    "alerts",
    "duplicate_alerts",
    "timeline_s",
)


def _summary(report: dict[str, Any], seconds: float) -> dict[str, Any]:
    t = report.get("timeline_s", {})
    report["run_s"] = round(seconds, 1)
    if "fault_over" in t and "settled" in t:
        # From the end of the fault until every acknowledged reading was in InfluxDB.
        report["recovered_after_fault_s"] = round(t["settled"] - t["fault_over"], 1)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--devices", type=int, default=30)
    ap.add_argument("--fault-at", type=float, default=0.4)
    ap.add_argument("cases", nargs="*", default=list(FAULTS))
    args = ap.parse_args()
    unknown = set(args.cases) - set(FAULTS)
    if unknown:
        ap.error(f"unknown cases {sorted(unknown)}; known: {sorted(FAULTS)}")

    # The late truck joins at 38 %: it sends 62 % of the steps.
    steps = max(400, round(args.messages / (args.devices - 0.38)))
    plan = build_plan(steps, devices=args.devices)
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="coldchain-bench-faults-") as tmp:
        root = Path(tmp)
        with Services(root / "services") as services:
            t0 = time.monotonic()
            base = run_case(
                "baseline", plan, services.mosquitto, services.influxd, root / "baseline",
                Fault(), rate=args.rate, fault_fraction=args.fault_at, settle_timeout_s=600,
            )  # fmt: skip
            base_report = _summary(compare(base, None), time.monotonic() - t0)
            for case in args.cases:
                fault = FAULTS[case]()
                own = Services(root / f"services-{case}") if case in _OWN_SERVICES else None
                svc = own.start() if own is not None else services
                t0 = time.monotonic()
                try:
                    out = run_case(
                        case, plan, svc.mosquitto, svc.influxd, root / case, fault,
                        rate=args.rate, fault_fraction=args.fault_at, settle_timeout_s=600,
                    )  # fmt: skip
                    report = _summary(compare(out, base), time.monotonic() - t0)
                except AssertionError as exc:  # e.g. ingest would not start again
                    report = {"case": case, "error": str(exc)[:2000]}
                finally:
                    if own is not None:
                        own.stop()
                result = {
                    "benchmark": "faults",
                    "case": case,
                    "machine": machine,
                    "target_msgs_per_s": args.rate,
                    "fault_at_fraction": args.fault_at,
                    "result": report,
                    "baseline": {k: base_report.get(k) for k in (*_BASELINE_FIELDS, "run_s")},
                }
                print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
