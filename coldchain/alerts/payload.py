"""The alert payload every channel carries, and the changes recorded outside the rules engine:
an operator's acknowledgement and an escalation timer (docs/alerts.md).

An alert is a JSON object: ``v`` (1), ``change`` (opened, escalated, closed, recovered,
updated, superseded, acknowledged, unacknowledged), ``key`` (the idempotency key,
``<excursion id>:<change>[:...]``; a receiver keeps one notification per key) and the
excursion's fields as the registry holds them (coldchain.rules.Excursion). An
``acknowledged`` alert adds ``acknowledgement``; an ``unacknowledged`` one (an escalation)
adds ``escalation`` (its name) and ``after_min``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from coldchain.rules.excursion import Excursion

__all__ = ["acknowledged_alert", "alert_json", "escalation_alert", "escalation_key"]

_ENVELOPE = frozenset({"v", "change", "key", "acknowledgement", "escalation", "after_min"})


def alert_json(change: str, key: str, excursion: Excursion, **extra: Any) -> str:
    """The alert as compact JSON text (see the module docstring)."""
    body = {"v": 1, "change": change, "key": key, **asdict(excursion), **extra}
    return json.dumps(body, separators=(",", ":"), default=str)


def acknowledged_alert(excursion: Excursion, ack: Any) -> tuple[str, str]:
    """(key, payload) of an acknowledgement: ``<id>:acknowledged:<seq>`` (every
    acknowledgement of the history is one change). ``ack`` is a registry ``Acknowledgement``
    (seq, ack_ms, by, role, comment, root_cause, disposition)."""
    key = f"{excursion.id}:acknowledged:{ack.seq}"
    detail = {
        "seq": ack.seq,
        "ack_ms": ack.ack_ms,
        "by": ack.by,
        "role": ack.role,
        "comment": ack.comment,
        "root_cause": ack.root_cause,
        "disposition": ack.disposition,
    }
    return key, alert_json("acknowledged", key, excursion, acknowledgement=detail)


def escalation_key(excursion_id: str, escalation: str) -> str:
    """``<id>:unacknowledged:<escalation name>``: one escalation per excursion and name."""
    return f"{excursion_id}:unacknowledged:{escalation}"


def escalation_alert(
    alert: Mapping[str, Any], escalation: str, after_min: float
) -> tuple[str, str]:
    """(key, payload) of an escalation timer started by ``alert`` (the change that made the
    excursion critical): the excursion as it was then, change ``unacknowledged``."""
    excursion = {k: v for k, v in alert.items() if k not in _ENVELOPE}
    key = escalation_key(str(alert.get("id")), escalation)
    body = {"v": 1, "change": "unacknowledged", "key": key, **excursion}
    body |= {"escalation": escalation, "after_min": after_min}
    return key, json.dumps(body, separators=(",", ":"), default=str)
