"""``coldchain rules``: run a rules worker for some partitions until SIGTERM/SIGINT.

Scale-out (docs/operations.md, "Scaling out"): ingest processes started with
``COLDCHAIN_RULES__MODE=forward`` (or ``coldchain ingest --rules forward``) store and forward
accepted samples to ``coldchain/v1/rules/<k>``; each partition ``k`` of
``COLDCHAIN_RULES__PARTITIONS`` is evaluated by the one worker holding the MQTT client id
``coldchain-rules-<k>``. Start one worker per set of partitions, e.g. ``--partitions 0-3`` and
``--partitions 4-7``; a worker killed is replaced by starting it again (anywhere) with the same
partitions: it resumes from the partitions' registry checkpoints and the broker delivers what
it queued meanwhile. A partition is evaluated only while the worker holds its fencing lease in
the registry (``COLDCHAIN_RULES__LEASE_TTL_S``): a second worker started with the same
partitions waits for it (health problem ``partition_leased_elsewhere``) and takes over once the
holder stopped (at once) or died (after the TTL); a worker whose lease was taken over stops and
exits with status 1. On a broker that binds client ids to usernames, set
``COLDCHAIN_RULES__PARTITION_USERS=true``: partition ``k`` then logs in as user
``coldchain-rules-<k>`` with ``COLDCHAIN_MQTT__PASSWORD`` (``coldchain broker users
--rules-partitions N``). Settings come from ``COLDCHAIN_*`` variables, as for ``ingest``.
On SIGHUP, or when the fleet file changes, the fleet reloads without a restart, as in ingest
(docs/operations.md, "Onboarding without restarts").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.serve import serve
from coldchain.fleet import load_fleet
from coldchain.rules import RULES_CLIENT_ID_PREFIX
from coldchain.settings import load_settings

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "rules", help="run a rules worker for some partitions (scale-out: ingest --rules forward)"
    )
    p.add_argument(
        "--partitions",
        default="all",
        help="partitions to own: 'all', '0,2', '0-3' (of COLDCHAIN_RULES__PARTITIONS; default all)",
    )
    p.add_argument("--fleet", type=Path, help="fleet file (default: COLDCHAIN_FLEET_PATH)")
    p.add_argument(
        "--client-id-prefix",
        default=RULES_CLIENT_ID_PREFIX,
        help="MQTT client ids are PREFIX-<partition> (default coldchain-rules; must be the "
        "default with COLDCHAIN_RULES__PARTITION_USERS, the broker users' names)",
    )
    p.add_argument("--stop-timeout-s", type=float, default=8.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from coldchain.rules import parse_partitions
    from ingest.rules_worker import RulesWorker  # adapters load only when the command runs

    overrides = {"fleet_path": args.fleet} if args.fleet else {}
    settings = load_settings(**overrides)
    try:
        owned = parse_partitions(args.partitions, settings.rules.partitions)
    except ValueError as exc:
        print(f"coldchain rules: --partitions: {exc}", file=sys.stderr)
        return 2
    fleet = load_fleet(settings.fleet_path)
    try:
        worker = RulesWorker(settings, fleet, owned, client_id_prefix=args.client_id_prefix)
    except ValueError as exc:
        print(f"coldchain rules: {exc}", file=sys.stderr)
        return 2
    banner = (
        f"coldchain rules: partitions {owned} of {settings.rules.partitions}, "
        f"MQTT {settings.mqtt.host}:{settings.mqtt.port}, lease owner {worker.leases.owner}"
    )
    return serve(
        worker,
        banner,
        stop_timeout_s=args.stop_timeout_s,
        on_hangup=worker.reload_fleet,
        exit_status=worker.exit_status,
    )
