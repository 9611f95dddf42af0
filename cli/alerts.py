"""``coldchain alerts deliver|check|status``: deliver the alert outbox without ingest, check a
routing file, show what is pending per channel (docs/alerts.md).

``deliver`` runs the same delivery stage as ingest (routing, escalation timers, per-channel
delivery with leases) until SIGTERM/SIGINT, or one round with ``--once``. Run it next to the
API when acknowledgements must be delivered while no ingest runs; running it next to ingest is
safe too: leases keep two processes from sending the same delivery at once.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from coldchain.settings import load_settings

__all__ = ["register"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "alerts", help="deliver the alert outbox, check a routing file, show delivery state"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    deliver = actions.add_parser("deliver", help="route and deliver queued alerts (no ingest)")
    deliver.add_argument("--once", action="store_true", help="one round, then exit")
    deliver.set_defaults(func=_deliver)
    check = actions.add_parser(
        "check", help="validate a routing file (and its secrets' variables), list its routes"
    )
    check.add_argument("path", type=Path, nargs="?", help="default: COLDCHAIN_ALERTS__ROUTING_PATH")
    check.set_defaults(func=_check)
    status = actions.add_parser("status", help="deliveries per channel and state, last errors")
    status.set_defaults(func=_status)


def _deliver(args: argparse.Namespace) -> int:
    from coldchain.alerts import load_routing
    from ingest.channels import MqttPublisher
    from ingest.outbox import build_alert_delivery
    from registry import open_registry, wall_clock_ms

    settings = load_settings()
    m = settings.mqtt
    routing = load_routing(settings.alerts.routing_path, settings.alerts.ack_timeout_s)
    # A connection to the broker only when the routing file has an MQTT channel.
    mqtt = None
    if any(c.type == "mqtt" for c in routing.channels.values()):
        mqtt = MqttPublisher(m, f"{m.client_id}-alerts"[:64])
    registry = open_registry(settings.registry_url)
    try:
        stage = build_alert_delivery(
            settings.alerts,
            registry,
            publish=mqtt.publish if mqtt else _no_mqtt,
            connected=mqtt.connected.is_set if mqtt else lambda: False,
            clock_ms=wall_clock_ms,
            owner=f"{m.client_id}-alerts",
            routing=routing,
        )
        if args.once:
            if mqtt is not None:
                mqtt.connected.wait(5.0)
            done = stage.deliver_round()
            stage.close()
            print(f"coldchain alerts: {done} routed or attempted", file=sys.stderr)
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        thread = threading.Thread(target=stage.run, name="alerts", daemon=True)
        thread.start()
        print("coldchain alerts: delivering", file=sys.stderr, flush=True)
        while not stop.wait(1.0) and thread.is_alive():
            pass
        stage.stop()
        thread.join(10.0)
        return 0 if stop.is_set() else 1  # the thread died: say so
    finally:
        if mqtt is not None:
            mqtt.close()
        registry.close()


def _no_mqtt(topic: str, payload: bytes) -> Any:
    raise RuntimeError("no MQTT channel is configured")


def _check(args: argparse.Namespace) -> int:
    from coldchain.alerts import load_routing
    from ingest.channels import MqttSender, build_channels

    path = args.path if args.path is not None else load_settings().alerts.routing_path
    routing = load_routing(path)
    # Building the channels checks what the file leaves to the environment (secrets).
    channels = build_channels(
        routing, mqtt=lambda name, c: MqttSender(name, _no_mqtt, lambda: False, c.ack_timeout_s)
    )
    for sender in channels.values():
        sender.close()
    print(f"time zone {routing.timezone}")
    for name, ch in routing.channels.items():
        print(f"channel {name}: {ch.type}")
    for r in routing.routes:
        quiet = ""
        if r.quiet_hours is not None:
            q = r.quiet_hours
            quiet = f", quiet {q.start:%H:%M}-{q.end:%H:%M} {q.timezone or routing.timezone}"
            quiet += f" ({q.action})"
        print(f"route {r.name} -> {', '.join(r.channels)}{quiet}")
    for e in routing.escalations:
        print(f"escalation {e.name}: after {e.after_min:g} min -> {', '.join(e.channels)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from registry import open_registry

    settings = load_settings()
    with open_registry(settings.registry_url) as registry:
        unrouted = registry.outbox_entries(routed=False)
        rows = registry.alert_deliveries()
    counts = Counter((d.channel, d.state) for d in rows)
    print(f"unrouted entries: {len(unrouted)}")
    for (channel, state), n in sorted(counts.items()):
        print(f"{channel:<24} {state:<10} {n}")
    for d in rows:
        if d.state == "pending" and d.last_error:
            print(f"pending {d.channel} {d.key} attempts={d.attempts}: {d.last_error}")
    return 0
