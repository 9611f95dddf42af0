"""``coldchain deadletters list|replay``: the spool's dead letters, and replaying those of a
device registered after it sent (docs/operations.md, "Dead letters" and "Onboarding without
restarts").

``list`` prints the newest letters (filters: ``--device``, ``--reason``, ``--since``) with their
replay state. ``replay --device ID [--since T]`` queues the device's ``unknown_device`` letters
still kept in the spool of the ingest process these settings name (``COLDCHAIN_SPOOL__PATH``,
run it on that machine); that process replays them between groups, each exactly once. The
command waits up to ``--wait-s`` for it and prints the counts; exit status 0 when every letter
is replayed, 1 when some are still waiting (is ingest running?) or were refused (its fleet does
not know the device yet), 2 when the device is not in the fleet file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from cli.records import emit, fmt_time, parse_time

__all__ = ["register"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "deadletters", help="list dead letters; replay those of a device registered since"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the newest dead letters, with replay state")
    listing.add_argument("--device")
    listing.add_argument("--reason", help="e.g. unknown_device (docs/telemetry.md)")
    listing.add_argument("--since", metavar="RFC3339", help="received at or after")
    listing.add_argument("--limit", type=int, default=100)
    _common(listing)
    listing.set_defaults(func=_list)

    replay = actions.add_parser(
        "replay", help="replay a now registered device's unknown_device dead letters"
    )
    replay.add_argument("--device", required=True)
    replay.add_argument("--since", metavar="RFC3339", help="received at or after (default: all)")
    replay.add_argument(
        "--wait-s",
        type=float,
        default=60.0,
        help="wait this long for the running ingest to replay them (default 60; 0: don't)",
    )
    _common(replay)
    replay.set_defaults(func=_replay)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spool", type=Path, help="spool file (default: COLDCHAIN_SPOOL__PATH)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _open_spool(args: argparse.Namespace) -> Any:
    from coldchain.exceptions import ConfigError
    from coldchain.settings import load_settings
    from ingest.spool import Spool

    path = args.spool or load_settings().spool.path
    if not path.exists():
        raise ConfigError(
            "COLDCHAIN_SPOOL__PATH", str(path), "no spool there (run on ingest's host)"
        )
    return Spool(path)


def _list(args: argparse.Namespace) -> int:
    since = parse_time("--since", args.since) or 0
    spool = _open_spool(args)
    try:
        rows = spool.find_dead_letters(
            device_id=args.device, reason=args.reason, since_ms=since, limit=args.limit
        )
    finally:
        spool.close()
    lines = [
        f"{r['id']} {fmt_time(int(r['received_ms']))} {r['reason']} device={r['device_id']} "
        f"{r['field']}={r['value']} ({r['detail']})"
        + (f" [replay {r['replay']}: {r['replay_outcome']}]" if r["replay"] else "")
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or "no dead letters")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from coldchain.fleet import load_fleet
    from coldchain.settings import load_settings

    settings = load_settings()
    fleet = load_fleet(settings.fleet_path)
    if not fleet.is_known_device(args.device):
        print(
            f"coldchain deadletters replay: device {args.device!r} is not in the fleet file "
            f"{settings.fleet_path}: register it there first (ingest reloads it)"
        )
        return 2
    since = parse_time("--since", args.since) or 0
    spool = _open_spool(args)
    try:
        req = spool.request_replay(args.device, since)
        deadline = time.monotonic() + args.wait_s
        while True:
            states = spool.replay_status(req.ids)
            waiting = sum(1 for s, _ in states.values() if s == "queued")
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        spool.close()
    counts = {
        "device": args.device,
        "letters": req.letters,
        "queued_now": req.queued,
        "replayed_before": req.replayed,
        "replayed": sum(1 for s, _ in states.values() if s == "replayed") - req.replayed,
        "still_queued": waiting,
        "refused": sum(1 for s, _ in states.values() if s == "refused"),
        "outcomes": _tally(o for s, o in states.values() if s != "queued"),
    }
    text = (
        f"{args.device}: {req.letters} unknown_device letters kept"
        f"{f' since {fmt_time(since)}' if since else ''}; "
        f"{req.queued} queued now, {req.replayed} replayed before; replayed now "
        f"{counts['replayed']}, still queued {waiting}, refused {counts['refused']}"
    )
    if waiting:
        text += " (is the ingest process that owns this spool running? it replays them)"
    emit(args, counts, text)
    return 1 if waiting or counts["refused"] else 0


def _tally(outcomes: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in outcomes:
        out[o] = out.get(o, 0) + 1
    return out
