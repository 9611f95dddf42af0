"""``coldchain init``: create or migrate the registry database (idempotent).

Runs the Alembic migrations on ``COLDCHAIN_REGISTRY_URL`` (or ``--registry-url``) up to this
code's head, then restores any append-only trigger of the audit log that was dropped or altered
(naming it); ``--verify-audit`` then runs ``coldchain audit verify``'s checks. (InfluxDB
provisioning will join this command.)
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
        help="after migrating, verify the audit log as `coldchain audit verify` does "
        "(exit 1 if anything is wrong)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Adapters load only when the command runs.
    from coldchain.settings import load_settings
    from registry import open_registry, restore_audit_guards, upgrade
    from registry.db import redacted

    url: str = args.registry_url or load_settings().registry_url
    revision = upgrade(url)
    print(f"registry {redacted(url)}: schema at revision {revision}")
    for name in restore_audit_guards(url):
        # Someone dropped or altered it: what it guarded since then is for `audit verify`.
        print(f"restored audit guard trigger {name} (it was missing or altered)")
    if args.verify_audit:
        with open_registry(url) as registry:
            report = registry.trail.verify()
        print(report)
        if not report.ok:
            return 1
    return 0
