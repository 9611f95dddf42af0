"""``coldchain ingest``: run one ingest process until SIGTERM/SIGINT.

Settings come from ``COLDCHAIN_*`` environment variables (see README); several processes with
distinct ``COLDCHAIN_MQTT__CLIENT_ID`` and spool paths share the load through the broker's
shared subscription. On SIGTERM it exits within ``--stop-timeout-s`` (default 8 s): the group
being committed is finished and acknowledged, the rules checkpoint without catching up, the
writer flushes until the deadline and the rest waits in the spool (docs/operations.md).
On SIGHUP, or when the fleet file changes, the fleet reloads without a restart (a file that
does not check is refused and the fleet in force stays: docs/operations.md, "Onboarding").
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.serve import serve
from coldchain.fleet import load_fleet
from coldchain.settings import load_settings

STOP_TIMEOUT_S = 8.0  # = ingest.service.STOP_TIMEOUT_S (not imported: adapters load lazily)

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "ingest", help="run the ingest service: MQTT -> validate -> spool -> InfluxDB"
    )
    p.add_argument("--fleet", type=Path, help="fleet file (default: COLDCHAIN_FLEET_PATH)")
    p.add_argument(
        "--stop-timeout-s",
        type=float,
        default=STOP_TIMEOUT_S,
        help="on SIGTERM/SIGINT, exit within this many seconds; what the writer has not "
        f"flushed by then stays in the spool (default {STOP_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--rules",
        choices=("inprocess", "subprocess", "forward"),
        help="run the rules here (inprocess: one ingest process only), in a child process of "
        "this one (subprocess: a core of their own; one ingest process only) or forward "
        "accepted samples to `coldchain rules` workers (default: COLDCHAIN_RULES__MODE, "
        "inprocess)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ingest.service import IngestService  # adapters load only when the command runs

    overrides: dict[str, object] = {"fleet_path": args.fleet} if args.fleet else {}
    settings = load_settings(**overrides)
    if args.rules:
        settings.rules.mode = args.rules
    fleet = load_fleet(settings.fleet_path)
    service = IngestService(settings, fleet)
    rules = settings.rules.mode
    child = getattr(service.evaluate, "pid", None)
    banner = (
        f"coldchain ingest: {len(fleet.device_ids)} devices registered, "
        f"MQTT {settings.mqtt.host}:{settings.mqtt.port}, InfluxDB {settings.influx.url}, "
        f"rules {rules}" + (f" (child process {child})" if child is not None else "")
    )
    # SIGHUP: re-read the fleet file now (it is also polled, COLDCHAIN_FLEET_RELOAD_S).
    return serve(
        service, banner, stop_timeout_s=args.stop_timeout_s, on_hangup=service.reload_fleet
    )
