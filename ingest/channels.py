"""Alert channels: the senders behind one interface (docs/alerts.md).

Each channel sends a batch of claimed deliveries and says, per delivery, whether the receiver
acknowledged it ("" = delivered, else the error). Acknowledged means: MQTT PUBACK; HTTP 2xx
(and for the chat robots their JSON ``errcode``/``code`` 0, since they answer 200 to refused
messages); SMTP: the server accepted the message for every recipient. Anything else - timeout,
refused connection, 4xx/5xx - is an error the deliverer retries with backoff. Errors never
carry secrets (URLs are shown without their query string).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from coldchain.alerts import bodies
from coldchain.alerts.config import (
    ChannelConfig,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    MqttChannel,
    RoutingConfig,
    WebhookChannel,
    WeComChannel,
    secret_value,
)
from coldchain.contract import alert_topic
from coldchain.exceptions import ConfigError
from coldchain.settings import MqttSettings
from registry import ChannelDelivery

__all__ = [
    "AlertChannel",
    "EmailSender",
    "HttpSender",
    "MqttPublisher",
    "MqttSender",
    "PublishHandle",
    "build_channels",
]


class AlertChannel(Protocol):
    """A configured channel: ``name``, ``timeout_s`` (the longest one send may take per
    delivery), ``ready()`` (False: do not claim now, e.g. MQTT disconnected), ``send()``."""

    name: str
    timeout_s: float

    def ready(self) -> bool: ...

    def send(self, deliveries: Sequence[ChannelDelivery]) -> list[str]:
        """One result per delivery, in order: "" delivered, else why not. Never raises."""
        ...

    def interrupt(self) -> None:
        """Cut a send's waits short (the process stops); what is unfinished is retried."""
        ...

    def close(self) -> None:
        """Release connections; called once no send runs any more."""
        ...


class PublishHandle(Protocol):
    """What a QoS 1 publish returns (paho's ``MQTTMessageInfo``)."""

    def wait_for_publish(self, timeout: float | None = None) -> None: ...

    def is_published(self) -> bool: ...


