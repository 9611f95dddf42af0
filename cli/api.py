"""``coldchain api``: serve the HTTP API (docs/api.md) with uvicorn until SIGTERM/SIGINT.

Settings come from ``COLDCHAIN_*`` environment variables (``COLDCHAIN_API__HOST``, ``__PORT``,
``__KEYS``; the registry, InfluxDB and fleet settings as for ingest). The registry, InfluxDB
client, fleet and profiles are opened before uvicorn starts, so a bad setting or an unmigrated
registry ends the command with one line instead of a traceback from the app's start-up. With no
API key anywhere (registry or variable) it serves only on a loopback address.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "api", help="serve the traceability HTTP API (shipments, traces, excursions)"
    )
    p.add_argument("--host", help="listen address (default: COLDCHAIN_API__HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: COLDCHAIN_API__PORT, 8080)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Adapters and the web stack load only when the command runs.
    import uvicorn

    from api.app import create_app, open_backends
    from api.auth import refuse_open_off_loopback
    from coldchain.settings import load_settings

    settings = load_settings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        # Through load_settings again, so an override is validated like the variable.
        settings = load_settings(api=settings.api.model_dump() | overrides)
    with open_backends(settings) as b:
        # No key anywhere: serve open (everyone admin) only on loopback; else one line naming
        # COLDCHAIN_API__HOST (ConfigError), before uvicorn binds anything.
        refuse_open_off_loopback(settings.api.host, settings.api.keys, b.registry)
        app = create_app(
            settings, registry=b.registry, influx=b.influx, fleet=b.fleet, profiles=b.profiles
        )
        uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="info")
    return 0
