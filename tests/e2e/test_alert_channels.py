"""Alert channels survive a SIGKILL between recording a change and delivering it, and an
acknowledgement recorded while ingest is down is delivered without it (issue 11 item 3).

A real ``coldchain ingest`` on real mosquitto and influxd, with a routing file sending every
alert to the MQTT topic, a generic webhook (a real HTTP server on loopback, HMAC-signed) and
e-mail (a real SMTP server, aiosmtpd). ``COLDCHAIN_ALERTS__HOLD_S`` holds queued alerts back:
a chilled truck's range excursion opens and closes, both changes are recorded with their
alerts queued, nothing is routed or sent, and ingest is SIGKILLed. Restarted without the hold,
it delivers: every receiver gets exactly one notification per idempotency key. Then, with
ingest stopped, an operator acknowledges the excursion with the CLI and
``coldchain alerts deliver --once`` delivers that change to all three channels.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from deploy.launcher import Services
from registry import ChannelDelivery, OutboxEntry, open_registry
from simulators.loadgen import LoadPublisher
from tests.alert_receivers import HttpReceiver, SmtpReceiver
from tests.e2e.ingest_process import ROOT, IngestProcess
from tests.e2e.test_alert_outbox import _Subscriber
from tests.e2e.test_rules_restart import FLEET, MIN, _msg, _truck_b_temp
from tests.harness import settings_env, spine_settings, wait_for

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret"


def _entries(url: str) -> list[OutboxEntry]:
    with open_registry(url) as reg:
        return reg.outbox_entries()


def _deliveries(url: str) -> list[ChannelDelivery]:
    with open_registry(url) as reg:
        return reg.alert_deliveries()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_channels_get_one_notification_per_change_across_a_sigkill(
    services: Services, unique_name: str, tmp_path: Path
) -> None:
    http, smtp = HttpReceiver(), SmtpReceiver()
    routing = tmp_path / "alerts.yaml"
    routing.write_text(
        yaml.safe_dump(
            {
                "timezone": "Europe/Berlin",
                "channels": {
                    "mqtt": {"type": "mqtt"},
                    "hook": {"type": "webhook", "url": f"{http.url}/hook", "secret": SECRET},
                    "mail": {
                        "type": "email",
                        "host": "127.0.0.1",
                        "port": smtp.port,
                        "from": "coldchain@example.test",
                        "to": ["ops@example.test"],
                    },
                },
                "routes": [{"name": "all", "channels": ["mqtt", "hook", "mail"]}],
            }
        )
    )
    settings = spine_settings(services, unique_name, tmp_path)
    settings.fleet_path.write_text(FLEET.to_yaml())
    url = settings.registry_url
    env = settings_env(settings) | {"COLDCHAIN_ALERTS__ROUTING_PATH": str(routing)}
    now = int(time.time() * 1000)
    base = now - now % MIN - 100 * MIN
    sub = _Subscriber(services.mosquitto.port, unique_name)
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, f"pub-{unique_name}")
    held = IngestProcess(
        settings,
        tmp_path / "ingest.log",
        COLDCHAIN_ALERTS__HOLD_S="600",
        COLDCHAIN_ALERTS__ROUTING_PATH=str(routing),
    )
    ingest = held.start()
    try:
        for m in range(95):  # a range excursion [30, 55]: opened, then closed
            pub.publish(*_msg("truck-b", base + m * MIN, m, _truck_b_temp(m)))
        assert pub.flush(30)

        def both_queued() -> bool:
            return {"opened", "closed"} <= {e.key.split(":")[1] for e in _entries(url)}

        assert wait_for(both_queued, 60, 0.2), held.log.read_text()[-3000:]
        # Recorded and queued, not routed nor sent: the kill lands between the two.
        queued = _entries(url)
        assert all(e.routed_ms is None for e in queued) and _deliveries(url) == []
        assert (http.accepted, smtp.messages, sub.keys()) == ([], [], Counter())
        held.kill()

        ingest = IngestProcess(
            settings, tmp_path / "ingest.log", COLDCHAIN_ALERTS__ROUTING_PATH=str(routing)
        ).start()
        keys = {e.key for e in queued}

        def delivered() -> bool:
            rows = _deliveries(url)
            done = {(r.key, r.channel) for r in rows if r.delivered}
            return done >= {(k, ch) for k in keys for ch in ("mqtt", "hook", "mail")}

        assert wait_for(delivered, 60, 0.2), (_deliveries(url), ingest.log.read_text()[-3000:])
        assert wait_for(lambda: set(sub.keys()) >= keys, 30, 0.2)
        time.sleep(2.0)  # any repeat would be on its way by now
        one_each = Counter({k: 1 for k in keys})
        assert http.keys("/hook") == one_each
        assert smtp.keys() == one_each
        assert sub.keys() == one_each
        assert sorted(k.split(":")[1] for k in keys) == ["closed", "opened"]
        for req in http.requests("/hook"):
            mac = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
            assert req.headers["x-coldchain-signature"] == f"sha256={mac}"

        # Ingest down; an operator acknowledges with the CLI; the standalone deliverer sends it.
        assert ingest.sigterm(20) == 0
        (exc_id,) = {k.split(":")[0] for k in keys}
        ack = _cli(env, "excursions", "ack", exc_id, "--disposition", "released", "--by", "ops")
        assert ack.returncode == 0, ack.stderr
        ack_key = f"{exc_id}:acknowledged:1"
        assert ack_key in {e.key for e in _entries(url)}  # queued with the acknowledgement
        out = _cli(env, "alerts", "deliver", "--once")
        assert out.returncode == 0, out.stderr
        assert wait_for(lambda: sub.keys()[ack_key] > 0, 30, 0.2)
        assert http.keys("/hook") == one_each + Counter({ack_key: 1})
        assert smtp.keys() == one_each + Counter({ack_key: 1})
        assert {(r.channel, r.state) for r in _deliveries(url) if r.key == ack_key} == {
            ("mqtt", "delivered"),
            ("hook", "delivered"),
            ("mail", "delivered"),
        }
        status = _cli(env, "alerts", "status")
        assert status.returncode == 0 and "hook" in status.stdout, status.stderr
    finally:
        pub.close()
        sub.close()
        ingest.kill()
        http.close()
        smtp.close()
