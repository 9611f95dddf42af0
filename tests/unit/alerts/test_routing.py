"""Routing decisions: matches, quiet hours in explicit zones (DST gaps and overlaps included),
critical alerts never held, escalation timers (coldchain.alerts.routing)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from coldchain.alerts import parse_routing, quiet_until_ms, route_alert
from coldchain.alerts.config import QuietHours
from coldchain.alerts.routing import Decision, escalations_started


def _ms(text: str, zone: str = "UTC") -> int:
    """Epoch ms of a local ``YYYY-MM-DD HH:MM`` in ``zone`` (fold 0)."""
    local = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone))
    return int(local.timestamp() * 1000)


def _utc(ms: int | None) -> str:
    assert ms is not None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _q(start: str, end: str, zone: str | None = None, action: str = "delay") -> QuietHours:
    return QuietHours(
        start=time.fromisoformat(start),
        end=time.fromisoformat(end),
        timezone=zone,
        action=action,  # type: ignore[arg-type]
    )


def test_quiet_hours_across_midnight_in_a_zone_without_dst() -> None:
    q = _q("22:00", "07:00")
    sh = "Asia/Shanghai"
    assert _utc(quiet_until_ms(q, sh, _ms("2026-06-01 23:00", sh))) == "2026-06-01 23:00"
    assert _utc(quiet_until_ms(q, sh, _ms("2026-06-02 06:59", sh))) == "2026-06-01 23:00"
    assert _utc(quiet_until_ms(q, sh, _ms("2026-06-01 22:00", sh))) == "2026-06-01 23:00"
    assert quiet_until_ms(q, sh, _ms("2026-06-02 07:00", sh)) is None
    assert quiet_until_ms(q, sh, _ms("2026-06-02 12:00", sh)) is None
    # The same UTC instant is quiet or not depending on the zone the window is in.
    noon_utc = _ms("2026-06-01 15:00")  # 23:00 in Shanghai, 15:00 in UTC
    assert quiet_until_ms(q, sh, noon_utc) is not None
    assert quiet_until_ms(q, "UTC", noon_utc) is None
    assert quiet_until_ms(_q("22:00", "07:00", "UTC"), sh, noon_utc) is None  # its own zone wins


def test_quiet_hours_within_one_day() -> None:
    q = _q("12:00", "14:00")
    assert _utc(quiet_until_ms(q, "UTC", _ms("2026-06-01 13:59"))) == "2026-06-01 14:00"
    assert quiet_until_ms(q, "UTC", _ms("2026-06-01 11:59")) is None
    assert quiet_until_ms(q, "UTC", _ms("2026-06-01 14:00")) is None


def test_the_end_of_a_window_in_a_dst_gap_is_the_first_instant_after_it() -> None:
    ny = "America/New_York"  # 2026-03-08 02:00 EST -> 03:00 EDT
    q = _q("01:00", "02:30")
    now = _ms("2026-03-08 01:30", ny)  # 06:30 UTC
    assert _utc(quiet_until_ms(q, ny, now)) == "2026-03-08 07:30"  # 03:30 EDT
    # A night window over the change: 23:00-06:00 is 6 h of wall clock but 5 h of real time.
    night = _q("23:00", "06:00")
    assert _utc(quiet_until_ms(night, ny, _ms("2026-03-07 23:00", ny))) == "2026-03-08 10:00"


def test_the_end_of_a_window_in_a_dst_overlap_is_never_in_the_past() -> None:
    ny = "America/New_York"  # 2026-11-01 02:00 EDT -> 01:00 EST: 01:00-02:00 happens twice
    q = _q("00:00", "01:30")
    first = _ms("2026-11-01 05:15")  # 01:15 EDT
    assert _utc(quiet_until_ms(q, ny, first)) == "2026-11-01 05:30"  # 01:30 EDT
    second = _ms("2026-11-01 06:15")  # 01:15 EST, the second time round
    assert _utc(quiet_until_ms(q, ny, second)) == "2026-11-01 06:30"  # 01:30 EST


@settings(max_examples=300, deadline=None)
@given(
    now=st.integers(_ms("2026-01-01 00:00"), _ms("2027-12-31 00:00")),
    start=st.integers(0, 95),
    length=st.integers(1, 95),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "UTC"]),
)
def test_a_delay_is_positive_and_ends_at_the_windows_end(
    now: int, start: int, length: int, zone: str
) -> None:
    begin = time(start // 4, 15 * (start % 4))
    end_q = (start + length) % 96
    end = time(end_q // 4, 15 * (end_q % 4))
    until = quiet_until_ms(_q(begin.isoformat(), end.isoformat()), zone, now)
    if until is None:
        return
    assert now < until <= now + 25 * 3_600_000
    local_end = datetime.fromtimestamp(until / 1000, ZoneInfo(zone))
    # At the window's end, or just after it when the end fell into a DST gap.
    got = local_end.hour * 60 + local_end.minute
    want = end.hour * 60 + end.minute
    assert got == want or 0 < got - want <= 60


ALERT: dict[str, Any] = {
    "v": 1,
    "change": "opened",
    "key": "e1:opened",
    "id": "e1",
    "asset_id": "truck-7",
    "compartment_id": "c1",
    "rule": "hard_high",
    "kind": "range",
    "severity": "warning",
    "status": "open",
    "superseded": False,
}

ROUTING = {
    "timezone": "Asia/Shanghai",
    "channels": {
        "mqtt": {"type": "mqtt"},
        "hook": {"type": "webhook", "url": "http://127.0.0.1:1/h"},
        "chat": {"type": "wecom", "url": "http://127.0.0.1:1/w"},
        "pager": {"type": "webhook", "url": "http://127.0.0.1:1/p"},
    },
    "routes": [
        {"name": "everything", "channels": ["mqtt"]},
        {
            "name": "trucks-by-day",
            "match": {"assets": ["truck-*"], "changes": ["opened", "escalated", "closed"]},
            "channels": ["chat", "hook"],
            "quiet_hours": {"start": "22:00", "end": "07:00"},
        },
        {
            "name": "stores-night-drop",
            "match": {"assets": ["store-*"]},
            "channels": ["chat"],
            "quiet_hours": {"start": "22:00", "end": "07:00", "action": "drop"},
        },
        {
            "name": "hard-limits",
            "match": {"rules": ["hard_*"], "kinds": ["range"], "severities": ["critical"]},
            "channels": ["hook"],
        },
    ],
    "escalations": [
        {"name": "oncall", "after_min": 30, "match": {"assets": ["truck-*"]}, "channels": ["pager"]}
    ],
}
CONFIG = parse_routing(ROUTING)
NIGHT = _ms("2026-06-01 23:30", "Asia/Shanghai")
DAY = _ms("2026-06-01 10:00", "Asia/Shanghai")
MORNING = _ms("2026-06-02 07:00", "Asia/Shanghai")


def _route(now: int, **kw: Any) -> list[Decision]:
    return sorted(route_alert(CONFIG, ALERT | kw, now), key=lambda d: d.channel)


def test_routes_match_by_asset_change_rule_kind_and_severity() -> None:
    assert _route(DAY) == [Decision("chat", DAY), Decision("hook", DAY), Decision("mqtt", DAY)]
    assert _route(DAY, change="updated") == [Decision("mqtt", DAY)]  # not one of its changes
    assert _route(DAY, asset_id="trailer-1") == [Decision("mqtt", DAY)]
    # A critical hard limit also takes the route that matches on rule, kind and severity.
    crit = _route(DAY, asset_id="trailer-1", severity="critical")
    assert crit == [Decision("hook", DAY), Decision("mqtt", DAY)]
    assert _route(DAY, asset_id="trailer-1", severity="critical", rule="range") == [
        Decision("mqtt", DAY)
    ]


def test_quiet_hours_delay_or_drop_non_critical_alerts_only() -> None:
    # Warning at night: the truck route waits for 07:00; the MQTT route has no quiet hours.
    assert _route(NIGHT) == [
        Decision("chat", MORNING),
        Decision("hook", MORNING),
        Decision("mqtt", NIGHT),
    ]
    # Critical at night: nothing waits.
    assert _route(NIGHT, severity="critical") == [
        Decision("chat", NIGHT),
        Decision("hook", NIGHT),
        Decision("mqtt", NIGHT),
    ]
    # A store at night: dropped (recorded as such), critical never.
    dropped = _route(NIGHT, asset_id="store-1")
    assert dropped[0].channel == "chat" and "stores-night-drop" in dropped[0].dropped
    assert _route(NIGHT, asset_id="store-1", severity="critical")[0] == Decision("chat", NIGHT)


def test_a_channel_named_by_two_routes_gets_the_alert_once_at_the_earliest_time() -> None:
    # hook: delayed by the truck route, at once by the hard-limit route (critical) -> at once.
    routes = route_alert(CONFIG, ALERT | {"severity": "critical"}, NIGHT)
    assert [d.channel for d in routes].count("hook") == 1
    config = parse_routing(
        ROUTING
        | {
            "routes": [
                {
                    "name": "a",
                    "channels": ["chat"],
                    "quiet_hours": {"start": "22:00", "end": "07:00", "action": "drop"},
                },
                {
                    "name": "b",
                    "channels": ["chat"],
                    "quiet_hours": {"start": "23:00", "end": "06:00"},
                },
            ],
            "escalations": [],
        }
    )
    # A drop by one route and a delay by another: the delay wins (nothing is lost).
    assert route_alert(config, ALERT, NIGHT) == [
        Decision("chat", _ms("2026-06-02 06:00", "Asia/Shanghai"))
    ]


def test_an_escalation_goes_to_its_channels_only_and_never_waits() -> None:
    alert = ALERT | {"change": "unacknowledged", "escalation": "oncall", "severity": "critical"}
    assert route_alert(CONFIG, alert, NIGHT) == [Decision("pager", NIGHT)]
    # An escalation removed from the file since its timer started routes nowhere.
    assert route_alert(CONFIG, alert | {"escalation": "gone"}, NIGHT) == []


def test_escalation_timers_start_on_becoming_critical_only() -> None:
    crit = ALERT | {"severity": "critical"}
    assert [e.name for e in escalations_started(CONFIG, crit)] == ["oncall"]
    assert [e.name for e in escalations_started(CONFIG, crit | {"change": "escalated"})] == [
        "oncall"
    ]
    assert escalations_started(CONFIG, ALERT) == []  # warning
    assert escalations_started(CONFIG, crit | {"change": "closed"}) == []
    assert escalations_started(CONFIG, crit | {"change": "acknowledged"}) == []
    assert escalations_started(CONFIG, crit | {"superseded": True}) == []
    assert escalations_started(CONFIG, crit | {"asset_id": "store-1"}) == []  # its match


def test_time_helpers_agree() -> None:
    assert int(timedelta(hours=7, minutes=30).total_seconds() * 1000) == MORNING - NIGHT
