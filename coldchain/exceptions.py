"""Every error coldchain raises on purpose.

::

    ColdchainError
     ├── ConfigError          a setting or config file has a bad value (names option and value)
     │    └── ProfileError    a product-profile file or preset has a bad value (names field, value)
     ├── RegistryError        the fleet file is inconsistent (duplicate ids, unknown profile)
     ├── TelemetryRejected    a message or sample broke the contract; dead-lettered
     ├── LeaseLost            a write fenced by a lease was refused: another owner holds the
     │                        lease now (a newer fencing token); this owner must stop writing
     └── StoreError           a store adapter failed (spool, InfluxDB), third-party errors mapped
          ├── WriteRejected   InfluxDB refused points for good (4xx): retrying will not help
          ├── RecordRejected  the registry DB refused a record for good (unknown reference,
          │    │              contradictory duplicate, constraint): retrying will not help
          │    ├── RecordInvalid   the values themselves are wrong (HTTP 422)
          │    ├── RecordConflict  the record contradicts what is stored (HTTP 409)
          │    └── RecordNotFound  the record asked for does not exist (HTTP 404)
          └── SpoolError      the spool (SQLite) could not read or write
               ├── SpoolFull     the disk under the spool is full: retry once space is back
               └── SpoolCorrupt  the spool file is damaged: retrying will not help

Adapters catch third-party exceptions (sqlite3, httpx, paho) and raise these, so callers never
depend on a client library's hierarchy.
"""

from __future__ import annotations

__all__ = [
    "ColdchainError",
    "ConfigError",
    "LeaseLost",
    "ProfileError",
    "RecordConflict",
    "RecordInvalid",
    "RecordNotFound",
    "RecordRejected",
    "RegistryError",
    "SpoolCorrupt",
    "SpoolError",
    "SpoolFull",
    "StoreError",
    "TelemetryRejected",
    "WriteRejected",
]


class ColdchainError(Exception):
    """Base of all coldchain errors."""


class ConfigError(ColdchainError):
    """A configuration option has a bad value."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        self.option = option
        self.value = value
        self.reason = reason
        super().__init__(f"{option}={value!r}: {reason}")


class ProfileError(ConfigError):
    """A product profile (YAML file, preset or assignment) has a bad value.

    ``option`` is the dotted path of the field (e.g. ``profiles.frozen.rules.0.max_c``).
    """


class RegistryError(ColdchainError):
    """The device registry (fleet file) is inconsistent."""


class TelemetryRejected(ColdchainError):
    """A telemetry message or one of its samples broke the contract.

    ``reason`` is a short stable code (for counting), ``field`` the JSON path of the offending
    value, ``value`` a bounded repr of it, ``device_id`` the device it came from (from the topic
    when the payload could not be read).
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        device_id: str | None,
        field: str = "",
        value: object = None,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.device_id = device_id
        self.field = field
        self.value = _bounded_repr(value)
        where = f" at {field}" if field else ""
        super().__init__(f"{reason}{where} (device {device_id}): {detail}; value={self.value}")


class LeaseLost(ColdchainError):
    """A write fenced by lease ``name`` under ``token`` was refused, and nothing of it was
    written: the lease is no longer held by ``owner`` under that token (another owner acquired
    it after it expired, it was released, or it was never acquired). ``holder`` and
    ``holder_token`` say who holds it now (None: nobody). Retrying never helps: the owner must
    stop writing for ``name`` (a rules worker stops that partition; docs/operations.md).
    Not a StoreError: nothing failed, the fence did its job (registry/leases.py).
    """

    def __init__(
        self,
        name: str,
        owner: str,
        token: int,
        *,
        holder: str | None,
        holder_token: int | None,
    ) -> None:
        self.name = name
        self.owner = owner
        self.token = token
        self.holder = holder
        self.holder_token = holder_token
        if holder_token is None:
            now = "it was never acquired"
        elif holder is None:
            now = f"it was released (token {holder_token})"
        else:
            now = f"{holder!r} holds it (token {holder_token})"
        super().__init__(
            f"lease {name!r} is no longer held by {owner!r} under fencing token {token}: "
            f"{now}; the write was refused"
        )


class StoreError(ColdchainError):
    """A store adapter failed; usually transient (retry)."""


class WriteRejected(StoreError):
    """InfluxDB rejected the points for good (HTTP 4xx other than 429)."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"InfluxDB rejected the write with HTTP {status}: {body[:500]}")


class RecordRejected(StoreError):
    """The registry database refused a record for good: an unknown shipment or excursion, a
    duplicate that contradicts the stored record, a violated constraint. Retrying will not help.
    """


class RecordInvalid(RecordRejected):
    """The record's values are wrong whatever is stored: a malformed id, an unknown product
    profile, asset or compartment, a time too far in the future. The message names the field,
    the value and the rule it breaks."""


class RecordConflict(RecordRejected):
    """The record contradicts what is stored: the same id with other details (the message names
    the differing fields), a custody sequence that cannot have happened, a change to a
    cancelled shipment."""


class RecordNotFound(RecordRejected):
    """The record the request is about (a shipment, an excursion) does not exist."""

    def __init__(self, kind: str, record_id: str) -> None:
        self.kind = kind
        self.record_id = record_id
        shown = record_id if len(record_id) <= 140 else record_id[:137] + "..."
        super().__init__(f"{kind} {shown!r} not found")


class SpoolError(StoreError):
    """The spool database failed a read or a write; usually transient (retry)."""


class SpoolFull(SpoolError):
    """The filesystem under the spool has no space left (SQLITE_FULL, ENOSPC)."""


class SpoolCorrupt(SpoolError):
    """The spool file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB): retrying will not help; the
    start-up check moves such a file aside (ingest/spool_guard.py)."""


def _bounded_repr(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
