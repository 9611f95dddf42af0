"""``coldchain schema``: print the JSON Schema of the v1 telemetry payload (docs/telemetry.md)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from coldchain.contract import telemetry_json_schema

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "schema", help="print the JSON Schema of the telemetry payload"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(telemetry_json_schema(), indent=2, sort_keys=True))
    return 0
