"""What each channel sends (pure): the alert as text and markdown, the chat robots' documented
request bodies, the webhook and robot signatures, the e-mail subject.

Sources:
- WeCom group robot (developer.work.weixin.qq.com/document/path/91770): ``{"msgtype": "text",
  "text": {"content", "mentioned_mobile_list"}}`` (content at most 2048 bytes) or
  ``{"msgtype": "markdown", "markdown": {"content"}}`` (at most 4096 bytes); no signing.
- DingTalk custom robot (open.dingtalk.com, "custom robot"): ``{"msgtype": "text", "text":
  {"content"}}`` or ``{"msgtype": "markdown", "markdown": {"title", "text"}}``; signing:
  ``timestamp`` (ms) and ``sign`` = Base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" +
  secret)) as URL query parameters.
- Feishu custom bot (open.feishu.cn, "custom bot"): ``{"msg_type": "text", "content":
  {"text"}}`` or an interactive card ``{"msg_type": "interactive", "card": {"header": {"title":
  {"tag": "plain_text", "content"}}, "elements": [{"tag": "div", "text": {"tag": "lark_md",
  "content"}}]}}``; signing: ``timestamp`` (s) and ``sign`` = Base64(HMAC-SHA256(key=timestamp
  + "\\n" + secret, msg="")) in the body.
- Generic webhook (ours): ``X-Coldchain-Signature: sha256=<hex HMAC-SHA256(secret, body)>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "dingtalk_body",
    "dingtalk_sign",
    "feishu_body",
    "feishu_sign",
    "markdown",
    "subject",
    "text",
    "truncate_utf8",
    "webhook_signature",
    "wecom_body",
]

WECOM_TEXT_MAX_BYTES = 2048
WECOM_MARKDOWN_MAX_BYTES = 4096


def _when(ms: object) -> str:
    if not isinstance(ms, int):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def subject(alert: Mapping[str, Any]) -> str:
    """One line: ``[CRITICAL] opened: truck-1/c1 range (temperature_range)``."""
    sev = str(alert.get("severity", "")).upper()
    where = f"{alert.get('asset_id')}/{alert.get('compartment_id')}"
    return f"[{sev}] {alert.get('change')}: {where} {alert.get('rule')} ({alert.get('kind')})"


def _facts(alert: Mapping[str, Any]) -> list[tuple[str, str]]:
    facts = [
        ("Excursion", str(alert.get("id"))),
        ("Status", str(alert.get("status"))),
        ("Start", _when(alert.get("start_ms"))),
        ("End", _when(alert.get("end_ms"))),
    ]
    if alert.get("peak_c") is not None:
        facts.append(("Peak", f"{alert['peak_c']} °C"))
    if alert.get("degree_minutes"):
        facts.append(("Degree-minutes", f"{alert['degree_minutes']:g}"))
    if alert.get("detected_late"):
        facts.append(("Detected late", _when(alert.get("detected_ms"))))
    ack = alert.get("acknowledgement")
    if isinstance(ack, Mapping):
        facts.append(("Acknowledged by", f"{ack.get('by')} at {_when(ack.get('ack_ms'))}"))
        facts.append(("Disposition", str(ack.get("disposition") or "-")))
        if ack.get("comment"):
            facts.append(("Comment", str(ack["comment"])))
    if alert.get("change") == "unacknowledged":
        facts.append(("Escalation", f"not acknowledged within {alert.get('after_min')} min"))
    if alert.get("detail"):
        facts.append(("Detail", str(alert["detail"])))
    facts.append(("Key", str(alert.get("key"))))
    return facts


def text(alert: Mapping[str, Any]) -> str:
    """Plain text: the subject line, then one ``Name: value`` line per fact."""
    return "\n".join([subject(alert), *(f"{k}: {v}" for k, v in _facts(alert))])


def markdown(alert: Mapping[str, Any]) -> str:
    """Markdown (the subset WeCom, DingTalk and Feishu's lark_md share: bold, line breaks)."""
    lines = [f"**{subject(alert)}**", ""]
    lines += [f"**{k}**: {v}" for k, v in _facts(alert)]
    return "\n".join(lines)


def truncate_utf8(value: str, max_bytes: int) -> str:
    """``value`` cut to at most ``max_bytes`` of UTF-8 (never inside a character)."""
    raw = value.encode()
    if len(raw) <= max_bytes:
        return value
    return raw[: max_bytes - 3].decode(errors="ignore") + "..."


def wecom_body(alert: Mapping[str, Any], fmt: str, mentioned_mobiles: list[str]) -> dict[str, Any]:
    """A WeCom group robot message (``fmt``: text or markdown), within WeCom's size limits."""
    if fmt == "text":
        content = truncate_utf8(text(alert), WECOM_TEXT_MAX_BYTES)
        return {
            "msgtype": "text",
            "text": {"content": content, "mentioned_mobile_list": mentioned_mobiles},
        }
    return {
        "msgtype": "markdown",
        "markdown": {"content": truncate_utf8(markdown(alert), WECOM_MARKDOWN_MAX_BYTES)},
    }


def dingtalk_body(alert: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    """A DingTalk custom robot message (``fmt``: text or markdown)."""
    if fmt == "text":
        return {"msgtype": "text", "text": {"content": text(alert)}}
    return {"msgtype": "markdown", "markdown": {"title": subject(alert), "text": markdown(alert)}}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign``: Base64(HMAC-SHA256(secret, f"{timestamp_ms}\\n{secret}")), before
    URL encoding."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_body(
    alert: Mapping[str, Any], fmt: str, secret: str | None, timestamp_s: int
) -> dict[str, Any]:
    """A Feishu custom bot message (``fmt``: text or markdown card), with ``timestamp`` and
    ``sign`` when ``secret`` is set."""
    body: dict[str, Any]
    if fmt == "text":
        body = {"msg_type": "text", "content": {"text": text(alert)}}
    else:
        body = {
            "msg_type": "interactive",
            "card": {
                "header": {"title": {"tag": "plain_text", "content": subject(alert)}},
                "elements": [
                    {"tag": "div", "text": {"tag": "lark_md", "content": markdown(alert)}}
                ],
            },
        }
    if secret:
        body = {"timestamp": str(timestamp_s), "sign": feishu_sign(secret, timestamp_s), **body}
    return body


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's ``sign``: Base64(HMAC-SHA256(key=f"{timestamp_s}\\n{secret}", msg=b""))."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def webhook_signature(secret: str, body: bytes) -> str:
    """The generic webhook's ``X-Coldchain-Signature`` value: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
