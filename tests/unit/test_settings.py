"""Settings from ``COLDCHAIN_*`` environment variables; bad values name the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coldchain.exceptions import ConfigError
from coldchain.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("COLDCHAIN_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = load_settings()
    assert (s.mqtt.host, s.mqtt.port) == ("127.0.0.1", 1883)
    assert s.influx.database == "coldchain"
    assert s.spool.synchronous == "FULL"
    assert s.validation.max_future_skew_s == 300.0
    assert (s.api.host, s.api.port, s.api.keys) == ("127.0.0.1", 8080, {})


def test_nested_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDCHAIN_MQTT__PORT", "1884")
    monkeypatch.setenv("COLDCHAIN_INFLUX__URL", "http://db:8086")
    monkeypatch.setenv("COLDCHAIN_INFLUX__GZIP", "false")
    monkeypatch.setenv("COLDCHAIN_SPOOL__PATH", "/tmp/x/spool.db")
    monkeypatch.setenv("COLDCHAIN_FLEET_PATH", "fleet/other.yaml")
    monkeypatch.setenv("COLDCHAIN_API__PORT", "9090")
    monkeypatch.setenv("COLDCHAIN_API__KEYS", '{"Key-A": "regulator", "key-b": "admin"}')
    s = load_settings()
    assert s.api.port == 9090
    assert s.api.keys == {"Key-A": "regulator", "key-b": "admin"}
    assert "Key-A" not in repr(s)
    assert s.mqtt.port == 1884
    assert s.influx.url == "http://db:8086" and s.influx.gzip is False
    assert s.spool.path == Path("/tmp/x/spool.db")
    assert s.fleet_path == Path("fleet/other.yaml")


def test_liveness_settings_and_a_plain_subscription(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.mqtt.probe_interval_s, s.mqtt.probe_missed_intervals) == (5.0, 3)
    assert s.mqtt.disconnected_grace_s == 15.0
    monkeypatch.setenv("COLDCHAIN_MQTT__SHARE_GROUP", "")  # one process: plain subscription
    monkeypatch.setenv("COLDCHAIN_MQTT__PROBE_INTERVAL_S", "0.5")
    s = load_settings()
    assert (s.mqtt.share_group, s.mqtt.probe_interval_s) == ("", 0.5)


def test_overrides_win() -> None:
    assert load_settings(mqtt={"port": 2000}).mqtt.port == 2000


@pytest.mark.parametrize(
    ("var", "value", "reason"),
    [
        ("COLDCHAIN_MQTT__PORT", "not-a-port", "valid integer"),
        ("COLDCHAIN_MQTT__PORT", "70000", "less than or equal to 65535"),
        ("COLDCHAIN_MQTT__PORT", "0", "greater than or equal to 1"),
        ("COLDCHAIN_SPOOL__SYNCHRONOUS", "OFF", "'FULL' or 'NORMAL'"),
        ("COLDCHAIN_INFLUX__DATABASE", "bad name", "pattern"),
        ("COLDCHAIN_METRICS_PORT", "-1", "greater than or equal to 0"),
        ("COLDCHAIN_API__PORT", "0", "greater than or equal to 1"),
        ("COLDCHAIN_MQTT__PROBE_INTERVAL_S", "0", "greater than 0"),
        ("COLDCHAIN_MQTT__SHARE_GROUP", "a/b", "pattern"),
        ("COLDCHAIN_MQTT__TLS_CA_PATH", "/nonexistent/ca.crt", "does not point to a file"),
    ],
)
def test_bad_value_names_the_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    exc = info.value
    assert (exc.option, exc.value) == (var, value)
    assert var in str(exc) and repr(value) in str(exc)
    assert reason in exc.reason


def test_a_bad_api_key_role_names_the_option_not_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDCHAIN_API__KEYS", '{"s3cret-key": "root"}')
    with pytest.raises(ConfigError) as info:
        load_settings()
    exc = info.value
    assert (exc.option, exc.value) == ("COLDCHAIN_API__KEYS", "<redacted>")
    assert "'admin', 'operator', 'integrator' or 'regulator'" in exc.reason
    assert "s3cret" not in str(exc).lower()


def test_misspelt_nested_option_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo must not silently fall back to the default."""
    monkeypatch.setenv("COLDCHAIN_MQTT__PROT", "1884")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.option == "COLDCHAIN_MQTT__PROT" and info.value.value == "1884"


def test_unparsable_section_json_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDCHAIN_MQTT", "{not json")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.option == "COLDCHAIN_MQTT" and info.value.value == "{not json"


def test_a_client_certificate_needs_its_key_and_a_ca(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("-")
    monkeypatch.setenv("COLDCHAIN_MQTT__TLS_CERT_PATH", str(pem))
    with pytest.raises(ConfigError, match="tls_cert_path and tls_key_path are given together"):
        load_settings()
    monkeypatch.setenv("COLDCHAIN_MQTT__TLS_KEY_PATH", str(pem))
    with pytest.raises(ConfigError, match="a client certificate needs tls_ca_path"):
        load_settings()
    monkeypatch.setenv("COLDCHAIN_MQTT__TLS_CA_PATH", str(pem))
    assert load_settings().mqtt.tls_key_path == pem


def test_partition_leases_renew_a_third_of_their_ttl_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = load_settings()
    assert (s.rules.lease_ttl_s, s.rules.lease_renew_s) == (30.0, None)
    assert s.rules.lease_renew_interval_s == 10.0
    monkeypatch.setenv("COLDCHAIN_RULES__LEASE_TTL_S", "9")
    monkeypatch.setenv("COLDCHAIN_RULES__LEASE_RENEW_S", "2")
    s = load_settings()
    assert (s.rules.lease_ttl_s, s.rules.lease_renew_interval_s) == (9.0, 2.0)


@pytest.mark.parametrize(
    ("ttl", "renew", "option", "reason"),
    [
        ("10", "6", "COLDCHAIN_RULES__LEASE_RENEW_S", "at most half of lease_ttl_s"),
        ("0.5", None, "COLDCHAIN_RULES__LEASE_TTL_S", "greater than or equal to 1"),
    ],
)
def test_a_lease_renewed_too_rarely_is_refused(
    monkeypatch: pytest.MonkeyPatch, ttl: str, renew: str | None, option: str, reason: str
) -> None:
    monkeypatch.setenv("COLDCHAIN_RULES__LEASE_TTL_S", ttl)
    if renew is not None:
        monkeypatch.setenv("COLDCHAIN_RULES__LEASE_RENEW_S", renew)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.option == option and reason in err.value.reason


def test_alert_retention_covers_the_accepted_sample_age(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().alerts.retention_days == 90.0
    monkeypatch.setenv("COLDCHAIN_ALERTS__RETENTION_DAYS", "10")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.option == "COLDCHAIN_ALERTS__RETENTION_DAYS"
    assert "accepted sample age (30 days" in info.value.reason
    monkeypatch.setenv("COLDCHAIN_VALIDATION__MAX_SAMPLE_AGE_S", str(5 * 86400))
    assert load_settings().alerts.retention_days == 10.0
    monkeypatch.setenv("COLDCHAIN_ALERTS__RETENTION_DAYS", "0")  # kept for ever
    assert load_settings().alerts.retention_days == 0.0
