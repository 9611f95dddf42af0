"""What ``coldchain shipments``, ``custody`` and ``excursions`` share: the registry options, the
service layer opened on them (services/bootstrap.py, as the HTTP API wires it), RFC 3339 times
read with the API's rule, and output as text or ``--json``.

These commands write to the registry database directly: whoever can run them can open it, so
they act as admin; ``--by`` names the person recorded (default ``cli:<user>``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldchain.exceptions import RecordInvalid

if TYPE_CHECKING:
    from services import Services

__all__ = [
    "add_common",
    "emit",
    "fmt_time",
    "open_cli_services",
    "parse_time",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def add_common(p: argparse.ArgumentParser, *, by: bool = False) -> None:
    """``--registry-url``, ``--fleet``, ``--json`` (and ``--by`` for writes) on ``p``."""
    p.add_argument(
        "--registry-url",
        help="SQLAlchemy database URL (default: COLDCHAIN_REGISTRY_URL)",
    )
    p.add_argument("--fleet", type=Path, help="fleet file (default: COLDCHAIN_FLEET_PATH)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    if by:
        p.add_argument("--by", help="who does this, as recorded (default: cli:<your user name>)")


@contextmanager
def open_cli_services(args: argparse.Namespace) -> Iterator[Services]:
    """The service layer on the registry and fleet the options (or COLDCHAIN_*) name."""
    from coldchain.settings import load_settings
    from services import open_services

    overrides: dict[str, Any] = {}
    if args.registry_url:
        overrides["registry_url"] = args.registry_url
    if getattr(args, "fleet", None) is not None:
        overrides["fleet_path"] = args.fleet
    with open_services(load_settings(**overrides)) as services:
        yield services


def parse_time(option: str, value: str | None) -> int | None:
    """Epoch ms of an RFC 3339 option value (the API's rule: an offset is required)."""
    if value is None:
        return None
    from pydantic import TypeAdapter, ValidationError

    from services.models import Rfc3339, epoch_ms

    try:
        return epoch_ms(TypeAdapter(Rfc3339).validate_python(value))
    except ValidationError as exc:
        msg = exc.errors(include_url=False)[0]["msg"]
        raise RecordInvalid(
            f"{option} {value!r}: {msg} (RFC 3339 with an offset, e.g. 2026-03-01T12:00:00Z)"
        ) from None


def fmt_time(ms: int | None) -> str:
    """RFC 3339 UTC, or "-"."""
    if ms is None:
        return "-"
    t = _EPOCH + timedelta(milliseconds=ms)
    return t.isoformat(timespec="milliseconds" if ms % 1000 else "seconds").replace("+00:00", "Z")


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    """``value`` as JSON with ``--json``, else ``text``."""
    if args.json:
        json.dump(value, sys.stdout, indent=2, ensure_ascii=False, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(text)
