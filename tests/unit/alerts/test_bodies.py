"""Message bodies: the alert as text and markdown, the chat robots' documented shapes and size
limits, the signatures (coldchain.alerts.bodies)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict
from typing import Any

from coldchain.alerts import bodies
from coldchain.alerts.payload import acknowledged_alert, escalation_alert
from coldchain.rules import Excursion
from registry import Acknowledgement

EXC = Excursion(
    asset_id="truck-1",
    compartment_id="c1",
    rule="range",
    kind="range",
    severity="critical",
    status="open",
    start_ms=1_790_000_000_000,
    end_ms=None,
    detected_ms=1_790_000_060_000,
    peak_c=9.5,
    degree_minutes=31.5,
    profile="chilled",
    detail="冷藏车厢温度超过 8.0 °C",
)


def _alert(**kw: Any) -> dict[str, Any]:
    return {"v": 1, "change": "opened", "key": f"{EXC.id}:opened", **asdict(EXC)} | kw


def test_text_and_markdown_carry_the_facts() -> None:
    a = _alert()
    assert bodies.subject(a) == "[CRITICAL] opened: truck-1/c1 range (range)"
    text = bodies.text(a)
    assert text.splitlines()[0] == bodies.subject(a)
    for fact in (
        f"Excursion: {EXC.id}",
        "Start: 2026-09-21 14:13:20 UTC",
        "Peak: 9.5 °C",
        "Degree-minutes: 31.5",
        f"Key: {EXC.id}:opened",
        "冷藏车厢",
    ):
        assert fact in text
    md = bodies.markdown(a)
    assert md.startswith(f"**{bodies.subject(a)}**") and "**Peak**: 9.5 °C" in md


def test_acknowledgement_and_escalation_alerts() -> None:
    ack = Acknowledgement(
        EXC.id, 2, 1_790_000_300_000, "ops", "operator", None, "door shut", "", "released"
    )
    key, payload = acknowledged_alert(EXC, ack)
    body = json.loads(payload)
    assert key == f"{EXC.id}:acknowledged:2" == body["key"]
    assert body["acknowledgement"]["disposition"] == "released"
    assert "Acknowledged by: ops at 2026-09-21 14:18:20 UTC" in bodies.text(body)
    key, payload = escalation_alert(_alert(), "oncall", 30)
    body = json.loads(payload)
    assert (key, body["change"], body["escalation"]) == (
        f"{EXC.id}:unacknowledged:oncall",
        "unacknowledged",
        "oncall",
    )
    assert body["id"] == EXC.id and "v" in body and "acknowledgement" not in body
    assert "not acknowledged within 30 min" in bodies.text(body)


def test_wecom_shapes_and_byte_limits() -> None:
    long = _alert(detail="温" * 3000)  # 9000 bytes of UTF-8
    t = bodies.wecom_body(long, "text", ["13800000000"])
    assert set(t) == {"msgtype", "text"} and t["msgtype"] == "text"
    assert t["text"]["mentioned_mobile_list"] == ["13800000000"]
    assert len(t["text"]["content"].encode()) <= 2048
    m = bodies.wecom_body(long, "markdown", [])
    assert m == {"msgtype": "markdown", "markdown": {"content": m["markdown"]["content"]}}
    assert len(m["markdown"]["content"].encode()) <= 4096
    assert m["markdown"]["content"].endswith("...")
    assert bodies.truncate_utf8("温度", 4) == "..."  # never half a character
    assert bodies.truncate_utf8("ok", 4) == "ok"


def test_dingtalk_and_feishu_shapes() -> None:
    a = _alert()
    assert bodies.dingtalk_body(a, "text") == {
        "msgtype": "text",
        "text": {"content": bodies.text(a)},
    }
    md = bodies.dingtalk_body(a, "markdown")
    assert md["markdown"] == {"title": bodies.subject(a), "text": bodies.markdown(a)}
    plain = bodies.feishu_body(a, "text", None, 1_790_000_000)
    assert plain == {"msg_type": "text", "content": {"text": bodies.text(a)}}  # unsigned
    card = bodies.feishu_body(a, "markdown", "sec", 1_790_000_000)
    assert card["card"]["header"]["title"] == {"tag": "plain_text", "content": bodies.subject(a)}
    assert card["timestamp"] == "1790000000"


def test_signatures_follow_their_recipes() -> None:
    secret, body = "SEC123", b'{"key":"x"}'
    assert bodies.webhook_signature(secret, body) == (
        "sha256=" + hmac.new(b"SEC123", body, hashlib.sha256).hexdigest()
    )
    ding = hmac.new(b"SEC123", b"1790000000000\nSEC123", hashlib.sha256).digest()
    assert bodies.dingtalk_sign(secret, 1_790_000_000_000) == base64.b64encode(ding).decode()
    feishu = hmac.new(b"1790000000\nSEC123", b"", hashlib.sha256).digest()
    assert bodies.feishu_sign(secret, 1_790_000_000) == base64.b64encode(feishu).decode()
    assert bodies.dingtalk_sign(secret, 1) != bodies.dingtalk_sign(secret, 2)
