"""``coldchain excursions list|ack|history``: excursions with their latest acknowledgement, an
operator's acknowledgement (appended to the history, audited) and the history, through the
same service layer as the HTTP API."""

from __future__ import annotations

import argparse
from typing import Any

from cli.records import add_common, emit, fmt_time, open_cli_services, parse_time

__all__ = ["register"]

_DISPOSITIONS = ("pending", "quarantined", "released", "returned", "destroyed", "not_affected")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "excursions", help="list excursions, acknowledge one, show its acknowledgements"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="excursions touching a window, oldest first")
    listing.add_argument("--asset")
    listing.add_argument("--compartment")
    listing.add_argument("--status", choices=("open", "closed", "recovered"))
    listing.add_argument("--from", dest="from_", metavar="RFC3339")
    listing.add_argument("--to", metavar="RFC3339")
    listing.add_argument(
        "--unacknowledged", action="store_true", help="only those nobody acknowledged"
    )
    listing.add_argument("--include-superseded", action="store_true")
    listing.add_argument("--limit", type=int, default=1000)
    add_common(listing)
    listing.set_defaults(func=_list)

    ack = actions.add_parser("ack", help="acknowledge an excursion (appends to its history)")
    ack.add_argument("excursion_id")
    ack.add_argument("--disposition", required=True, choices=_DISPOSITIONS)
    ack.add_argument("--comment", default="")
    ack.add_argument("--root-cause", default="")
    add_common(ack, by=True)
    ack.set_defaults(func=_ack)

    history = actions.add_parser("history", help="every acknowledgement of an excursion")
    history.add_argument("excursion_id")
    add_common(history)
    history.set_defaults(func=_history)


def _list(args: argparse.Namespace) -> int:
    from coldchain.exceptions import RecordInvalid

    from_ms, to_ms = parse_time("--from", args.from_), parse_time("--to", args.to)
    if from_ms is not None and to_ms is not None and from_ms >= to_ms:
        raise RecordInvalid(f"--from {args.from_} must be before --to {args.to}")
    if not 1 <= args.limit <= 10_000:
        raise RecordInvalid(f"--limit {args.limit} is not between 1 and 10000")
    with open_cli_services(args) as services:
        found = services.excursions.list(
            asset_id=args.asset,
            compartment_id=args.compartment,
            status=args.status,
            from_ms=from_ms,
            to_ms=to_ms,
            acknowledged=False if args.unacknowledged else None,
            include_superseded=args.include_superseded,
            limit=args.limit,
        )
    lines = [
        f"{'id':<26} {'where':<22} {'kind':<12} {'severity':<9} {'status':<9} "
        f"{'start':<21} {'end':<21} acknowledged"
    ]
    for e in found:
        acked = (
            f"{e['ack_count']}x, latest {e['ack_disposition'] or '-'} by {e['ack_by']}"
            if e["acknowledged"]
            else "no"
        )
        lines.append(
            f"{e['id']:<26} {e['asset_id'] + '/' + e['compartment_id']:<22} {e['kind']:<12} "
            f"{e['severity']:<9} {e['status']:<9} {fmt_time(e['start_ms']):<21} "
            f"{fmt_time(e['end_ms']):<21} {acked}"
        )
    emit(args, found, "\n".join(lines))
    return 0


def _ack(args: argparse.Namespace) -> int:
    from services import AcknowledgementCreate, cli_principal, parse

    body = parse(
        AcknowledgementCreate,
        {"disposition": args.disposition, "comment": args.comment, "root_cause": args.root_cause},
    )
    with open_cli_services(args) as services:
        view = services.excursions.acknowledge(args.excursion_id, body, cli_principal(args.by))
    emit(
        args,
        view,
        f"acknowledgement {view['seq']} of excursion {view['excursion_id']} recorded: "
        f"{view['disposition']}, by {view['by']} at {fmt_time(view['ack_ms'])}",
    )
    return 0


def _history(args: argparse.Namespace) -> int:
    with open_cli_services(args) as services:
        acks = services.excursions.history(args.excursion_id)
    lines = [f"excursion {args.excursion_id}: {len(acks)} acknowledgement(s)"]
    for a in acks:
        lines.append(
            f"  {a['seq']}. {fmt_time(a['ack_ms'])} by {a['by']}"
            f"{' (' + a['role'] + ')' if a['role'] else ''}: {a['disposition'] or 'not recorded'}"
        )
        if a["root_cause"]:
            lines.append(f"     root cause: {a['root_cause']}")
        if a["comment"]:
            lines.append(f"     comment: {a['comment']}")
    emit(args, acks, "\n".join(lines))
    return 0
