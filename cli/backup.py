"""``coldchain backup`` and ``coldchain restore``: the registry (SQLite online backup) and the
InfluxDB database (``influxd backup/restore -portable``) into/from one directory.
docs/operations.md, "Backup and restore"; deploy/backup.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run_backup", "run_restore"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--influx-rpc",
        default="127.0.0.1:8088",
        help="influxd's RPC address, its bind-address setting (default 127.0.0.1:8088)",
    )
    p.add_argument("--no-influx", action="store_true", help="the registry only")


def register(sub: Any) -> None:
    b: argparse.ArgumentParser = sub.add_parser(
        "backup", help="back up the registry and the InfluxDB database into a new directory"
    )
    b.add_argument("--out", type=Path, required=True, help="new or empty directory")
    _common(b)
    b.set_defaults(func=run_backup)
    r: argparse.ArgumentParser = sub.add_parser(
        "restore", help="restore a backup into an empty registry path and a missing database"
    )
    r.add_argument("--from", dest="src", type=Path, required=True, help="backup directory")
    _common(r)
    r.set_defaults(func=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    from coldchain.settings import load_settings
    from deploy.backup import backup

    m = backup(load_settings(), args.out, influx_rpc=args.influx_rpc, influx=not args.no_influx)
    print(f"{args.out}: registry sha256 {m.registry_sha256}; influx {m.influx_database or '-'}")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from coldchain.settings import load_settings
    from deploy.backup import restore

    m = restore(load_settings(), args.src, influx_rpc=args.influx_rpc, influx=not args.no_influx)
    print(f"restored {args.src} (made {m.created_utc})")
    return 0
