"""``coldchain audit verify|head``: check the audit log, print its heads to anchor elsewhere.

``verify`` checks both hash chains (writes, reads), the append-only triggers, and every row of
the tables the API serves against its last audited state (docs/registry.md, "Verifying");
it exits 1 naming the first bad row. ``head`` prints each chain's last entry as ``SEQ:HASH``:
publish it outside the database (a report, a ticket, another system) and pass it back with
``verify --anchor`` (writes) / ``--reads-anchor`` later, which catches a cut tail or a rewritten
chain that is otherwise self-consistent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

__all__ = ["parse_anchor", "register", "run_head", "run_verify"]

_ANCHOR = re.compile(r"(?P<seq>\d+):(?P<hash>[0-9a-f]{64})")


def parse_anchor(text: str) -> tuple[int, str]:
    """``"42:<64 hex>"`` -> (42, hash); ArgumentTypeError otherwise."""
    match = _ANCHOR.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an anchor SEQ:HASH (as `coldchain audit head` prints it)"
        )
    return int(match.group("seq")), match.group("hash")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "audit", help="verify the audit log, or print its heads to anchor them elsewhere"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry-url", help="SQLAlchemy URL (default: COLDCHAIN_REGISTRY_URL)")
    audit = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = audit.add_parser(
        "verify",
        parents=[common],
        help="check chains, triggers and tables; exit 1 naming the first bad row",
    )
    v.add_argument(
        "--anchor",
        type=parse_anchor,
        help="a writes-chain head published earlier, SEQ:HASH: it must still be in the chain",
    )
    v.add_argument(
        "--reads-anchor", type=parse_anchor, help="the same for the reads chain, SEQ:HASH"
    )
    v.set_defaults(func=run_verify)
    h = audit.add_parser("head", parents=[common], help="print each chain's head as SEQ:HASH")
    h.add_argument("--json", action="store_true", help="print one JSON object")
    h.set_defaults(func=run_head)


def _open(args: argparse.Namespace) -> Any:
    from coldchain.settings import load_settings
    from registry import open_registry

    return open_registry(args.registry_url or load_settings().registry_url)


def run_verify(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        report = registry.trail.verify(anchor=args.anchor, reads_anchor=args.reads_anchor)
    print(report)
    if not report.ok:
        print(f"coldchain audit verify: {report.problems[0]}", file=sys.stderr)
        return 1
    return 0


def run_head(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        heads = registry.trail.heads()
    if args.json:
        print(json.dumps({k: {"seq": s, "hash": h} for k, (s, h) in heads.items()}))
        return 0
    for chain, (seq, digest) in heads.items():
        print(f"{chain} {seq}:{digest}")
    return 0
