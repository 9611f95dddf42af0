"""``coldchain spool``: the spool identities the registry holds, and accepting a spool problem.

``status`` lists, per ingest client id, which spool it writes and any problem pending
(``spool_replaced``: the spool was deleted or replaced while ingest was stopped;
``spool_corrupt``: it was damaged and moved aside); exit status 1 while one is pending.
``accept`` records that an operator dealt with it (audited); a running ingest clears its
``/healthz`` problem within a few seconds. docs/operations.md, "Failures and recovery".
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "spool", help="show ingest spool identities; accept a replaced or damaged spool"
    )
    p.add_argument(
        "action", choices=("status", "accept"), help="status: list; accept: clear a problem"
    )
    p.add_argument(
        "--client-id", help="ingest client id (default: COLDCHAIN_MQTT__CLIENT_ID; status: all)"
    )
    p.add_argument("--by", help="accept: who accepts (recorded in the audit log)")
    p.add_argument("--comment", default="", help="accept: what was checked or recovered")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from coldchain.settings import load_settings
    from registry import open_registry

    settings = load_settings()
    with open_registry(settings.registry_url) as registry:
        if args.action == "accept":
            if not args.by:
                print("coldchain spool accept: --by NAME is required", flush=True)
                return 2
            client = args.client_id or settings.mqtt.client_id
            before = registry.spool_identity(client)
            record = registry.accept_spool(client, by=args.by, comment=args.comment)
            if before is not None and before.problem is not None:
                print(f"{client}: accepted {before.problem} ({before.problem_detail})")
            else:
                print(f"{client}: nothing to accept (spool {record.spool_id} is in order)")
            return 0
        records = registry.spool_identities()
        if args.client_id:
            records = [r for r in records if r.client_id == args.client_id]
        for r in records:
            state = f"{r.problem}: {r.problem_detail}" if r.problem else "ok"
            print(
                f"{r.client_id}: spool {r.spool_id} at {r.spool_path}, row ids up to at least "
                f"{r.high_water}; {state}"
            )
        return 1 if any(r.problem for r in records) else 0
