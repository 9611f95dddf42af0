"""``coldchain simulate``: run a scenario against a broker, print it, or load-test in scale mode.

Examples::

    coldchain simulate demo --speedup 1440              # a simulated day in a minute
    coldchain simulate door_left_open --dry-run --start 2026-07-01T16:00:00Z | head
    coldchain simulate my.yaml --truth truth.json --write-fleet fleet.yaml
    coldchain simulate --scale 5000 --connections 8 --duration 60

The scenario is a library name (simulators/scenarios/) or a path to a YAML file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate", help="simulate reefer trucks and cold stores (MQTT, dry run or scale mode)"
    )
    p.add_argument("scenario", nargs="?", help="library scenario name or YAML path")
    p.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    p.add_argument(
        "--speedup",
        type=float,
        default=1440.0,
        help="simulated seconds per wall second; 0 = as fast as the wall clock allows "
        "(default 1440: a day in a minute)",
    )
    p.add_argument(
        "--start",
        help="simulation start, RFC 3339 UTC (default: the latest local midnight of the "
        "scenario's utc_offset_h that lets the window end by now, so faults meet the same "
        "time of day on every run)",
    )
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument(
        "--connections",
        type=int,
        default=None,
        help="0 = one MQTT connection per device (username = device id); k > 0 = multiplex "
        "all devices over k connections as user coldchain-simulator (needs an ACL entry). "
        "Default: 0 live, 4 in scale mode",
    )
    p.add_argument("--username", help="override the MQTT username")
    p.add_argument("--truth", type=Path, help="write the ground truth JSON here")
    p.add_argument("--write-fleet", type=Path, help="write the scenario's fleet YAML here")
    p.add_argument("--dry-run", action="store_true", help="print messages as JSON lines, no broker")
    p.add_argument("--scale", type=int, metavar="N", help="scale mode: N synthetic devices")
    p.add_argument(
        "--interval", type=float, default=10.0, help="scale mode: seconds between samples"
    )
    p.add_argument("--duration", type=float, default=30.0, help="scale mode: wall seconds")
    p.add_argument(
        "--paced",
        action="store_true",
        help="scale mode: publish on schedule (one sample per device per interval) instead of "
        "as fast as possible",
    )
    p.set_defaults(func=run)


def _scenario(name: str) -> Any:
    from simulators import library_scenario, load_scenario

    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_scenario(path)
    return library_scenario(name)


def _parse_start(text: str | None) -> datetime | None:
    if text is None:
        return None
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise SystemExit(f"coldchain simulate: --start {text!r} needs a UTC offset (e.g. Z)")
    return when


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def run(args: argparse.Namespace) -> int:
    from simulators.engine import Simulation
    from simulators.publish import replay_window, run_live, run_scale

    if args.scale is not None:
        stats = run_scale(
            args.scale,
            host=args.mqtt_host,
            port=args.mqtt_port,
            sample_interval_s=args.interval,
            connections=4 if args.connections is None else args.connections,
            paced=args.paced,
            speedup=args.speedup if args.paced and args.speedup > 0 else 1.0,
            time_limit_s=args.duration,
            username=args.username,
        )
        print(json.dumps({"mode": "scale", **stats.to_dict()}), flush=True)
        return 0

    if not args.scenario:
        print("coldchain simulate: give a scenario (or --scale N)", file=sys.stderr)
        return 2
    scenario = _scenario(args.scenario)
    if args.write_fleet:
        args.write_fleet.write_text(scenario.fleet().to_yaml(), encoding="utf-8")
    start = _parse_start(args.start) or replay_window(scenario)[0]

    if args.dry_run:
        sim = Simulation(scenario, start=start, seed=args.seed)
        out = sys.stdout
        try:
            for m in sim.messages():
                line = {
                    "time": m.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "topic": m.topic,
                    "qos": m.qos,
                    "retain": m.retain,
                    "payload": json.loads(m.payload),
                }
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
            out.flush()
        except BrokenPipeError:  # `| head`: the reader has seen enough
            # Point stdout at devnull so the interpreter's final flush does not fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if args.truth:
            sim.truth().write(args.truth)
        return 0

    stats = run_live(
        scenario,
        host=args.mqtt_host,
        port=args.mqtt_port,
        seed=args.seed,
        speedup=args.speedup,
        start=start,
        truth_path=args.truth,
        connections=args.connections or 0,
        username=args.username,
        stop=_stop_on_signals(),
    )
    print(json.dumps({"mode": "live", "scenario": scenario.name, **stats.to_dict()}), flush=True)
    return 0
