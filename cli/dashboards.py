"""``coldchain dashboards``: render the Grafana dashboards (dashboards/) to provisioned JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dashboards.generate import DEFAULT_OUT, write

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "dashboards", help="write the Grafana dashboard JSON"
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for path in write(args.out):
        print(path)
    return 0
