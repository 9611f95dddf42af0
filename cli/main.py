"""``coldchain`` entry point. Each subcommand lives in its own module exposing
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from coldchain.exceptions import ColdchainError

__all__ = ["main"]

# Subcommand modules, in the order ``coldchain --help`` lists them.
SUBCOMMANDS = [
    "cli.alerts",
    "cli.api",
    "cli.audit",
    "cli.backup",
    "cli.broker",
    "cli.custody",
    "cli.dashboards",
    "cli.deadletters",
    "cli.demo",
    "cli.excursions",
    "cli.ingest",
    "cli.init",
    "cli.keys",
    "cli.rules",
    "cli.schema",
    "cli.shipments",
    "cli.simulate",
    "cli.spool",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coldchain", description="Cold-chain monitoring: telemetry, rules, traceability."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ColdchainError as exc:
        print(f"coldchain {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
