"""All settings, in one model validated at start-up.

Environment variables ``COLDCHAIN_*`` set them; nested sections use ``__``, e.g.
``COLDCHAIN_MQTT__PORT=1884`` or ``COLDCHAIN_INFLUX__URL=http://db:8086``. A bad value fails at
start-up with the option's name and value (see ``load_settings``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from coldchain.exceptions import ConfigError

__all__ = [
    "AlertSettings",
    "ApiRole",
    "ApiSettings",
    "EpcisSettings",
    "InfluxSettings",
    "MqttSettings",
    "RulesSettings",
    "Settings",
    "SpoolSettings",
    "ValidationSettings",
    "load_settings",
]


# A misspelt nested option (``COLDCHAIN_MQTT__PROT``) fails at start-up instead of being ignored.
_SECTION = ConfigDict(extra="forbid")


class MqttSettings(BaseModel):
    model_config = _SECTION

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    client_id: str = Field(default="coldchain-ingest-1", min_length=1, max_length=64)
    # Empty: a plain (not shared) subscription, for a deployment of exactly one ingest process.
    # mosquitto 2.0 restores a plain subscription from its store after a restart but not a
    # shared one, which ingest must make again first (docs/operations.md, broker restarts).
    share_group: str = Field(default="coldchain-ingest", pattern=r"^[A-Za-z0-9_-]*$")
    # Bound on unacknowledged messages the broker may have in flight to one ingest process.
    max_inflight: int = Field(default=2000, ge=1, le=65535)
    session_expiry_s: int = Field(default=7 * 86400, ge=0)
    # MQTT 3.1.1 costs paho about half as much per message as MQTT 5 (no property parsing per
    # PUBLISH). Its sessions expire by the broker's persistent_client_expiration instead of
    # session_expiry_s, and it has no Receive Maximum, which mosquitto 2.0 honours only for the
    # first window anyway: ingest bounds its own in-flight work with either (docs/architecture.md).
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    # Liveness (ingest/liveness.py): a probe through this process's own share group every
    # probe_interval_s; nothing received for probe_missed_intervals of them raises
    # mqtt_not_receiving and subscribes again. Down longer than disconnected_grace_s raises
    # mqtt_disconnected.
    probe_interval_s: float = Field(default=5.0, gt=0, le=3600)
    probe_missed_intervals: int = Field(default=3, ge=1, le=1000)
    disconnected_grace_s: float = Field(default=15.0, ge=0, le=86400)
    # TLS to the broker (its TLS listener, 8883 in deploy/mosquitto/mosquitto.conf), for ingest
    # processes and rules workers on other machines than the broker. Set: the connection is
    # TLS 1.2+, the broker's certificate verified against this CA (PEM) and its host name.
    # A client certificate and key (PEM) are sent when the broker asks for one.
    tls_ca_path: FilePath | None = None
    tls_cert_path: FilePath | None = None
    tls_key_path: FilePath | None = None

    @model_validator(mode="after")
    def _tls_files_go_together(self) -> MqttSettings:
        if (self.tls_cert_path is None) != (self.tls_key_path is None):
            raise ValueError("tls_cert_path and tls_key_path are given together or not at all")
        if self.tls_cert_path is not None and self.tls_ca_path is None:
            raise ValueError("a client certificate needs tls_ca_path (the broker's CA)")
        return self


class InfluxSettings(BaseModel):
    model_config = _SECTION

    url: str = "http://127.0.0.1:8086"
    database: str = Field(default="coldchain", pattern=r"^[A-Za-z0-9_.-]+$")
    username: str | None = None
    password: str | None = None
    # InfluxDB 2.x/3.x v1-compatibility: a token is sent as "Authorization: Token ...".
    token: str | None = None
    batch_max_points: int = Field(default=5000, ge=1, le=100_000)
    gzip: bool = True
    timeout_s: float = Field(default=10.0, gt=0)
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)


class SpoolSettings(BaseModel):
    model_config = _SECTION

    path: Path = Path("var/spool.sqlite3")
    batch_max_messages: int = Field(default=2000, ge=1, le=100_000)
    linger_ms: float = Field(default=5.0, ge=0, le=10_000)
    # FULL survives power loss (fsync per group commit); NORMAL survives process crashes only.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # Disk kept in hand next to the spool (<path>.reserve), given back when the disk fills so the
    # spool can still drain and checkpoint; appends resume once it can be taken again. 0: off.
    reserve_mb: int = Field(default=64, ge=0, le=65_536)


class ValidationSettings(BaseModel):
    model_config = _SECTION

    # A 5,000-sample backlog batch of a rich device is ~3.8 MB (docs/operations.md); the
    # broker refuses packets above 4 MiB + 64 KiB (max_packet_size), so one over this still
    # reaches ingest and is dead-lettered with its reason.
    max_payload_bytes: int = Field(default=4_194_304, ge=256)
    max_future_skew_s: float = Field(default=300.0, ge=0)
    max_sample_age_s: float = Field(default=30 * 86400.0, gt=0)
    # Dead letters (with the full payloads they reference) older than this are pruned.
    dead_letter_retention_days: float = Field(default=30.0, gt=0)
    # How long every custody scan an impossible sequence depends on must have been in before
    # the trace flags it (late MQTT scans may still explain it): coldchain.custody.
    custody_grace_s: float = Field(default=3600.0, ge=0)


class AlertSettings(BaseModel):
    """Delivery of the alert outbox by ingest and ``coldchain alerts deliver`` (docs/alerts.md)."""

    model_config = _SECTION

    # The routing file (channels, routes, quiet hours, escalations). None: every alert to the
    # MQTT alert topic only.
    routing_path: Path | None = None
    # Without a routing file: how long to wait for the broker's PUBACK of one round.
    ack_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Backoff between attempts of one delivery: retry_base_s, doubling, up to retry_max_s.
    retry_base_s: float = Field(default=1.0, ge=0.01, le=3600)
    retry_max_s: float = Field(default=300.0, ge=0.01, le=86_400)
    # Deliveries claimed per channel and round (each claim is leased for batch x timeout).
    batch: int = Field(default=20, ge=1, le=1000)
    # Fault tests only: a queued notification waits this long before it is routed (so a kill
    # lands between recording a change and delivering it). 0 in production.
    hold_s: float = Field(default=0.0, ge=0, le=3600)
    # Finished notifications (routed, none of their deliveries pending) older than this are
    # deleted with their delivery rows, once an hour; 0 keeps them for ever. The excursions and
    # acknowledgements stay (audited). At least the accepted sample age: a recompute must still
    # find a change's key to know it was sent (load_settings checks).
    retention_days: float = Field(default=90.0, ge=0)


class RulesSettings(BaseModel):
    """Where the rules engine runs (docs/architecture.md, "Rules owned per asset")."""

    model_config = _SECTION

    # "inprocess": each ingest process evaluates what it received (one ingest process only).
    # "subprocess": the same, in a child process of ingest fed over a pipe: the rules get a
    # core of their own (one ingest process only; wall clock; ingest/rules_child.py).
    # "forward": ingest stores and forwards accepted samples to the partition topics
    # coldchain/v1/rules/<k>, evaluated by `coldchain rules` workers (any number of ingests).
    mode: Literal["inprocess", "subprocess", "forward"] = "inprocess"
    # Partitions of the asset ids (stable hash mod this): the same in every process. Changing
    # it moves assets between partitions: stop everything and let the workers drain first.
    partitions: int = Field(default=8, ge=1, le=1024)
    # A worker saves its partition's checkpoint, then acknowledges what it covers, this often.
    checkpoint_s: float = Field(default=1.0, gt=0, le=600)
    # A worker judges data gaps this far behind its clock (ms): samples reach it after their
    # InfluxDB write and a broker hop, and one in flight must not read as silence.
    silence_lag_ms: int = Field(default=5000, ge=0, le=3_600_000)
    # A worker holds each forwarded item this long (wall seconds) to evaluate an asset's items
    # in the order the ingest processes received them; longer than the forwarding delay.
    reorder_s: float = Field(default=2.0, ge=0, le=600)
    # A worker's partition k connects as broker user coldchain-rules-<k> (its client id) with
    # COLDCHAIN_MQTT__PASSWORD, the secret all partition users share (`coldchain broker users
    # --rules-partitions N`): needed where the broker binds client ids to usernames.
    partition_users: bool = False
    # A worker holds a fencing lease per partition in the registry (registry/leases.py): this
    # long (s) past its last renewal, so a worker that died is taken over after about this.
    lease_ttl_s: float = Field(default=30.0, ge=1.0, le=3600)
    # ... renewed this often (s); default lease_ttl_s / 3. A worker waiting for a lease asks
    # this often too (at most every second).
    lease_renew_s: float | None = Field(default=None, gt=0, le=1200)

    @field_validator("lease_renew_s")
    @classmethod
    def _renew_within_ttl(cls, value: float | None, info: ValidationInfo) -> float | None:
        ttl = info.data.get("lease_ttl_s")
        if value is not None and isinstance(ttl, float | int) and value > ttl / 2:
            raise ValueError(
                f"must be at most half of lease_ttl_s ({ttl} s): one late renewal would lose "
                "the lease"
            )
        return value

    @property
    def lease_renew_interval_s(self) -> float:
        """How often a worker renews its leases (s): ``lease_renew_s`` or a third of the TTL."""
        return self.lease_renew_s if self.lease_renew_s is not None else self.lease_ttl_s / 3


ApiRole = Literal["admin", "operator", "integrator", "regulator"]


class ApiSettings(BaseModel):
    model_config = _SECTION

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # API key -> role. Empty: the API is open to whoever reaches it (local use only). Set it as
    # JSON, COLDCHAIN_API__KEYS='{"key": "regulator"}': the COLDCHAIN_API__KEYS__<key> form
    # lowercases the key. repr=False keeps the keys out of logged settings.
    keys: dict[str, ApiRole] = Field(default_factory=dict, repr=False)
    # Raw readings one trace or report may stream for its exact statistics (about 6 s of work
    # on a small machine); a larger one is refused with 422 (docs/api.md).
    trace_max_readings: int = Field(default=2_000_000, ge=1)


class EpcisSettings(BaseModel):
    """The EPCIS 2.0 export (docs/epcis.md, "Identifiers")."""

    model_config = _SECTION

    # Roots the URIs of what has no GS1 key: <base_uri>/shipment/<id>, <base_uri>/asset/<id>,
    # ... An address the organisation controls; http(s), no query or fragment.
    base_uri: str = Field(
        default="https://coldchain.example/id",
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^?#\s]*)?$",
        max_length=200,
    )
    # Set (6..12): an SSCC shipment id is exported as its EPC URI urn:epc:id:sscc:...; unset:
    # as the GS1 Digital Link https://id.gs1.org/00/<sscc> (same eventIDs either way).
    sscc_company_prefix_length: int | None = Field(default=None, ge=6, le=12)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="COLDCHAIN_", env_nested_delimiter="__", extra="forbid"
    )

    fleet_path: Path = Path("fleet/demo.yaml")
    # How often ingest looks for a changed fleet file (seconds; 0: only on SIGHUP).
    fleet_reload_s: float = Field(default=5.0, ge=0, le=86_400)
    # Product profiles merged over the packaged presets (coldchain/rules/presets.yaml).
    profiles_path: Path | None = None
    registry_url: str = "sqlite:///var/registry.sqlite3"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Registry mirror pass interval (ingest/mirror.py); 0 turns the mirror off.
    mirror_interval_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    spool: SpoolSettings = SpoolSettings()
    validation: ValidationSettings = ValidationSettings()
    api: ApiSettings = ApiSettings()
    alerts: AlertSettings = AlertSettings()
    epcis: EpcisSettings = EpcisSettings()
    rules: RulesSettings = RulesSettings()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and overrides); raises ConfigError naming the option."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc, value = _redact([str(p) for p in first["loc"]], first.get("input"))
        option = "COLDCHAIN_" + "__".join(loc).upper()
        raise ConfigError(option, value, first["msg"]) from exc
    except SettingsError as exc:
        # A section given whole as unparsable JSON, e.g. COLDCHAIN_MQTT='{bad'.
        match = re.search(r'field "([^"]+)"', str(exc))
        option = "COLDCHAIN_" + (match.group(1).upper() if match else "*")
        raise ConfigError(option, os.environ.get(option), str(exc)) from exc
    _check_across_sections(settings)
    return settings


def _check_across_sections(settings: Settings) -> None:
    """Rules that tie options of two sections; ConfigError naming the first option."""
    days = settings.alerts.retention_days
    age_days = settings.validation.max_sample_age_s / 86400.0
    if days and days < age_days:
        raise ConfigError(
            "COLDCHAIN_ALERTS__RETENTION_DAYS",
            days,
            f"at least the accepted sample age ({age_days:g} days, "
            "COLDCHAIN_VALIDATION__MAX_SAMPLE_AGE_S), or 0 to keep alerts for ever: a recompute "
            "of older data would find a pruned notification's key gone and send it again",
        )


# Options whose values are secrets. An API key is also the dict key under ``api.keys``, so the
# location is cut there too: a mistyped role must not put the key in an error message or a log.
_SECRETS = frozenset({"password", "token", "keys"})


def _redact(loc: list[str], value: object) -> tuple[list[str], object]:
    for i, part in enumerate(loc):
        if part in _SECRETS:
            return loc[: i + 1], "<redacted>"
    return loc, value
