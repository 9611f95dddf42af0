"""Alert channels, pure parts (docs/alerts.md): the routing file, routing decisions with quiet
hours and escalations, the alert payload and each channel's message body and signature. The
senders (HTTP, SMTP, MQTT) live in ``ingest.channels``; the outbox in ``registry.outbox``."""

from coldchain.alerts.config import RoutingConfig, default_routing, load_routing, parse_routing
from coldchain.alerts.routing import Decision, escalations_started, quiet_until_ms, route_alert

__all__ = [
    "Decision",
    "RoutingConfig",
    "default_routing",
    "escalations_started",
    "load_routing",
    "parse_routing",
    "quiet_until_ms",
    "route_alert",
]
