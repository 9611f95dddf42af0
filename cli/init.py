"""``coldchain init``: create or migrate the registry database (idempotent).

Runs the Alembic migrations on ``COLDCHAIN_REGISTRY_URL`` (or ``--registry-url``) up to this
code's head; ``--verify-audit`` then checks the audit hash chain. (InfluxDB provisioning will
join this command.)
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "init", help="create or migrate the registry database (safe to repeat)"
    )
    p.add_argument(
        "--registry-url",
        help="SQLAlchemy database URL (default: COLDCHAIN_REGISTRY_URL, "
        "sqlite:///var/registry.sqlite3)",
    )
    p.add_argument(
        "--verify-audit",
        action="store_true",
        help="after migrating, verify the audit log's hash chain (exit 1 if broken)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Adapters load only when the command runs.
    from coldchain.settings import load_settings
    from registry import open_registry, upgrade
    from registry.db import redacted

    url: str = args.registry_url or load_settings().registry_url
    revision = upgrade(url)
    print(f"registry {redacted(url)}: schema at revision {revision}")
    if args.verify_audit:
        with open_registry(url) as registry:
            report = registry.verify_audit_chain()
        print(report)
        if not report.ok:
            return 1
    return 0
