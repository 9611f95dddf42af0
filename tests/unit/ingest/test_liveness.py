"""``ProbeMonitor``: deaf vs idle vs held up by the pipeline, and the disconnected grace.

No broker and no clock: times are passed in (tests/integration/test_mqtt_liveness.py runs the
probe through a real mosquitto).
"""

from __future__ import annotations

import pytest

from ingest.health import Health
from ingest.liveness import (
    MQTT_DISCONNECTED,
    MQTT_NOT_RECEIVING,
    ProbeAction,
    ProbeMonitor,
    probe_subscription,
    probe_topic,
)


def _monitor(health: Health) -> ProbeMonitor:
    return ProbeMonitor(
        health,
        interval_s=1.0,
        missed_intervals=3,
        disconnected_grace_s=10.0,
        endpoint="127.0.0.1:1883",
        now_s=0.0,
    )


def test_an_idle_fleet_is_healthy_while_probes_return() -> None:
    health = Health()
    m = _monitor(health)
    m.connected(0.0)
    for t in range(1, 30):
        m.probe_returned(t - 0.5)  # the probe of the previous tick came back, nothing else
        assert m.tick(float(t), messages_seen=t, delivering=False) is ProbeAction.NONE
    assert health.ok


def test_silence_for_the_missed_intervals_raises_and_resubscribes_once_per_window() -> None:
    health = Health()
    m = _monitor(health)
    m.connected(0.0)
    actions = [m.tick(float(t), messages_seen=0, delivering=False) for t in range(1, 10)]
    # Nothing at all arrived: raised at 3 s, then once more per further 3 s of silence.
    assert [t + 1 for t, a in enumerate(actions) if a is ProbeAction.RESUBSCRIBE] == [3, 6, 9]
    assert "nothing received for 9 s" in health.problems()[MQTT_NOT_RECEIVING]
    assert m.resubscribes == 3
    m.probe_returned(9.5)
    assert health.ok
    assert m.tick(10.0, messages_seen=1, delivering=False) is ProbeAction.NONE


def test_telemetry_arriving_is_receiving_even_when_probes_lag_behind_a_backlog() -> None:
    health = Health()
    m = _monitor(health)
    m.connected(0.0)
    for t in range(1, 20):  # a backlog drains: messages arrive, the probes wait behind it
        assert m.tick(float(t), messages_seen=100 * t, delivering=False) is ProbeAction.NONE
    assert health.ok


def test_a_pipeline_holding_the_network_thread_is_not_deafness() -> None:
    health = Health()
    m = _monitor(health)
    m.connected(0.0)
    for t in range(1, 20):  # the delivery queue is full: paho's thread waits inside deliver()
        assert m.tick(float(t), messages_seen=5, delivering=True) is ProbeAction.NONE
    assert health.ok
    # Once it returns and nothing more comes, the silence is counted from then on.
    assert [m.tick(float(t), 5, False) for t in (20, 21)] == [ProbeAction.NONE] * 2
    assert m.tick(22.0, 5, False) is ProbeAction.RESUBSCRIBE
    assert MQTT_NOT_RECEIVING in health.problems()


def test_disconnected_is_raised_after_the_grace_and_cleared_on_connect() -> None:
    health = Health()
    m = _monitor(health)
    m.connected(0.0)
    m.disconnected(5.0, "broker went away")
    for t in range(6, 16):
        m.tick(float(t), 0, False)
    assert health.ok  # a restart within the grace is not a problem
    m.tick(16.0, 0, False)
    assert "for 11 s (broker went away)" in health.problems()[MQTT_DISCONNECTED]
    assert MQTT_NOT_RECEIVING not in health.problems()  # not judged while disconnected
    m.connected(17.0)
    assert health.ok


def test_never_connected_counts_from_start() -> None:
    health = Health()
    m = _monitor(health)
    m.disconnected(2.0, "connect refused: Not authorized")
    m.tick(11.0, 0, False)
    assert "(connect refused: Not authorized)" in health.problems()[MQTT_DISCONNECTED]


def test_a_refused_subscription_is_not_receiving() -> None:
    health = Health()
    _monitor(health).refused("$share/g/coldchain/v1/devices/+/telemetry")
    assert "refused the subscription $share/g/" in health.problems()[MQTT_NOT_RECEIVING]


def test_probe_topics_are_one_level_per_process_and_a_group_of_their_own() -> None:
    assert probe_topic("ingest-1") == "coldchain/v1/ingest/ingest-1/probe"
    assert probe_subscription("ingest-1") == (
        "$share/ingest-1-probe/coldchain/v1/ingest/ingest-1/probe"
    )
    # Characters that are not allowed in a topic level or a share name are replaced, and a
    # hash keeps ids that differ only in those characters apart.
    a, b = probe_topic("a/b+#"), probe_topic("a_b__")
    assert a != b and a.count("/") == b.count("/") == 4
    assert not any(c in probe_subscription("x/y#z").split("/", 2)[1] for c in "/+#")


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        ProbeMonitor(
            Health(),
            interval_s=0,
            missed_intervals=3,
            disconnected_grace_s=1,
            endpoint="x",
            now_s=0,
        )
