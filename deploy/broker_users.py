"""The broker's users and ACL, written from the fleet file: ``coldchain broker users``.

One MQTT user per device (username = device id, which the broker also takes as the client id:
``use_username_as_clientid true`` in deploy/mosquitto/mosquitto.conf), one per ingest process,
the operators' (alert consumers') users, and with ``rules_partitions`` N one user per rules
partition (``coldchain-rules-<k>``, the partition's fixed client id, so the client-id binding
keeps each partition's session its own). The password file is hashed by mosquitto's own
``mosquitto_passwd -U`` (a plain ``user:password`` file hashed in place), written next to the
target and renamed over it, so a broker reading it never sees half a file and no existing file
is ever recreated by ``mosquitto_passwd -c``. Secrets come from a secrets file (YAML mapping
username -> password, mode 0600); users without one get a generated secret, added to that file
and returned so the caller can show it once. The rules partition users share one secret, kept
under the key ``coldchain-rules-*`` (RULES_SECRET_KEY: not a valid username, so it names no
user): a worker owning several partitions needs one password. docs/operations.md, "Broker users".
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from coldchain.exceptions import ColdchainError
from coldchain.fleet import Fleet
from coldchain.rules import RULES_CLIENT_ID_PREFIX, rules_client_id, rules_topic

__all__ = [
    "DEFAULT_INGEST_USERS",
    "DEFAULT_OPERATOR_USERS",
    "RULES_SECRET_KEY",
    "BrokerUsers",
    "BrokerUsersError",
    "acl_text",
    "fleet_device_users",
    "parse_names",
    "write_broker_users",
]

DEFAULT_INGEST_USERS = ("coldchain-ingest-1",)
DEFAULT_OPERATOR_USERS = ("coldchain-operator",)
# The secrets-file key of the one secret every rules partition user shares.
RULES_SECRET_KEY = f"{RULES_CLIENT_ID_PREFIX}-*"
# A username goes into the password file (``user:hash``) and the ACL (``user NAME``); the
# device id pattern of the telemetry contract (docs/telemetry.md) is safe in both.
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SECRET_BYTES = 24


class BrokerUsersError(ColdchainError):
    """A username is malformed or used twice, the secrets file is unreadable or too open, or
    mosquitto_passwd is missing or failed."""


@dataclass(frozen=True)
class BrokerUsers:
    """Who may connect: devices (write below their own topics), ingest processes (read all
    device topics through their share group, publish alerts and their liveness probe),
    operators (read alerts), gateways (write any device's topics: trusted field gateways
    and the simulator's multiplexing mode, docs/simulators.md) and ``rules_partitions`` rules
    partition users ``coldchain-rules-<k>``, k in 0 .. N-1 (read their partition's topic,
    publish alerts; 0: none, when rules run inside ingest)."""

    devices: tuple[str, ...]
    ingest: tuple[str, ...] = DEFAULT_INGEST_USERS
    operators: tuple[str, ...] = DEFAULT_OPERATOR_USERS
    gateways: tuple[str, ...] = ()
    rules_partitions: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rules_partitions <= 1024:  # RulesSettings.partitions' bounds
            raise BrokerUsersError(
                f"rules partitions must be 0 .. 1024 (COLDCHAIN_RULES__PARTITIONS), "
                f"got {self.rules_partitions}"
            )
        seen: set[str] = set()
        for name in self.all():
            if not _USERNAME.match(name):
                raise BrokerUsersError(
                    f"username {name!r} is not allowed: letters, digits, '.', '_', '-', "
                    "starting with a letter or digit, at most 64 characters"
                )
            if name in seen:
                raise BrokerUsersError(f"username {name!r} is given twice (each needs its own)")
            seen.add(name)

    @property
    def rules(self) -> tuple[str, ...]:
        """The rules partition users, ``coldchain-rules-0`` .. ``coldchain-rules-<N-1>``."""
        return tuple(rules_client_id(k) for k in range(self.rules_partitions))

    def all(self) -> list[str]:
        return [*self.devices, *self.ingest, *self.operators, *self.gateways, *self.rules]


def fleet_device_users(fleet: Fleet) -> tuple[str, ...]:
    """Every device and custody scanner of the fleet, sorted: each connects as itself."""
    names: set[str] = set()
    for asset in fleet.assets.values():
        names.update(asset.devices)
        names.update(asset.scanners)
    return tuple(sorted(names))


def acl_text(users: BrokerUsers) -> str:
    """The mosquitto ACL file for ``users``. Devices get only ``pattern write`` lines on their
    own telemetry, status and events topics (docs/telemetry.md, Topics): no read, so they can
    subscribe to nothing (mosquitto 2 refuses the subscription). Patterns apply to every user;
    the service users' own device topics are harmless (no such device: dead-lettered)."""
    out = [
        "# Generated by `coldchain broker users` (deploy/broker_users.py): do not edit; run it",
        "# again after changing the fleet or the service users.",
        "# Devices: username = client id = device id; each writes only below its own topic and",
        "# reads nothing (no subscription to other devices' telemetry or to alerts).",
        "pattern write coldchain/v1/devices/%u/telemetry",
        "pattern write coldchain/v1/devices/%u/status",
        "pattern write coldchain/v1/devices/%u/events",
    ]
    for name in users.ingest:
        out += [
            "",
            "# An ingest process: reads all device topics (through its share group), publishes",
            "# alerts, and its liveness probe (ingest/liveness.py) on its own topic, read back",
            "# through a share group of its own (mosquitto 2.0 checks the topic, not the $share",
            "# subscription; the last line is for brokers that check subscriptions too).",
            f"user {name}",
            "topic read coldchain/v1/devices/#",
            "topic write coldchain/v1/alerts/#",
            "topic readwrite $share/+/coldchain/v1/devices/#",
            "topic readwrite coldchain/v1/ingest/+/probe",
            "topic readwrite $share/+/coldchain/v1/ingest/+/probe",
            "# Scale-out (rules.mode=forward): forwards accepted samples to the rules",
            "# partitions (write only); the `coldchain rules` workers' partition users read",
            '# them (docs/operations.md, "Scaling out").',
            "topic write coldchain/v1/rules/#",
        ]
    for name in users.operators:
        out += ["", "# Operators' consoles and alert consumers read alerts.", f"user {name}"]
        out.append("topic read coldchain/v1/alerts/#")
    for name in users.gateways:
        out += [
            "",
            "# A gateway publishing for many devices over few connections: trusted to write any",
            "# device's topics, so give it only to gateways you operate.",
            f"user {name}",
            "topic write coldchain/v1/devices/#",
        ]
    for k, name in enumerate(users.rules):
        probe = f"coldchain/v1/ingest/{name}/probe"  # ingest/liveness.py, the MqttSource's probe
        out += [
            "",
            f"# Rules partition {k}'s owner (`coldchain rules`, partition users on): reads its",
            "# partition only, publishes alerts, and probes its own connection's liveness.",
            f"user {name}",
            f"topic read {rules_topic(k)}",
            "topic write coldchain/v1/alerts/#",
            f"topic readwrite {probe}",
            f"topic readwrite $share/{name}-probe/{probe}",
        ]
    return "\n".join(out) + "\n"


def _read_secrets(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise BrokerUsersError(
            f"secrets file {path} is readable by others (mode {mode:o}): chmod 600 it first"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BrokerUsersError(f"cannot read secrets file {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise BrokerUsersError(f"secrets file {path}: expected a mapping of username: password")
    return dict(data)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, replacing it atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _hash_password_file(plain: Mapping[str, str], target: Path) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(tool, os.X_OK):
        raise BrokerUsersError("mosquitto_passwd is not installed (Debian: mosquitto package)")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{user}:{password}\n" for user, password in plain.items())
        # -U hashes every line of a plain file in place: one process for the whole fleet.
        done = subprocess.run([tool, "-U", tmp], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerUsersError(f"mosquitto_passwd -U failed: {done.stderr.strip()}")
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_broker_users(
    users: BrokerUsers, *, password_file: Path, acl_file: Path, secrets_file: Path
) -> dict[str, str]:
    """Write the hashed password file and the ACL for ``users``.

    Passwords come from ``secrets_file``; users it lacks get a generated one (24 random bytes,
    URL-safe), added to it (mode 0600). Rules partition users all take the secret under
    RULES_SECRET_KEY (generated the same way when missing). Secrets of users no longer listed
    stay in the file but not in the password file (the broker refuses them). Returns the
    generated secrets only (by user, or RULES_SECRET_KEY), for showing once. Raises
    BrokerUsersError (see the class)."""
    known = _read_secrets(secrets_file)
    rules = set(users.rules)
    keys = [name for name in users.all() if name not in rules]
    if rules:
        keys.append(RULES_SECRET_KEY)
    generated = {key: secrets.token_urlsafe(_SECRET_BYTES) for key in keys if key not in known}
    if generated:
        _write_private(
            secrets_file, yaml.safe_dump(known | generated, sort_keys=True, allow_unicode=True)
        )
    everyone = known | generated

    def secret(name: str) -> str:
        return everyone[RULES_SECRET_KEY if name in rules else name]

    _hash_password_file({name: secret(name) for name in users.all()}, password_file)
    acl_file.write_text(acl_text(users))
    return generated


def parse_names(values: Iterable[str] | None, default: Sequence[str]) -> tuple[str, ...]:
    """Repeated/comma-separated CLI values -> names; the default when none given."""
    if not values:
        return tuple(default)
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())
