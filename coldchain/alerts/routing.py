"""Routing decisions (pure): which channels an alert goes to and when, quiet hours, and which
escalation timers a change starts (docs/alerts.md).

Rules:
- An alert goes to every channel of every route whose ``match`` takes it (a channel named by
  two routes gets it once, at the earliest time either allows).
- Quiet hours never hold a critical alert (severity ``critical``, and every escalation):
  those go at once. A non-critical one inside a route's quiet hours waits to the window's end
  (``delay``) or is dropped (``drop``, recorded on its delivery row as ``dropped``).
- Quiet hours are local wall-clock times in an explicit IANA zone; the end of a window that
  falls into a daylight-saving gap or overlap resolves to the first instant after now at or
  past that wall-clock time, so a delay is never negative and never skips a day.
- An ``unacknowledged`` alert (an escalation timer that came due) goes to its escalation's
  channels only; routes do not apply.
- A change that makes an excursion critical (``opened`` or ``escalated`` with severity
  critical) starts one timer per matching escalation, due ``after_min`` after the change was
  recorded; the timer's idempotency key makes it once per excursion and escalation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

from coldchain.alerts.config import Escalation, Match, QuietHours, RoutingConfig

__all__ = ["Decision", "escalations_started", "matches", "quiet_until_ms", "route_alert"]

_STARTS_ESCALATION = ("opened", "escalated")


@dataclass(frozen=True, slots=True)
class Decision:
    """One channel's share of an alert: first attempt at ``at_ms`` (epoch ms), or ``dropped``
    with its reason."""

    channel: str
    at_ms: int
    dropped: str = ""


def matches(match: Match, alert: Mapping[str, Any]) -> bool:
    """True if every list ``match`` gives takes the alert (globs for assets and rules)."""
    asset, rule = str(alert.get("asset_id", "")), str(alert.get("rule", ""))
    if match.assets is not None and not any(fnmatchcase(asset, g) for g in match.assets):
        return False
    if match.rules is not None and not any(fnmatchcase(rule, g) for g in match.rules):
        return False
    checks = (
        (match.severities, alert.get("severity")),
        (match.changes, alert.get("change")),
        (match.kinds, alert.get("kind")),
    )
    return all(allowed is None or value in allowed for allowed, value in checks)


def is_critical(alert: Mapping[str, Any]) -> bool:
    return alert.get("severity") == "critical" or alert.get("change") == "unacknowledged"


def quiet_until_ms(quiet: QuietHours, zone: str, now_ms: int) -> int | None:
    """The end of the quiet window ``now_ms`` falls in (epoch ms), or None outside it.
    ``zone``: the window's time zone when ``quiet.timezone`` is not set."""
    tz = ZoneInfo(quiet.timezone or zone)
    local = datetime.fromtimestamp(now_ms / 1000, tz)
    t = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        if not quiet.start <= t < quiet.end:
            return None
        end_day = local.date()
    else:  # spans midnight
        if quiet.end <= t < quiet.start:
            return None
        end_day = local.date() + timedelta(days=1) if t >= quiet.start else local.date()
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    for fold in (0, 1):  # an ambiguous end (DST overlap): the first occurrence after now
        end = datetime.combine(end_day, quiet.end, tzinfo=tz).replace(fold=fold)
        end_utc = end.astimezone(UTC)
        if end_utc > now:
            return int(end_utc.timestamp() * 1000)
    return now_ms  # the window's end is behind us (a wall clock that jumped): not quiet


def route_alert(config: RoutingConfig, alert: Mapping[str, Any], now_ms: int) -> list[Decision]:
    """The channels ``alert`` (the payload's JSON object) goes to, by name (see the module
    docstring). An escalation that is no longer configured routes nowhere."""
    if alert.get("change") == "unacknowledged":
        for esc in config.escalations:
            if esc.name == alert.get("escalation"):
                return [Decision(ch, now_ms) for ch in esc.channels]
        return []
    critical = is_critical(alert)
    chosen: dict[str, Decision] = {}
    for route in config.routes:
        if not matches(route.match, alert):
            continue
        decision_at, dropped = now_ms, ""
        if route.quiet_hours is not None and not critical:
            until = quiet_until_ms(route.quiet_hours, config.timezone, now_ms)
            if until is not None and route.quiet_hours.action == "drop":
                dropped = f"quiet hours of route {route.name!r}"
            elif until is not None:
                decision_at = until
        for ch in route.channels:
            new = Decision(ch, decision_at, dropped)
            old = chosen.get(ch)
            if old is None or _better(new, old):
                chosen[ch] = new
    return list(chosen.values())


def _better(new: Decision, old: Decision) -> bool:
    if bool(new.dropped) != bool(old.dropped):
        return not new.dropped
    return new.at_ms < old.at_ms


def escalations_started(config: RoutingConfig, alert: Mapping[str, Any]) -> list[Escalation]:
    """The escalations a change starts a timer for: it made the excursion critical (opened or
    escalated, severity critical, not superseded) and the escalation's match takes it."""
    if alert.get("change") not in _STARTS_ESCALATION or alert.get("severity") != "critical":
        return []
    if alert.get("superseded"):
        return []
    return [e for e in config.escalations if matches(e.match, alert)]
