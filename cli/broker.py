"""``coldchain broker users``: the broker's password file and ACL from the fleet file.

Writes ``--passwd`` (hashed by mosquitto_passwd) and ``--acl`` for every device and scanner of
the fleet (``--fleet``, default ``COLDCHAIN_FLEET_PATH``), the ingest users (one per ingest
process), operators and gateways. Secrets come from ``--secrets`` (YAML username: password,
mode 0600); missing ones are generated, added to it, and printed once on stdout. Send the
broker SIGHUP (``systemctl reload mosquitto``, ``docker compose kill -s HUP mosquitto``) to
read the new files. docs/operations.md, "Broker users".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "broker", help="write the broker's password file and ACL from the fleet file"
    )
    p.add_argument("action", choices=("users",), help="users: write password file and ACL")
    p.add_argument("--fleet", type=Path, help="fleet file (default: COLDCHAIN_FLEET_PATH)")
    p.add_argument(
        "--passwd", type=Path, default=Path("deploy/mosquitto/passwd"), help="password file"
    )
    p.add_argument("--acl", type=Path, default=Path("deploy/mosquitto/acl"), help="ACL file")
    p.add_argument(
        "--secrets",
        type=Path,
        default=Path("deploy/mosquitto/secrets.yaml"),
        help="username: password file, mode 0600; missing secrets are generated into it",
    )
    p.add_argument(
        "--ingest-user",
        action="append",
        help="an ingest process's username = client id (repeat or comma-separate; "
        "default coldchain-ingest-1)",
    )
    p.add_argument(
        "--operator-user", action="append", help="reads alerts (default coldchain-operator)"
    )
    p.add_argument(
        "--gateway-user",
        action="append",
        help="may write every device's topics (trusted gateways, the simulator's multiplexing)",
    )
    p.add_argument(
        "--rules-partitions",
        type=int,
        default=0,
        metavar="N",
        help="scale-out: one user per rules partition, coldchain-rules-0 .. coldchain-rules-<N-1> "
        "(N = COLDCHAIN_RULES__PARTITIONS), sharing one secret (key coldchain-rules-* in "
        "--secrets); default 0: none (rules run inside ingest)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from coldchain.fleet import load_fleet
    from coldchain.settings import load_settings
    from deploy.broker_users import (
        DEFAULT_INGEST_USERS,
        DEFAULT_OPERATOR_USERS,
        BrokerUsers,
        BrokerUsersError,
        fleet_device_users,
        parse_names,
        write_broker_users,
    )

    fleet_path = args.fleet or load_settings().fleet_path
    try:
        users = BrokerUsers(
            devices=fleet_device_users(load_fleet(fleet_path)),
            ingest=parse_names(args.ingest_user, DEFAULT_INGEST_USERS),
            operators=parse_names(args.operator_user, DEFAULT_OPERATOR_USERS),
            gateways=parse_names(args.gateway_user, ()),
            rules_partitions=args.rules_partitions,
        )
    except BrokerUsersError as exc:
        print(f"coldchain broker users: {exc}", file=sys.stderr)
        return 2
    generated = write_broker_users(
        users, password_file=args.passwd, acl_file=args.acl, secrets_file=args.secrets
    )
    print(
        f"{args.passwd}: {len(users.all())} users ({len(users.devices)} devices, "
        f"{len(users.rules)} rules partitions); "
        f"ACL {args.acl}; secrets in {args.secrets}"
    )
    if generated:
        print(f"generated secrets (shown once; kept in {args.secrets}, mode 0600):")
        for name, secret in generated.items():
            print(f"{name}: {secret}")
    return 0
