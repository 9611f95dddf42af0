"""The routing file: a bad value is refused with the option's path and the value; secrets come
from the environment when named so; the example in docs/alerts.md is valid."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from coldchain.alerts import load_routing, parse_routing
from coldchain.alerts.config import default_routing
from coldchain.exceptions import ConfigError
from ingest.channels import build_channels

ROOT = Path(__file__).resolve().parents[3]
BASE: dict[str, Any] = {
    "channels": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/h"}},
    "routes": [{"name": "all", "channels": ["hook"]}],
}


def _error(data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_routing(data, "routing.yaml")
    return info.value


@pytest.mark.parametrize(
    ("change", "option", "value", "reason"),
    [
        ({"timezone": "Mars/Olympus"}, "routing.yaml: timezone", "Mars/Olympus", "unknown time"),
        (
            {
                "routes": [
                    {
                        "name": "r",
                        "channels": ["hook"],
                        "quiet_hours": {
                            "start": "22:00",
                            "end": "07:00",
                            "timezone": "Asia/Shangai",
                        },
                    }
                ]
            },
            "routing.yaml: routes[0].quiet_hours.timezone",
            "Asia/Shangai",
            "unknown time zone",
        ),
        (
            {
                "routes": [
                    {
                        "name": "r",
                        "channels": ["hook"],
                        "quiet_hours": {"start": "25:00", "end": "07:00"},
                    }
                ]
            },
            "routing.yaml: routes[0].quiet_hours.start",
            "25:00",
            "time",
        ),
        (
            {
                "routes": [
                    {
                        "name": "r",
                        "channels": ["hook"],
                        "quiet_hours": {"start": "07:00", "end": "07:00"},
                    }
                ]
            },
            "routing.yaml: routes[0].quiet_hours",
            None,
            "empty",
        ),
        (
            {"routes": [{"name": "r", "channels": ["hook", "pager"]}]},
            "routing.yaml: routes[0].channels[1]",
            "pager",
            "no such channel (known: hook)",
        ),
        (
            {"routes": [{"name": "r", "channels": ["hook"]}, {"name": "r", "channels": ["hook"]}]},
            "routing.yaml: routes[1].name",
            "r",
            "used twice",
        ),
        (
            {"routes": [{"name": "r", "channels": ["hook"], "match": {"severities": ["high"]}}]},
            "routing.yaml: routes[0].match.severities[0]",
            "high",
            "'info', 'warning' or 'critical'",
        ),
        (
            {"routes": [{"name": "r", "channels": ["hook"], "match": {"changes": ["open"]}}]},
            "routing.yaml: routes[0].match.changes[0]",
            "open",
            "'opened'",
        ),
        (
            {"channels": {"hook": {"type": "pager", "url": "http://x"}}},
            "routing.yaml: channels.hook",
            None,
            "does not match any of the expected tags",
        ),
        (
            {"channels": {"hook": {"type": "webhook", "url": "ftp://x"}}},
            "routing.yaml: channels.hook.webhook.url",
            "ftp://x",
            "should match pattern",
        ),
        (
            {"channels": {"hook": {"type": "webhook", "url": "http://x", "timeout": 3}}},
            "routing.yaml: channels.hook.webhook.timeout",
            3,
            "Extra inputs are not permitted",
        ),
        (
            {
                "channels": {"m": {"type": "email", "host": "h", "from": "a@b", "to": ["nobody"]}},
                "routes": [{"name": "r", "channels": ["m"]}],
            },
            "routing.yaml: channels.m.email.to[0]",
            "nobody",
            "should match pattern",
        ),
        (
            {"escalations": [{"name": "e", "after_min": 0, "channels": ["hook"]}]},
            "routing.yaml: escalations[0].after_min",
            0,
            "greater than 0",
        ),
    ],
)
def test_a_bad_value_names_its_option_and_value(
    change: dict[str, Any], option: str, value: object, reason: str
) -> None:
    err = _error(BASE | change)
    assert err.option == option
    if value is not None:
        assert err.value == value
    assert reason in err.reason
    assert option in str(err)


def test_a_file_that_is_not_a_mapping_or_cannot_be_read(tmp_path: Path) -> None:
    assert "expected a mapping" in str(_error(["channels"]))
    with pytest.raises(ConfigError, match=r"alerts\.routing_path='/nonexistent/r\.yaml'"):
        load_routing(Path("/nonexistent/r.yaml"))
    bad = tmp_path / "r.yaml"
    bad.write_text("channels: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_routing(bad)


def test_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {
        "channels": {
            "hook": {"type": "webhook", "url": "http://127.0.0.1:9/h", "secret_env": "HOOK_S"}
        },
        "routes": [{"name": "all", "channels": ["hook"]}],
    }
    config = parse_routing(data)
    assert "secret" not in repr(config.channels["hook"]).replace("secret_env", "")
    monkeypatch.delenv("HOOK_S", raising=False)
    with pytest.raises(ConfigError) as info:
        build_channels(config)
    assert (info.value.option, info.value.value) == ("channels.hook.secret_env", "HOOK_S")
    monkeypatch.setenv("HOOK_S", "x")
    assert set(build_channels(config)) == {"hook"}
    mail = parse_routing(
        {
            "channels": {
                "m": {
                    "type": "email",
                    "host": "h",
                    "from": "a@b.c",
                    "to": ["o@b.c"],
                    "username": "u",
                }
            },
            "routes": [{"name": "r", "channels": ["m"]}],
        }
    )
    with pytest.raises(ConfigError, match="username needs a password"):
        build_channels(mail)


def test_without_a_file_every_alert_goes_to_mqtt_only() -> None:
    config = load_routing(None, ack_timeout_s=3.0)
    assert config == default_routing(3.0)
    assert list(config.channels) == ["mqtt"] and config.channels["mqtt"].timeout_s == 3.0
    with pytest.raises(ConfigError, match="no MQTT client here"):
        build_channels(config)


def test_the_example_in_the_docs_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "alerts.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks, "docs/alerts.md has no yaml example"
    config = parse_routing(yaml.safe_load(blocks[0]), "docs/alerts.md")
    assert config.routes and config.escalations
    kinds = {c.type for c in config.channels.values()}
    assert kinds == {"mqtt", "webhook", "wecom", "dingtalk", "feishu", "email"}


def test_cli_check_lists_routes_and_names_a_missing_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import main

    path = tmp_path / "r.yaml"
    data = BASE | {
        "channels": {
            "hook": {"type": "webhook", "url": "http://127.0.0.1:9/h", "secret_env": "HOOK_S"}
        },
        "routes": [
            {"name": "all", "channels": ["hook"], "quiet_hours": {"start": "22:00", "end": "06:30"}}
        ],
    }
    path.write_text(yaml.safe_dump(data))
    monkeypatch.delenv("HOOK_S", raising=False)
    assert main(["alerts", "check", str(path)]) == 2
    assert "channels.hook.secret_env='HOOK_S': environment variable is not set" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("HOOK_S", "x")
    assert main(["alerts", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "route all -> hook, quiet 22:00-06:30 UTC (delay)" in out