_STOPPING = "not sent: the deliverer is stopping"


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class MqttSender:
    """The MQTT alert topic of each alert's asset, QoS 1; delivered once PUBACKed within
    ``ack_timeout_s`` (for the whole batch). ``publish`` is the ingest's MQTT client's (or the
    standalone deliverer's) publish; nothing is claimed while ``connected()`` is false (paho
    would queue the message and send it on reconnect while the round counts it failed)."""

    def __init__(
        self,
        name: str,
        publish: Callable[[str, bytes], PublishHandle],
        connected: Callable[[], bool],
        ack_timeout_s: float,
        stopping: threading.Event | None = None,
    ) -> None:
        self.name = name
        self.timeout_s = ack_timeout_s
        self._publish = publish
        self._connected = connected
        self._stopping = stopping or threading.Event()

    def ready(self) -> bool:
        return self._connected()

    def send(self, deliveries: Sequence[ChannelDelivery]) -> list[str]:
        handles: list[PublishHandle | str] = []
        for d in deliveries:
            try:
                asset = str(json.loads(d.payload).get("asset_id", ""))
                handles.append(self._publish(alert_topic(asset), d.payload.encode()))
            except (ValueError, RuntimeError, OSError) as exc:
                handles.append(f"publish: {exc}")
        deadline = time.monotonic() + self.timeout_s
        results: list[str] = []
        for h in handles:
            if isinstance(h, str):
                results.append(h)
                continue
            try:
                # In slices, so that a stop cuts the wait short (the row is retried later).
                while not h.is_published() and not self._stopping.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    h.wait_for_publish(min(0.2, left))
                ok = h.is_published()
                results.append("" if ok else f"no PUBACK within {self.timeout_s:g} s")
            except (ValueError, RuntimeError) as exc:  # paho: not queued / not connected
                results.append(f"publish: {exc}")
        return results

    def interrupt(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._stopping.set()


class HttpSender:
    """POST one request per delivery: the generic webhook or a chat robot (``config.type``).
    ``clock_s`` (Unix seconds) stamps timestamps and robot signatures."""

    def __init__(
        self,
        name: str,
        config: WebhookChannel | WeComChannel | DingTalkChannel | FeishuChannel,
        *,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.config = config
        self.timeout_s = config.timeout_s
        self._clock_s = clock_s
        self._secret: str | None = None
        if isinstance(config, WebhookChannel | DingTalkChannel | FeishuChannel):
            self._secret = secret_value(
                f"channels.{name}.secret_env", config.secret, config.secret_env
            )
        self._client = httpx.Client(timeout=config.timeout_s, follow_redirects=False)
        self._stopping = threading.Event()

    def ready(self) -> bool:
        return True

    def request(self, d: ChannelDelivery) -> tuple[str, dict[str, str], bytes]:
        """(url, headers, body) of one delivery: what ``send`` posts."""
        c, alert = self.config, json.loads(d.payload)
        headers = {"Content-Type": "application/json; charset=utf-8"}
        url = c.url
        if isinstance(c, WebhookChannel):
            body = d.payload.encode()
            headers |= dict(c.headers)
            headers["Idempotency-Key"] = d.key
            headers["X-Coldchain-Timestamp"] = str(int(self._clock_s()))
            if self._secret:
                headers["X-Coldchain-Signature"] = bodies.webhook_signature(self._secret, body)
            return url, headers, body
        doc: dict[str, Any]
        if isinstance(c, WeComChannel):
            doc = bodies.wecom_body(alert, c.format, c.mentioned_mobiles)
        elif isinstance(c, DingTalkChannel):
            doc = bodies.dingtalk_body(alert, c.format)
            if self._secret:
                ts = int(self._clock_s() * 1000)
                sign = bodies.dingtalk_sign(self._secret, ts)
                query = httpx.QueryParams({"timestamp": str(ts), "sign": sign})
                url = str(httpx.URL(url).copy_merge_params(query))
        else:
            doc = bodies.feishu_body(alert, c.format, self._secret, int(self._clock_s()))
        return url, headers, json.dumps(doc, ensure_ascii=False).encode()

    def _one(self, d: ChannelDelivery) -> str:
        url, headers, body = self.request(d)
        try:
            r = self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{_where(url)}: {type(exc).__name__}: {exc}"[:300]
        if not 200 <= r.status_code < 300:
            return f"{_where(url)}: HTTP {r.status_code}: {r.text[:200]}"
        if isinstance(self.config, WebhookChannel):
            return ""
        # The robots answer 200 to a refused message; the JSON says whether it was taken.
        try:
            answer = r.json()
        except ValueError:
            return f"{_where(url)}: answer is not JSON: {r.text[:200]}"
        code = answer.get("errcode", answer.get("code", answer.get("StatusCode")))
        if code != 0:
            return f"{_where(url)}: refused: {json.dumps(answer, ensure_ascii=False)[:200]}"
        return ""

    def send(self, deliveries: Sequence[ChannelDelivery]) -> list[str]:
        return [_STOPPING if self._stopping.is_set() else self._one(d) for d in deliveries]

    def interrupt(self) -> None:
        self._stopping.set()  # the request in flight is bounded by timeout_s

    def close(self) -> None:
        self._client.close()


class EmailSender:
    """One e-mail per delivery over one SMTP session per batch. ``Message-ID`` is derived from
    the idempotency key (and ``X-Coldchain-Key`` carries it), so a repeat is recognisable."""

    def __init__(self, name: str, config: EmailChannel) -> None:
        self.name = name
        self.config = config
        self.timeout_s = config.timeout_s
        self._password = secret_value(f"channels.{name}.password_env", None, config.password_env)
        if config.username and self._password is None:
            raise ConfigError(f"channels.{name}.password_env", None, "username needs a password")
        self._stopping = threading.Event()

    def ready(self) -> bool:
        return True

    def message(self, d: ChannelDelivery) -> EmailMessage:
        """The e-mail of one delivery."""
        alert = json.loads(d.payload)
        msg = EmailMessage()
        msg["Subject"] = bodies.subject(alert)
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(self.config.to)
        msg["Date"] = email.utils.formatdate(localtime=False)
        digest = hashlib.sha256(d.key.encode()).hexdigest()[:32]
        msg["Message-ID"] = f"<{digest}@coldchain.alerts>"
        msg["X-Coldchain-Key"] = d.key
        msg.set_content(bodies.text(alert))
        return msg

    def _session(self) -> smtplib.SMTP:
        c = self.config
        smtp: smtplib.SMTP
        if c.security == "ssl":
            ctx = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_s, context=ctx)
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
        try:
            if c.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if c.username:
                smtp.login(c.username, self._password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, deliveries: Sequence[ChannelDelivery]) -> list[str]:
        where = f"smtp://{self.config.host}:{self.config.port}"
        try:
            smtp = self._session()
        except (OSError, smtplib.SMTPException) as exc:
            return [f"{where}: {type(exc).__name__}: {exc}"[:300]] * len(deliveries)
        results: list[str] = []
        try:
            for d in deliveries:
                if self._stopping.is_set():
                    results.append(_STOPPING)
                    continue
                try:
                    refused = smtp.send_message(self.message(d))
                    results.append(f"{where}: refused {sorted(refused)}" if refused else "")
                except (OSError, smtplib.SMTPException) as exc:
                    results.append(f"{where}: {type(exc).__name__}: {exc}"[:300])
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return results

    def interrupt(self) -> None:
        self._stopping.set()  # the message in flight is bounded by timeout_s

    def close(self) -> None:
        pass


def build_channels(
    routing: RoutingConfig,
    *,
    mqtt: Callable[[str, MqttChannel], AlertChannel] | None = None,
    clock_s: Callable[[], float] = time.time,
) -> dict[str, AlertChannel]:
    """Every channel of the routing file, by name. ``mqtt(name, config)`` builds the MQTT one
    (the ingest's client or a standalone one); ConfigError if the file has one and no ``mqtt``
    is given, or a secret's environment variable is unset."""
    out: dict[str, AlertChannel] = {}
    items: Mapping[str, ChannelConfig] = routing.channels
    for name, config in items.items():
        if isinstance(config, MqttChannel):
            if mqtt is None:
                raise ConfigError(f"channels.{name}.type", "mqtt", "no MQTT client here")
            out[name] = mqtt(name, config)
        elif isinstance(config, EmailChannel):
            out[name] = EmailSender(name, config)
        else:
            out[name] = HttpSender(name, config, clock_s=clock_s)
    return out


class MqttPublisher:
    """A publishing-only MQTT connection for ``coldchain alerts deliver`` (no ingest here):
    client id ``<mqtt.client_id>-alerts``, clean session, reconnecting by itself."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        """``settings``: the broker's address, user and TLS (``mqtt`` settings)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from ingest.mqtt_client import use_tls

        self.connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password)
        use_tls(self._client, settings)
        self._client.on_connect = lambda *_: self.connected.set()
        self._client.on_disconnect = lambda *_: self.connected.clear()
        self._client.reconnect_delay_set(1, 30)
        self._client.connect_async(settings.host, settings.port)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes) -> PublishHandle:
        handle: PublishHandle = self._client.publish(topic, payload, qos=1)
        return handle

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
