"""The alert routing file (YAML, docs/alerts.md): channels, routes, quiet hours, escalations.

Validated whole at start-up: a bad value raises ConfigError naming the option by its path in
the file (``routes[1].quiet_hours.timezone``) and the value. Secrets are never in the model's
repr; ``*_env`` options name an environment variable that holds them instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coldchain.exceptions import ConfigError
from coldchain.rules.excursion import RuleKind, Severity

__all__ = [
    "CHANGES",
    "ChangeName",
    "ChannelConfig",
    "DingTalkChannel",
    "EmailChannel",
    "Escalation",
    "FeishuChannel",
    "Match",
    "MqttChannel",
    "QuietHours",
    "Route",
    "RoutingConfig",
    "WeComChannel",
    "WebhookChannel",
    "default_routing",
    "load_routing",
    "parse_routing",
    "secret_value",
]

# The changes an alert reports (coldchain.alerts.payload).
ChangeName = Literal[
    "opened",
    "escalated",
    "closed",
    "recovered",
    "updated",
    "superseded",
    "acknowledged",
    "unacknowledged",
]
CHANGES: tuple[str, ...] = ChangeName.__args__  # type: ignore[attr-defined]
_STRICT = ConfigDict(extra="forbid", frozen=True)
_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone (IANA name expected, e.g. Asia/Shanghai): {exc}"
        ) from None
    return name


class QuietHours(BaseModel):
    """Local ``start``-``end`` (``"22:00"``-``"07:00"`` spans midnight) in ``timezone`` (IANA;
    default: the file's ``timezone``). Non-critical alerts are delayed to the end of the
    window (``action: delay``) or dropped (``action: drop``); critical ones never wait."""

    model_config = _STRICT

    start: time
    end: time
    timezone: str | None = None
    action: Literal["delay", "drop"] = "delay"

    _check_zone = field_validator("timezone")(lambda v: v if v is None else _zone(v))

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self


class Match(BaseModel):
    """Which alerts a route takes; every given list must match (an empty match takes all).
    ``assets`` and ``rules`` are shell globs (``truck-*``)."""

    model_config = _STRICT

    assets: list[str] | None = None
    severities: list[Severity] | None = None
    changes: list[ChangeName] | None = None
    kinds: list[RuleKind] | None = None
    rules: list[str] | None = None


class Route(BaseModel):
    """A route: the alerts it ``match``es go to its ``channels``."""

    model_config = _STRICT

    name: str = Field(pattern=_NAME)
    match: Match = Match()
    channels: list[str] = Field(min_length=1)
    quiet_hours: QuietHours | None = None


class Escalation(BaseModel):
    """A critical excursion (matching ``match``) not acknowledged ``after_min`` minutes after it
    became critical notifies ``channels`` once (change ``unacknowledged``)."""

    model_config = _STRICT

    name: str = Field(pattern=_NAME)
    after_min: float = Field(gt=0, le=10_080)
    match: Match = Match()
    channels: list[str] = Field(min_length=1)


class _Http(BaseModel):
    model_config = _STRICT

    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class _Signed(_Http):
    secret: str | None = Field(default=None, repr=False)
    secret_env: str | None = None


class MqttChannel(BaseModel):
    """The MQTT alert topic ``coldchain/v1/alerts/<asset>`` (QoS 1, delivered on PUBACK)."""

    model_config = _STRICT
    type: Literal["mqtt"]
    ack_timeout_s: float = Field(default=10.0, gt=0, le=300)

    @property
    def timeout_s(self) -> float:
        return self.ack_timeout_s


class WebhookChannel(_Signed):
    """POST of the alert JSON; ``X-Coldchain-Signature: sha256=<hex HMAC-SHA256 of the body>``
    when a secret is set, ``X-Coldchain-Timestamp`` (Unix seconds), ``Idempotency-Key``."""

    type: Literal["webhook"]
    headers: dict[str, str] = Field(default_factory=dict)


class WeComChannel(_Http):
    """WeCom (企业微信) group robot: ``text`` or ``markdown`` message."""

    type: Literal["wecom"]
    format: Literal["text", "markdown"] = "markdown"
    mentioned_mobiles: list[str] = Field(default_factory=list)


class DingTalkChannel(_Signed):
    """DingTalk (钉钉) custom robot: ``text`` or ``markdown``; signed when a secret is set."""

    type: Literal["dingtalk"]
    format: Literal["text", "markdown"] = "markdown"


class FeishuChannel(_Signed):
    """Feishu/Lark (飞书) custom bot: ``text`` or ``markdown`` (an interactive card with a
    lark_md element); signed when a secret is set."""

    type: Literal["feishu"]
    format: Literal["text", "markdown"] = "markdown"


class EmailChannel(BaseModel):
    """E-mail over SMTP: ``security`` none, ``starttls`` or ``ssl`` (implicit TLS, port 465);
    login when ``username`` is set (password from ``password_env``)."""

    model_config = _STRICT
    type: Literal["email"]
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str | None = None
    sender: str = Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    timeout_s: float = Field(default=20.0, gt=0, le=300)


ChannelConfig = Annotated[
    MqttChannel | WebhookChannel | WeComChannel | DingTalkChannel | FeishuChannel | EmailChannel,
    Field(discriminator="type"),
]


class RoutingConfig(BaseModel):
    """The whole file: ``timezone`` (IANA, the default of quiet hours), ``channels`` (name ->
    channel), ``routes`` and ``escalations``. Every channel a route names must exist."""

    model_config = _STRICT

    timezone: str = "UTC"
    channels: dict[str, ChannelConfig]
    routes: list[Route] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)

    _check_zone = field_validator("timezone")(_zone)

    @field_validator("channels")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        import re

        for name in v:
            if not re.match(_NAME, name):
                raise ValueError(f"channel name {name!r} must match {_NAME}")
        return v

    @model_validator(mode="after")
    def _references(self) -> RoutingConfig:
        groups: tuple[tuple[str, Sequence[Route | Escalation]], ...] = (
            ("routes", self.routes),
            ("escalations", self.escalations),
        )
        for kind, items in groups:
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.name in seen:
                    raise ConfigError(f"{kind}[{i}].name", item.name, "used twice")
                seen.add(item.name)
                for j, ch in enumerate(item.channels):
                    if ch not in self.channels:
                        known = ", ".join(sorted(self.channels)) or "none"
                        raise ConfigError(
                            f"{kind}[{i}].channels[{j}]", ch, f"no such channel (known: {known})"
                        )
        return self


def default_routing(ack_timeout_s: float = 10.0) -> RoutingConfig:
    """No routing file: every alert to the MQTT alert topic, as before channels existed."""
    return RoutingConfig(
        channels={"mqtt": MqttChannel(type="mqtt", ack_timeout_s=ack_timeout_s)},
        routes=[Route(name="mqtt", channels=["mqtt"])],
    )


def parse_routing(data: Any, source: str = "alert routing") -> RoutingConfig:
    """Validate a parsed routing file. ConfigError names the first bad option
    (``<source>: routes[0].channels[1]``) and its value."""
    if not isinstance(data, dict):
        raise ConfigError(source, type(data).__name__, "expected a mapping at the top")
    try:
        return RoutingConfig.model_validate(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.option}", exc.value, exc.reason) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        reason = str(first["msg"]).removeprefix("Value error, ") + more
        raise ConfigError(f"{source}: {option.lstrip('.')}", first.get("input"), reason) from None


def load_routing(path: Path | None, ack_timeout_s: float = 10.0) -> RoutingConfig:
    """The routing file at ``path`` (None: ``default_routing(ack_timeout_s)``). ConfigError if
    it cannot be read or is invalid."""
    if path is None:
        return default_routing(ack_timeout_s)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("alerts.routing_path", str(path), f"cannot read: {exc}") from None
    return parse_routing(data, str(path))


def secret_value(option: str, literal: str | None, env: str | None) -> str | None:
    """A channel's secret: ``literal`` or the environment variable ``env`` (ConfigError when it
    is named but unset or empty)."""
    if env is None:
        return literal
    value = os.environ.get(env, "")
    if not value:
        raise ConfigError(option, env, "environment variable is not set")
    return value
