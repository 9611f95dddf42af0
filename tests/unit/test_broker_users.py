"""``coldchain broker users``: password file and ACL from the fleet file (deploy/broker_users.py),
and the broker settings that keep devices apart (deploy/mosquitto/*.conf)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from cli.main import main as coldchain
from coldchain.fleet import load_fleet
from coldchain.rules import rules_client_id, rules_topic
from coldchain.settings import Settings, ValidationSettings
from deploy.broker_users import (
    RULES_SECRET_KEY,
    BrokerUsers,
    BrokerUsersError,
    acl_text,
    fleet_device_users,
    write_broker_users,
)
from deploy.launcher import MOSQUITTO_CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "fleet" / "demo.yaml"


def _conf(name: str) -> list[list[str]]:
    text = (MOSQUITTO_CONFIG_DIR / name).read_text()
    return [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_the_checked_in_acl_is_what_the_generator_writes_by_default() -> None:
    assert (MOSQUITTO_CONFIG_DIR / "acl").read_text() == acl_text(BrokerUsers(devices=()))


def test_devices_and_scanners_of_the_fleet_are_users() -> None:
    devices = fleet_device_users(load_fleet(FLEET))
    assert "truck-jy-01-tcu" in devices and "store-gz-dock-1" in devices
    assert list(devices) == sorted(set(devices))


def test_devices_only_write_their_own_topics_and_read_nothing() -> None:
    acl = acl_text(BrokerUsers(devices=("d1",), gateways=("gw",)))
    before_users = acl.split("\nuser ")[0]
    patterns = [ln for ln in before_users.splitlines() if ln and not ln.startswith("#")]
    assert patterns == [
        "pattern write coldchain/v1/devices/%u/telemetry",
        "pattern write coldchain/v1/devices/%u/status",
        "pattern write coldchain/v1/devices/%u/events",
    ]
    # Only the gateway's block writes other devices' topics; only operators and ingest read.
    blocks = {b.splitlines()[0]: b for b in acl.split("\nuser ")[1:]}
    assert set(blocks) == {"coldchain-ingest-1", "coldchain-operator", "gw"}
    assert "topic read coldchain/v1/alerts/#" in blocks["coldchain-operator"]
    assert "topic write coldchain/v1/alerts/#" in blocks["coldchain-ingest-1"]


@pytest.mark.parametrize(
    "users",
    [
        {"devices": ("coldchain-ingest-1",)},  # a device named like a service user
        {"devices": ("a",), "ingest": ("a",)},
        {"devices": ("bad/name",)},
        {"devices": ("bad:name",)},
        {"devices": ("#",)},
    ],
)
def test_malformed_or_repeated_usernames_are_refused(users: dict[str, tuple[str, ...]]) -> None:
    with pytest.raises(BrokerUsersError):
        BrokerUsers(**users)


def _blocks(acl: str) -> dict[str, list[str]]:
    """User name -> its ACL lines (comments and blank lines left out)."""
    return {
        b.splitlines()[0]: [ln for ln in b.splitlines()[1:] if ln and not ln.startswith("#")]
        for b in acl.split("\nuser ")[1:]
    }


def test_rules_partition_users_read_only_their_partition_and_publish_alerts() -> None:
    blocks = _blocks(acl_text(BrokerUsers(devices=("d1",), rules_partitions=3)))
    for k in range(3):
        name = rules_client_id(k)  # the worker's client id for partition k
        assert name == f"coldchain-rules-{k}"
        probe = f"coldchain/v1/ingest/{name}/probe"
        assert blocks[name] == [
            f"topic read {rules_topic(k)}",
            "topic write coldchain/v1/alerts/#",
            f"topic readwrite {probe}",
            f"topic readwrite $share/{name}-probe/{probe}",
        ]
    assert "coldchain-rules-3" not in blocks
    # Ingest forwards to every partition but reads none of them (it never subscribes there).
    ingest = blocks["coldchain-ingest-1"]
    assert "topic write coldchain/v1/rules/#" in ingest
    assert not [ln for ln in ingest if "rules" in ln and ln.split()[1] != "write"]
    # Default: no rules users at all (rules run inside ingest).
    assert not [n for n in _blocks(acl_text(BrokerUsers(devices=()))) if "rules" in n]


@pytest.mark.parametrize("partitions", [-1, 1025])
def test_a_rules_partition_count_out_of_range_is_refused(partitions: int) -> None:
    with pytest.raises(BrokerUsersError, match=r"rules partitions must be 0 \.\. 1024"):
        BrokerUsers(devices=(), rules_partitions=partitions)


def test_a_device_named_like_a_rules_partition_user_is_refused() -> None:
    with pytest.raises(BrokerUsersError, match="given twice"):
        BrokerUsers(devices=("coldchain-rules-1",), rules_partitions=2)


def test_the_worker_prefix_must_be_the_broker_users_with_partition_users() -> None:
    from ingest.rules_worker import RulesWorker

    settings = Settings(rules={"partition_users": True})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"coldchain-rules-<k>"):
        RulesWorker(settings, load_fleet(FLEET), [0], client_id_prefix="other")


def _hashed(passwd: Path, user: str, password: str) -> bool:
    """The line of ``user`` is a mosquitto PBKDF2-SHA512 hash ($7$), not the plain secret.
    That the broker accepts the secret is tested against mosquitto (test_broker_isolation)."""
    line = next(ln for ln in passwd.read_text().splitlines() if ln.startswith(f"{user}:"))
    return line.split(":", 1)[1].startswith("$7$") and password not in line


def test_secrets_are_generated_once_kept_private_and_reused(tmp_path: Path) -> None:
    users = BrokerUsers(devices=("d1", "d2"))
    files = {
        "password_file": tmp_path / "passwd",
        "acl_file": tmp_path / "acl",
        "secrets_file": tmp_path / "secrets.yaml",
    }
    generated = write_broker_users(users, **files)
    assert set(generated) == set(users.all())
    assert len(set(generated.values())) == len(generated)
    for name in ("passwd", "secrets.yaml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert yaml.safe_load((tmp_path / "secrets.yaml").read_text()) == generated
    assert all(_hashed(tmp_path / "passwd", u, p) for u, p in generated.items())

    # A new device: only its secret is generated; the others are kept.
    more = BrokerUsers(devices=("d1", "d2", "d3"))
    assert set(write_broker_users(more, **files)) == {"d3"}
    kept = yaml.safe_load((tmp_path / "secrets.yaml").read_text())
    assert {k: kept[k] for k in generated} == generated
    lines = (tmp_path / "passwd").read_text().splitlines()
    assert [ln.split(":")[0] for ln in lines] == more.all()


def test_rules_partition_users_share_one_secret_under_one_key(tmp_path: Path) -> None:
    files = {
        "password_file": tmp_path / "passwd",
        "acl_file": tmp_path / "acl",
        "secrets_file": tmp_path / "secrets.yaml",
    }
    generated = write_broker_users(BrokerUsers(devices=("d1",), rules_partitions=2), **files)
    # One secret for every partition user, kept under the documented key, not per user.
    assert set(generated) == {"d1", "coldchain-ingest-1", "coldchain-operator", RULES_SECRET_KEY}
    shared = generated[RULES_SECRET_KEY]
    names = [ln.split(":")[0] for ln in (tmp_path / "passwd").read_text().splitlines()]
    assert names[-2:] == ["coldchain-rules-0", "coldchain-rules-1"]
    assert all(_hashed(tmp_path / "passwd", f"coldchain-rules-{k}", shared) for k in range(2))
    # More partitions: the new users take the kept secret; nothing is generated.
    assert write_broker_users(BrokerUsers(devices=("d1",), rules_partitions=4), **files) == {}
    assert yaml.safe_load((tmp_path / "secrets.yaml").read_text())[RULES_SECRET_KEY] == shared
    names = [ln.split(":")[0] for ln in (tmp_path / "passwd").read_text().splitlines()]
    assert names[-4:] == [f"coldchain-rules-{k}" for k in range(4)]


def test_a_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("d1: pw\n")
    secrets.chmod(0o644)
    with pytest.raises(BrokerUsersError, match="chmod 600"):
        write_broker_users(
            BrokerUsers(devices=("d1",)),
            password_file=tmp_path / "passwd",
            acl_file=tmp_path / "acl",
            secrets_file=secrets,
        )
    assert not (tmp_path / "passwd").exists()


def test_the_cli_writes_users_for_the_whole_fleet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["broker", "users", "--fleet", str(FLEET), "--passwd", str(tmp_path / "passwd")]
    args += ["--acl", str(tmp_path / "acl"), "--secrets", str(tmp_path / "s.yaml")]
    args += ["--ingest-user", "coldchain-ingest-1,coldchain-ingest-2"]
    assert coldchain(args) == 0
    out = capsys.readouterr().out
    names = [ln.split(":")[0] for ln in (tmp_path / "passwd").read_text().splitlines()]
    devices = fleet_device_users(load_fleet(FLEET))
    assert names == [*devices, "coldchain-ingest-1", "coldchain-ingest-2", "coldchain-operator"]
    secrets = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert all(f"{n}: {secrets[n]}" in out for n in names)  # shown once...
    assert coldchain(args) == 0
    assert "generated" not in capsys.readouterr().out  # ...and not again
    assert coldchain([*args, "--rules-partitions", "2"]) == 0
    out = capsys.readouterr().out
    secrets = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert f"{RULES_SECRET_KEY}: {secrets[RULES_SECRET_KEY]}" in out
    assert "user coldchain-rules-1\n" in (tmp_path / "acl").read_text()
    assert coldchain([*args, "--rules-partitions", "-1"]) == 2
    assert "rules partitions must be" in capsys.readouterr().err


def test_client_ids_are_bound_to_usernames_on_every_listener() -> None:
    lines = _conf("mosquitto.conf")
    listeners = [i for i, ln in enumerate(lines) if ln[0] == "listener"]
    assert len(listeners) == 2
    bounds = [*listeners[1:], len(lines)]
    for start, end in zip(listeners, bounds, strict=True):
        assert ["use_username_as_clientid", "true"] in lines[start:end]
    assert ["allow_anonymous", "false"] in lines


def test_the_tls_listener_has_its_files_and_a_minimum_version() -> None:
    lines = _conf("mosquitto.conf")
    tls = lines[[i for i, ln in enumerate(lines) if ln[0] == "listener"][1] :]
    keys = {ln[0]: ln[1:] for ln in tls}
    assert keys["listener"] == ["8883"]
    assert {"cafile", "certfile", "keyfile"} <= set(keys)
    assert keys["tls_version"] == ["tlsv1.2"]


def test_packet_limit_is_above_ingests_payload_limit_and_bounded() -> None:
    """Ingest dead-letters what it refuses (with the payload): the broker must pass anything
    up to ingest's limit plus topic and headers, and refuse far larger packets at the door."""
    conf = {ln[0]: ln[1:] for ln in _conf("coldchain.conf")}
    max_packet = int(conf["max_packet_size"][0])
    payload_limit = ValidationSettings().max_payload_bytes
    assert payload_limit + 1024 <= max_packet <= payload_limit + 128 * 1024
    # Never drop a message after its PUBACK: no byte cap on queues, which mosquitto enforces
    # by silently dropping what it already acknowledged to the publisher.
    assert conf["max_queued_bytes"] == ["0"]
    assert "memory_limit" not in conf
