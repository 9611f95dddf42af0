"""Alert channels against real receivers on loopback (issue 11 item 3): a real HTTP server
(generic webhook and the WeCom/DingTalk/Feishu robots) and a real SMTP server (aiosmtpd), a
real registry (SQLite), the delivery stage in-process with an injected clock (escalations and
backoff are driven by moving the clock, never by sleeping).

"Exactly one notification per change" is counted as the receivers would: distinct idempotency
keys, one per lifecycle change; a repeat (forced here by a deliverer that dies after sending)
carries the same key. The standalone ``coldchain alerts deliver`` runs as a subprocess until
SIGTERM. The SIGKILL of a real ingest process: tests/e2e/test_alert_channels.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from coldchain.alerts import parse_routing
from coldchain.rules import Change, Excursion
from ingest.channels import build_channels
from ingest.outbox import AlertDelivery, alert_message
from registry import Registry, open_registry, upgrade
from tests.alert_receivers import HttpReceiver, SmtpReceiver
from tests.harness import wait_for

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000  # 2026-09-21 (a Monday) 18:13:20 UTC
MIN = 60_000
SECRET = "s3cret-for-tests"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def seconds(self) -> float:
        return self.now / 1000


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def url(tmp_path: Path) -> str:
    u = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(u)
    return u


@pytest.fixture
def reg(url: str, clock: Clock) -> Iterator[Registry]:
    with open_registry(url, clock=clock) as registry:
        yield registry


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    r = HttpReceiver(answer={"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success"})
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    r = SmtpReceiver()
    yield r
    r.close()


def _exc(severity: str = "critical", **kw: Any) -> Excursion:
    base: dict[str, Any] = {
        "asset_id": "truck-1",
        "compartment_id": "c1",
        "rule": "range",
        "kind": "range",
        "severity": severity,
        "status": "open",
        "start_ms": T0 - 10 * MIN,
        "end_ms": None,
        "detected_ms": T0,
        "peak_c": 9.5,
        "degree_minutes": 31.5,
        "profile": "chilled",
        "detail": "above 8.0 degC for 10 min",
    }
    return Excursion(**(base | kw))


def _routing(http: HttpReceiver, smtp: SmtpReceiver, **extra: Any) -> dict[str, Any]:
    return {
        "timezone": "Asia/Shanghai",
        "channels": {
            "hook": {"type": "webhook", "url": f"{http.url}/hook", "secret": SECRET},
            "wecom": {"type": "wecom", "url": f"{http.url}/wecom?key=k1"},
            "dingtalk": {
                "type": "dingtalk",
                "url": f"{http.url}/dingtalk?access_token=t1",
                "secret": SECRET,
            },
            "feishu": {"type": "feishu", "url": f"{http.url}/feishu", "secret": SECRET},
            "mail": {
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp.port,
                "from": "coldchain@example.test",
                "to": ["ops@example.test", "qa@example.test"],
            },
            "oncall": {"type": "webhook", "url": f"{http.url}/oncall", "secret": SECRET},
        },
        "routes": [
            {"name": "all", "channels": ["hook", "mail"]},
            {
                "name": "chat",
                "match": {"assets": ["truck-*"], "severities": ["critical", "warning"]},
                "channels": ["wecom", "dingtalk", "feishu"],
            },
        ],
        **extra,
    }


def _stage(reg: Registry, routing: dict[str, Any], clock: Clock, **kw: Any) -> AlertDelivery:
    config = parse_routing(routing)
    channels = build_channels(config, clock_s=clock.seconds)
    return AlertDelivery(reg, config, channels, clock_ms=clock, retry_max_s=30, **kw)


def _record(reg: Registry, *changes: Change) -> None:
    reg.upsert_excursions(
        [c.excursion for c in changes], alerts=[alert_message(c) for c in changes]
    )


def _drain(stage: AlertDelivery, rounds: int = 5) -> None:
    for _ in range(rounds):
        if stage.deliver_round() == 0:
            return
    raise AssertionError("deliveries still going after the rounds allowed")


def test_one_notification_per_change_on_every_channel_and_repeats_carry_the_key(
    reg: Registry, clock: Clock, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    stage = _stage(reg, _routing(http, smtp), clock)
    opened = _exc()
    _record(reg, Change("opened", opened))
    _drain(stage)
    clock.now += 5 * MIN
    reg.record_acknowledgement(opened.id, by="ops", comment="door shut", disposition="released")
    _drain(stage)
    clock.now += 5 * MIN
    closed = _exc(status="closed", end_ms=T0 + 9 * MIN)
    _record(reg, Change("closed", closed))
    # A deliverer claims the close for e-mail and the webhook, sends, and dies before it can
    # record the outcome: the rows stay pending under its lease until the lease runs out.
    dead = _stage(reg, _routing(http, smtp), clock, owner="dead")
    dead.route_due()
    for name in ("hook", "mail"):
        ch = build_channels(parse_routing(_routing(http, smtp)))[name]
        claimed = reg.claim_alert_deliveries(name, owner="dead", lease_ms=MIN, limit=5)
        assert [d.key for d in claimed] == [f"{opened.id}:closed"]
        assert ch.send(claimed) == [""]
    _drain(stage)  # leased by the dead one: the live deliverer leaves them alone
    assert http.keys("/hook")[f"{opened.id}:closed"] == 1
    clock.now += 2 * MIN  # the lease ran out: sent again, under the same key
    _drain(stage)

    changes = [f"{opened.id}:opened", f"{opened.id}:acknowledged:1", f"{opened.id}:closed"]
    assert set(http.keys("/hook")) == set(changes)
    assert set(smtp.keys()) == set(changes)
    # Repeats only for the change whose outcome was lost, and only under its key.
    assert http.keys("/hook") == Counter({changes[0]: 1, changes[1]: 1, changes[2]: 2})
    assert smtp.keys() == Counter({changes[0]: 1, changes[1]: 1, changes[2]: 2})
    for path in ("/wecom", "/dingtalk", "/feishu"):
        assert len(http.requests(path)) == 3, path  # robots: one message per change
    rows = reg.alert_deliveries()
    assert {r.state for r in rows} == {"delivered"} and len(rows) == 3 * 5
    # Every e-mail went to both recipients, with the key in a header and a stable Message-ID.
    for rcpts, msg in smtp.messages:
        assert sorted(rcpts) == ["ops@example.test", "qa@example.test"]
        assert msg["Subject"].startswith("[CRITICAL] ")
    ids = {str(m["X-Coldchain-Key"]): str(m["Message-ID"]) for _, m in smtp.messages}
    assert len(set(ids.values())) == 3
    ack_mail = next(m for _, m in smtp.messages if "acknowledged" in m["X-Coldchain-Key"])
    assert "Acknowledged by: ops" in ack_mail.get_content()


def test_a_receiver_that_fails_five_times_still_gets_it_once_with_backoff(
    reg: Registry, clock: Clock, smtp: SmtpReceiver
) -> None:
    flaky = HttpReceiver(fail_first=5)
    try:
        routing = {
            "channels": {"hook": {"type": "webhook", "url": f"{flaky.url}/hook"}},
            "routes": [{"name": "all", "channels": ["hook"]}],
        }
        stage = _stage(reg, routing, clock)
        exc = _exc()
        _record(reg, Change("opened", exc))
        waits = []
        while not flaky.accepted:
            assert len(flaky.refused) <= 5
            before = clock.now
            stage.deliver_round()
            (row,) = reg.alert_deliveries()
            if row.state == "pending":
                waits.append(row.next_attempt_ms - before)
                assert stage.deliver_round() == 0  # nothing due before the backoff
                clock.now = row.next_attempt_ms
        assert waits == [1000, 2000, 4000, 8000, 16000]  # doubling from 1 s, cap 30 s
        assert len(flaky.refused) == 5
        assert flaky.keys() == Counter({f"{exc.id}:opened": 1})
        assert {r.json()["key"] for r in flaky.refused} == {f"{exc.id}:opened"}
        (row,) = reg.alert_deliveries()
        assert (row.state, row.attempts, row.last_error) == ("delivered", 6, "")
        clock.now += 3_600_000
        assert stage.deliver_round() == 0 and len(flaky.accepted) == 1
    finally:
        flaky.close()


def test_signatures_verify_and_robot_bodies_have_their_documented_shapes(
    reg: Registry, clock: Clock, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    stage = _stage(reg, _routing(http, smtp), clock)
    exc = _exc()
    _record(reg, Change("opened", exc))
    _drain(stage)

    # Generic webhook: HMAC-SHA256 of the exact body, hex, with the configured secret.
    (hook,) = http.requests("/hook")
    expected = hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hook.headers["x-coldchain-signature"] == f"sha256={expected}"
    assert hook.headers["x-coldchain-timestamp"] == str(T0 // 1000)
    assert hook.headers["idempotency-key"] == f"{exc.id}:opened"
    assert hook.json()["key"] == f"{exc.id}:opened" and hook.json()["severity"] == "critical"
    tampered = hook.body.replace(b"critical", b"warning")
    forged = hmac.new(SECRET.encode(), tampered, hashlib.sha256).hexdigest()
    assert f"sha256={forged}" != hook.headers["x-coldchain-signature"]

    # WeCom: markdown message, no signing.
    (wecom,) = http.requests("/wecom")
    assert wecom.path == "/wecom?key=k1"
    body = wecom.json()
    assert set(body) == {"msgtype", "markdown"} and body["msgtype"] == "markdown"
    assert set(body["markdown"]) == {"content"}
    assert exc.id in body["markdown"]["content"]
    assert len(body["markdown"]["content"].encode()) <= 4096

    # DingTalk: markdown {title, text}; timestamp (ms) and sign in the query string, sign =
    # base64(HMAC-SHA256(secret, timestamp + "\n" + secret)).
    (ding,) = http.requests("/dingtalk")
    query = parse_qs(urlsplit(ding.path).query)
    assert query["access_token"] == ["t1"] and query["timestamp"] == [str(T0)]
    mac = hmac.new(SECRET.encode(), f"{T0}\n{SECRET}".encode(), hashlib.sha256).digest()
    assert query["sign"] == [base64.b64encode(mac).decode()]
    body = ding.json()
    assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"title", "text"}
    assert body["markdown"]["title"].startswith("[CRITICAL] opened: truck-1/c1")

    # Feishu: interactive card with lark_md; timestamp (s) and sign in the body, sign =
    # base64(HMAC-SHA256(key=timestamp + "\n" + secret, message="")).
    (feishu,) = http.requests("/feishu")
    body = feishu.json()
    ts = T0 // 1000
    assert body["timestamp"] == str(ts)
    mac = hmac.new(f"{ts}\n{SECRET}".encode(), b"", hashlib.sha256).digest()
    assert body["sign"] == base64.b64encode(mac).decode()
    assert body["msg_type"] == "interactive"
    (element,) = body["card"]["elements"]
    assert element["tag"] == "div" and element["text"]["tag"] == "lark_md"
    assert exc.id in element["text"]["content"]


def test_a_robot_that_answers_200_with_an_error_code_is_retried(
    reg: Registry, clock: Clock
) -> None:
    refusing = HttpReceiver(answer={"errcode": 310000, "errmsg": "sign not match"})
    try:
        routing = {
            "channels": {"ding": {"type": "dingtalk", "url": f"{refusing.url}/d"}},
            "routes": [{"name": "all", "channels": ["ding"]}],
        }
        stage = _stage(reg, routing, clock)
        _record(reg, Change("opened", _exc()))
        stage.deliver_round()
        (row,) = reg.alert_deliveries()
        assert row.state == "pending" and "sign not match" in row.last_error
        assert "access_token" not in row.last_error  # no secrets in errors
    finally:
        refusing.close()


def _escalation_routing(http: HttpReceiver, smtp: SmtpReceiver) -> dict[str, Any]:
    return _routing(
        http,
        smtp,
        escalations=[{"name": "oncall", "after_min": 30, "channels": ["oncall"]}],
    )


def test_escalation_fires_once_after_its_delay(
    reg: Registry, clock: Clock, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    stage = _stage(reg, _escalation_routing(http, smtp), clock)
    exc = _exc()
    warning = _exc(severity="warning", compartment_id="c2")
    _record(reg, Change("opened", exc), Change("opened", warning))
    _drain(stage)
    clock.now += 30 * MIN - 1
    _drain(stage)
    assert http.requests("/oncall") == []  # not before its delay
    clock.now += 1
    _drain(stage)
    (esc,) = http.requests("/oncall")
    body = esc.json()
    assert (body["key"], body["change"]) == (f"{exc.id}:unacknowledged:oncall", "unacknowledged")
    assert body["escalation"] == "oncall" and body["after_min"] == 30
    # Once: later rounds, a restart (a new deliverer) and a later change send nothing more.
    clock.now += 120 * MIN
    _record(reg, Change("escalated", _exc(peak_c=12.0)))
    _drain(_stage(reg, _escalation_routing(http, smtp), clock))
    clock.now += 120 * MIN
    _drain(stage)
    assert len(http.requests("/oncall")) == 1
    assert f"{warning.id}:unacknowledged:oncall" not in http.keys("/oncall")  # not critical


def test_escalation_does_not_fire_when_acknowledged_in_time(
    reg: Registry, clock: Clock, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    stage = _stage(reg, _escalation_routing(http, smtp), clock)
    exc = _exc()
    _record(reg, Change("opened", exc))
    _drain(stage)
    clock.now += 29 * MIN
    reg.record_acknowledgement(exc.id, by="ops", disposition="quarantined")
    _drain(stage)
    clock.now += 10 * MIN
    _drain(stage)
    assert http.requests("/oncall") == []
    assert stage.stats()["alerts_escalations_cancelled"] == 1
    # The acknowledgement itself was notified on the routes; the timer is routed (cancelled).
    assert f"{exc.id}:acknowledged:1" in http.keys("/hook")
    timer = next(e for e in reg.outbox_entries() if e.key.endswith(":unacknowledged:oncall"))
    assert timer.routed_ms == T0 + 39 * MIN
    assert not any(d.key == timer.key for d in reg.alert_deliveries())


def test_two_deliverers_at_once_send_each_delivery_once(
    url: str, clock: Clock, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    routing = _routing(http, smtp)
    with open_registry(url, clock=clock) as a, open_registry(url, clock=clock) as b:
        excs = [_exc(compartment_id=f"c{i}") for i in range(20)]
        _record(a, *(Change("opened", e) for e in excs))
        stages = [
            _stage(a, routing, clock, owner="a", batch=3),
            _stage(b, routing, clock, owner="b", batch=3),
        ]
        errors: list[BaseException] = []

        def run(stage: AlertDelivery) -> None:
            try:
                for _ in range(40):
                    stage.deliver_round()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in stages]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        _drain(stages[0])
        keys = {f"{e.id}:opened" for e in excs}
        assert http.keys("/hook") == Counter({k: 1 for k in keys})
        assert smtp.keys() == Counter({k: 1 for k in keys})
        assert {r.state for r in a.alert_deliveries()} == {"delivered"}
        assert sum(s.stats()["alerts_routed"] for s in stages) == 20  # type: ignore[misc]


def test_quiet_hours_delay_a_warning_to_their_end_but_never_a_critical_alert(
    reg: Registry, clock: Clock, http: HttpReceiver
) -> None:
    routing = {
        "timezone": "Asia/Shanghai",
        "channels": {"chat": {"type": "wecom", "url": f"{http.url}/wecom"}},
        "routes": [
            {
                "name": "night",
                "channels": ["chat"],
                "quiet_hours": {"start": "22:00", "end": "07:00"},
            }
        ],
    }
    clock.now = 1_790_100_000_000  # 2026-09-23 02:00 in Shanghai: inside the window
    end = 1_790_118_000_000  # 2026-09-23 07:00 in Shanghai
    stage = _stage(reg, routing, clock)
    warning, critical = _exc(severity="warning"), _exc(compartment_id="c2")
    _record(reg, Change("opened", warning), Change("opened", critical))
    _drain(stage)
    (first,) = http.requests()  # the critical one at once
    assert critical.id in first.json()["markdown"]["content"]
    assert warning.id not in first.json()["markdown"]["content"]
    clock.now = end - 1
    _drain(stage)
    assert len(http.requests()) == 1  # the warning waits for the end of the window
    clock.now = end
    _drain(stage)
    assert len(http.requests()) == 2
    assert warning.id in http.requests()[1].json()["markdown"]["content"]


def test_the_standalone_deliverer_sends_until_sigterm(
    url: str, http: HttpReceiver, tmp_path: Path
) -> None:
    routing = tmp_path / "alerts.yaml"
    routing.write_text(
        yaml.safe_dump(
            {
                "channels": {"hook": {"type": "webhook", "url": f"{http.url}/hook"}},
                "routes": [{"name": "all", "channels": ["hook"]}],
            }
        )
    )
    exc = _exc()
    with open_registry(url) as reg:  # the wall clock, as the API's process
        _record(reg, Change("opened", exc))
        reg.record_acknowledgement(exc.id, by="ops", disposition="released")
    env = {
        **os.environ,
        "COLDCHAIN_REGISTRY_URL": url,
        "COLDCHAIN_ALERTS__ROUTING_PATH": str(routing),
    }
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "alerts", "deliver"],
        env=env,
        cwd=root,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        keys = {f"{exc.id}:opened", f"{exc.id}:acknowledged:1"}
        assert wait_for(lambda: set(http.keys("/hook")) == keys, 60, 0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "coldchain alerts: delivering" in (proc.stderr.read() if proc.stderr else "")
    assert http.keys("/hook") == Counter({k: 1 for k in keys})
    with open_registry(url) as reg:
        assert {(d.key, d.state) for d in reg.alert_deliveries()} == {
            (k, "delivered") for k in keys
        }
