"""coldchain: the domain library every app imports.

It holds the telemetry contract, the fleet registry model, line-protocol encoding, settings and
(pure) rules. It imports no MQTT, HTTP or SQL client: adapters in ingest/, api/ and simulators/
do I/O around it.
"""

from coldchain.exceptions import (
    ColdchainError,
    ConfigError,
    RegistryError,
    StoreError,
    TelemetryRejected,
    WriteRejected,
)
from coldchain.fleet import Fleet, load_fleet
from coldchain.settings import Settings, load_settings

__all__ = [
    "ColdchainError",
    "ConfigError",
    "Fleet",
    "RegistryError",
    "Settings",
    "StoreError",
    "TelemetryRejected",
    "WriteRejected",
    "load_fleet",
    "load_settings",
]
__version__ = "0.1.0"
