"""``coldchain shipments create|update|cancel|list|show``: the HTTP API's shipment operations
for people without an HTTP client, through the same service layer (docs/api.md).

Times are RFC 3339 with an offset. Errors (an invalid field, a conflicting create, an unknown
shipment) end the command with exit status 2 and the service's message.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.records import add_common, emit, fmt_time, open_cli_services, parse_time

__all__ = ["register"]

_STATUSES = ("registered", "in_custody", "delivered", "cancelled")
# --clear NAME: what a JSON merge patch's null does over HTTP.
_CLEARABLE = {
    "quantity": ("quantity", "unit"),
    "planned-departure": ("planned_departure",),
    "planned-arrival": ("planned_arrival",),
}


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "shipments", help="create, update, cancel, list and show shipments"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="register a shipment (idempotent on --id)")
    create.add_argument("--id", required=True, help="shipment id (SSCC, customer reference)")
    create.add_argument("--profile", required=True, help="product profile (a configured one)")
    create.add_argument("--shipper", required=True, help="whose goods (name or GS1 GLN)")
    _fact_options(create)
    add_common(create, by=True)
    create.set_defaults(func=_create)

    update = actions.add_parser("update", help="change fields of a shipment")
    update.add_argument("shipment_id")
    update.add_argument("--profile", help="only before the first custody scan")
    update.add_argument("--shipper", help="never changes (given equal, accepted)")
    _fact_options(update)
    update.add_argument(
        "--clear",
        action="append",
        choices=sorted(_CLEARABLE),
        default=[],
        help="clear a field (quantity clears the unit too); repeatable",
    )
    add_common(update, by=True)
    update.set_defaults(func=_update)

    cancel = actions.add_parser("cancel", help="cancel a shipment no one has taken custody of")
    cancel.add_argument("shipment_id")
    cancel.add_argument("--reason", default="", help="why (kept in the record)")
    add_common(cancel, by=True)
    cancel.set_defaults(func=_cancel)

    listing = actions.add_parser("list", help="list shipments (filters, paged)")
    listing.add_argument("--shipper")
    listing.add_argument("--status", choices=_STATUSES)
    listing.add_argument("--profile")
    for name in ("created-from", "created-to", "active-from", "active-to"):
        listing.add_argument(f"--{name}", metavar="RFC3339")
    listing.add_argument("--cursor", help="next_cursor of the previous page")
    listing.add_argument("--limit", type=int, default=100, help="1..1000 (default 100)")
    add_common(listing)
    listing.set_defaults(func=_list)

    show = actions.add_parser("show", help="one shipment with its custody legs")
    show.add_argument("shipment_id")
    add_common(show)
    show.set_defaults(func=_show)


def _fact_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--description")
    p.add_argument("--quantity", type=float, help="how much, in --unit (give both)")
    p.add_argument("--unit", help="unit of --quantity (e.g. pallets, KGM)")
    p.add_argument("--consignee", help="who receives it (name or GS1 GLN)")
    p.add_argument("--origin")
    p.add_argument("--destination")
    p.add_argument("--planned-departure", metavar="RFC3339")
    p.add_argument("--planned-arrival", metavar="RFC3339")


_FACTS = (
    "description",
    "quantity",
    "unit",
    "consignee",
    "origin",
    "destination",
    "planned_departure",
    "planned_arrival",
)


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _create(args: argparse.Namespace) -> int:
    from services import ShipmentCreate, cli_principal, parse

    body = parse(
        ShipmentCreate,
        {"id": args.id, "profile": args.profile, "shipper": args.shipper} | _given(args, _FACTS),
    )
    with open_cli_services(args) as services:
        view, created = services.shipments.create(body, cli_principal(args.by))
    what = "registered" if created else "already registered with these details"
    emit(args, view | {"created": created}, f"shipment {view['id']} {what}\n{_describe(view)}")
    return 0


def _update(args: argparse.Namespace) -> int:
    from services import ShipmentPatch, cli_principal, parse

    changes = _given(args, (*_FACTS, "profile", "shipper"))
    for name in args.clear:
        changes |= dict.fromkeys(_CLEARABLE[name])
    patch = parse(ShipmentPatch, changes)
    with open_cli_services(args) as services:
        view, changed = services.shipments.update(args.shipment_id, patch, cli_principal(args.by))
    what = "updated" if changed else "unchanged (the values were already these)"
    emit(args, view | {"changed": changed}, f"shipment {view['id']} {what}\n{_describe(view)}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from services import ShipmentCancel, cli_principal, parse

    body = parse(ShipmentCancel, {"reason": args.reason})
    with open_cli_services(args) as services:
        view, changed = services.shipments.cancel(args.shipment_id, body, cli_principal(args.by))
    what = "cancelled" if changed else "was already cancelled"
    emit(args, view | {"changed": changed}, f"shipment {view['id']} {what}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from services import ShipmentFilters

    filters = ShipmentFilters(
        shipper=args.shipper,
        status=args.status,
        profile=args.profile,
        created_from_ms=parse_time("--created-from", args.created_from),
        created_to_ms=parse_time("--created-to", args.created_to),
        active_from_ms=parse_time("--active-from", args.active_from),
        active_to_ms=parse_time("--active-to", args.active_to),
    )
    with open_cli_services(args) as services:
        page = services.shipments.list(filters, cursor=args.cursor, limit=args.limit)
    lines = [f"{'id':<24} {'status':<11} {'profile':<10} {'shipper':<16} {'created':<24} where"]
    for s in page.items:
        lines.append(
            f"{s['id']:<24} {s['status']:<11} {s['profile']:<10} {s['shipper'] or '-':<16} "
            f"{fmt_time(s['created_ms']):<24} {_where(s)}"
        )
    if page.next_cursor is not None:
        lines.append(f"more: --cursor {page.next_cursor}")
    emit(args, {"items": page.items, "next_cursor": page.next_cursor}, "\n".join(lines))
    return 0


def _show(args: argparse.Namespace) -> int:
    with open_cli_services(args) as services:
        view = services.shipments.get(args.shipment_id)
    lines = [_describe(view), "legs:"]
    for leg in view["legs"]:
        where = f"{leg['asset_id']}/{leg['compartment_id'] or 'dock (unmonitored)'}"
        lines.append(f"  {fmt_time(leg['from_ms'])} .. {fmt_time(leg['to_ms'])}  {where}")
    emit(args, view, "\n".join(lines))
    return 0


def _where(s: dict[str, Any]) -> str:
    here = s.get("custody")
    if here is None:
        return "-"
    return (
        f"{here['asset_id']}/{here['compartment_id'] or 'dock'} since {fmt_time(here['from_ms'])}"
    )


def _describe(s: dict[str, Any]) -> str:
    quantity = "-" if s["quantity"] is None else f"{s['quantity']:g} {s['unit']}"
    planned = f"{fmt_time(s['planned_departure_ms'])} .. {fmt_time(s['planned_arrival_ms'])}"
    rows = [
        ("id", s["id"]),
        ("status", s["status"]),
        ("profile", s["profile"]),
        ("shipper", s["shipper"] or "-"),
        ("consignee", s["consignee"] or "-"),
        ("quantity", quantity),
        ("description", s["description"] or "-"),
        ("from", s["origin"] or "-"),
        ("to", s["destination"] or "-"),
        ("planned", planned),
        ("in custody", _where(s)),
    ]
    if s["status"] == "cancelled":
        rows.append(("cancelled", f"{fmt_time(s['cancelled_ms'])} by {s['cancelled_by']}"))
    return "\n".join(f"  {k:<12} {v}" for k, v in rows)
