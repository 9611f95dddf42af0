"""``coldchain custody record``: record a custody event as a business system would over HTTP
(``POST /v1/custody-events``), through the same service layer: validated as an MQTT handheld
scan is, idempotent on ``--event-id``, an impossible sequence refused with the reason."""

from __future__ import annotations

import argparse
from typing import Any

from cli.records import add_common, emit, fmt_time, open_cli_services

__all__ = ["register"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("custody", help="record custody events")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    record = actions.add_parser(
        "record", help="record a load, unload, handover or delivery (idempotent on --event-id)"
    )
    record.add_argument("--event-id", required=True, help="your id for this event (e.g. a UUID)")
    record.add_argument("--shipment", required=True, help="shipment id")
    record.add_argument(
        "--action", required=True, choices=("load", "unload", "handover", "deliver")
    )
    record.add_argument("--asset", required=True, help="asset id (truck, cold store)")
    record.add_argument("--compartment", help="compartment id (none: the asset's dock)")
    record.add_argument("--ts", required=True, metavar="RFC3339", help="when it happened")
    record.add_argument("--actor", required=True, help="who did it at the dock")
    add_common(record, by=True)
    record.set_defaults(func=_record)


def _record(args: argparse.Namespace) -> int:
    from services import CustodyEventCreate, cli_principal, parse

    body = parse(
        CustodyEventCreate,
        {
            "event_id": args.event_id,
            "shipment_id": args.shipment,
            "action": args.action,
            "asset_id": args.asset,
            "compartment_id": args.compartment,
            "ts": args.ts,
            "actor": args.actor,
        },
    )
    with open_cli_services(args) as services:
        view, created = services.custody.record(body, cli_principal(args.by))
    where = f"{view['asset_id']}/{view['compartment_id'] or 'dock'}"
    what = "recorded" if created else "already recorded (the same event)"
    text = (
        f"{view['action']} of {view['shipment_id']} at {where}, {fmt_time(view['ts_ms'])} "
        f"by {view['actor']}: {what} (event {view['event_id']})"
    )
    emit(args, view | {"created": created}, text)
    return 0
