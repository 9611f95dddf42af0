"""``coldchain keys create|list|revoke``: API keys in the registry (docs/api.md, "API keys").

The secret of a new key is printed once, by ``create``, and never again: only its SHA-256 is
stored. Every create and revoke is an entry of the audit log (who, when, role, expiry, scope;
never the secret).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "parse_duration_s",
    "parse_rfc3339_ms",
    "register",
    "run_create",
    "run_list",
    "run_revoke",
]

_DURATION = re.compile(r"(\d+)([dhms])")
_UNIT_S = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_duration_s(text: str) -> int:
    """``"90d"``, ``"12h"``, ``"1d12h"`` -> seconds; ValueError otherwise."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration like 90d, 12h or 1d12h")
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def parse_rfc3339_ms(text: str) -> int:
    """RFC 3339 with an explicit offset -> epoch ms UTC; ValueError otherwise (a time without
    an offset would be read in this machine's zone, so it is refused)."""
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time (e.g. 2027-01-01T00:00:00Z)") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add one (e.g. Z or +08:00)")
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "keys", help="create, list and revoke API keys (stored in the registry as hashes)"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry-url", help="SQLAlchemy URL (default: COLDCHAIN_REGISTRY_URL)")
    keys = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    c = keys.add_parser("create", parents=[common], help="create a key and print its secret once")
    c.add_argument(
        "--role", required=True, choices=["admin", "operator", "integrator", "regulator"]
    )
    c.add_argument("--name", default="", help="who or what the key is for (shown in lists)")
    when = c.add_mutually_exclusive_group()
    when.add_argument("--expires", help="expiry, RFC 3339 with an offset (2027-01-01T00:00:00Z)")
    when.add_argument("--expires-in", help="expiry from now: 90d, 12h, 1d12h")
    c.add_argument(
        "--shipper",
        action="append",
        help="regulator scope: shipments of this shipper (repeatable)",
    )
    c.add_argument(
        "--shipment",
        action="append",
        help="regulator scope: this shipment id (repeatable)",
    )
    c.add_argument("--by", help="who creates it, for the audit log (default: the OS user)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=run_create)

    ls = keys.add_parser("list", parents=[common], help="list keys (never their secrets)")
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    ls.set_defaults(func=run_list)

    r = keys.add_parser("revoke", parents=[common], help="revoke a key from now on")
    r.add_argument("key_id", help="the key's id, as `keys list` shows it")
    r.add_argument("--by", help="who revokes it, for the audit log (default: the OS user)")
    r.add_argument("--reason", default="", help="why, for the audit log")
    r.set_defaults(func=run_revoke)


def _who(args: argparse.Namespace) -> str:
    """``--by``, else the OS user (the audit log needs a name; say who if there is none)."""
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        raise SystemExit("coldchain keys: cannot tell who you are; pass --by NAME") from None


def _open(args: argparse.Namespace) -> Any:
    from coldchain.settings import load_settings
    from registry import open_registry

    return open_registry(args.registry_url or load_settings().registry_url)


def _describe(key: Any, now_ms: int) -> dict[str, Any]:
    scope = key.scope
    return {
        "key_id": key.key_id,
        "role": key.role,
        "name": key.name,
        "status": key.status(now_ms),
        "created": _time(key.created_ms),
        "created_by": key.created_by,
        "expires": None if key.expires_ms is None else _time(key.expires_ms),
        "revoked": None if key.revoked_ms is None else _time(key.revoked_ms),
        "revoked_by": key.revoked_by,
        "scope": None
        if scope is None
        else {"shippers": list(scope.shippers), "shipments": list(scope.shipments)},
    }


def _scope_text(scope: dict[str, list[str]] | None) -> str:
    if scope is None:
        return "all shipments"
    parts = []
    if scope["shippers"]:
        parts.append("shippers " + ", ".join(scope["shippers"]))
    if scope["shipments"]:
        parts.append("shipments " + ", ".join(scope["shipments"]))
    return "; ".join(parts) or "nothing"


def run_create(args: argparse.Namespace) -> int:
    from registry import wall_clock_ms

    try:
        expires_ms = None
        if args.expires is not None:
            expires_ms = parse_rfc3339_ms(args.expires)
        elif args.expires_in is not None:
            expires_ms = wall_clock_ms() + parse_duration_s(args.expires_in) * 1000
    except ValueError as exc:
        print(f"coldchain keys create: {exc}", file=sys.stderr)
        return 2
    scoped = args.shipper is not None or args.shipment is not None
    # A refused key (scope on a non-regulator, expiry past, bad id) is RecordRejected: main()
    # prints its message and exits 2.
    with _open(args) as registry:
        key, token = registry.keys.create(
            args.role,
            created_by=_who(args),
            name=args.name,
            expires_ms=expires_ms,
            shippers=(args.shipper or []) if scoped else None,
            shipments=(args.shipment or []) if scoped else None,
        )
        info = _describe(key, wall_clock_ms())
    if args.json:
        print(json.dumps(info | {"secret": token}, indent=2))
        return 0
    print(f"key id   {info['key_id']}")
    print(f"role     {info['role']}")
    print(f"name     {info['name'] or '-'}")
    print(f"expires  {info['expires'] or 'never'}")
    if info["role"] == "regulator":
        print(f"scope    {_scope_text(info['scope'])}")
    print()
    print("secret (shown once; send it in the X-API-Key header; it cannot be shown again):")
    print(token)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from registry import wall_clock_ms

    with _open(args) as registry:
        keys = registry.keys.list()
    now = wall_clock_ms()
    rows = [_describe(k, now) for k in keys]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no API keys (create one with `coldchain keys create --role ...`)")
        return 0
    header = f"{'key id':<13} {'role':<10} {'status':<8} {'expires':<21} {'name':<20} scope"
    print(header)
    for r in rows:
        scope = _scope_text(r["scope"]) if r["role"] == "regulator" else "-"
        print(
            f"{r['key_id']:<13} {r['role']:<10} {r['status']:<8} {r['expires'] or 'never':<21} "
            f"{r['name'] or '-':<20} {scope}"
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        key, changed = registry.keys.revoke(args.key_id, by=_who(args), reason=args.reason)
    when = _time(key.revoked_ms)
    if changed:
        print(f"key {key.key_id} ({key.role}) revoked at {when}")
    else:
        print(f"key {key.key_id} ({key.role}) was already revoked at {when}")
    return 0
