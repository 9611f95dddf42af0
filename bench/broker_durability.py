"""Broker durability benchmark: what a mosquitto SIGKILL loses, and what its autosave costs.

Prints one JSON object. Starts its own mosquitto (deploy.launcher, production's configuration
with persistence), loopback only; a full run takes a few minutes.

- ``save_cost``: how long one store save (SIGUSR1; fsync included) stalls the broker, with Q
  ~200-byte QoS 1 messages queued for an absent ingest session, and the store's size. The
  stall is the largest gap between PUBACKs of a client publishing every 2 ms (mosquitto's
  event loop does nothing else while it saves); the same client's largest gap over a second
  without a save is the baseline. Every autosave costs this while ingest is down.
- ``restart_keeping_up``: 2,000 msg/s published; an MQTT source acknowledging in group commits
  (every 10 ms, like ingest's spool) keeps up; at 40 % the broker restarts (graceful, or
  SIGKILL then start); the publisher, back 50 ms after the broker (the worst case), resends
  what the broker had not acknowledged.
  ``lost`` = acknowledged to the publisher, never delivered. Once through the share group,
  once with a plain subscription (``COLDCHAIN_MQTT__SHARE_GROUP=""``): mosquitto 2.0 restores
  only the plain one, so through the share group what devices publish before ingest has
  subscribed again is dropped.
- ``kill_ingest_down``: the same rate queued for an absent ingest session (ingest stopped),
  SIGKILL after 1.5 autosave intervals: what arrived since the last autosave is lost, up to
  one interval of input. ``baseline``: the same with production's previous
  ``autosave_interval 30``.

Usage: ``uv run python bench/broker_durability.py [--autosave 5] [--queued 0,50000,200000]``
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from coldchain.contract import device_topic
from coldchain.settings import MqttSettings
from deploy.launcher import Mosquitto
from ingest.consumer import Delivery, MqttSource
from simulators.loadgen import LoadPublisher

PAYLOAD = b"x" * 200


class _Broker(Mosquitto):
    """Production's configuration with another autosave interval (for comparison only)."""

    def __init__(self, data_dir: Path, autosave_s: int | None) -> None:
        super().__init__(data_dir)
        self.autosave_s = autosave_s

    def config_overrides(self) -> dict[str, str | None]:
        out = super().config_overrides()
        if self.autosave_s is not None:
            out["autosave_interval"] = f"autosave_interval {self.autosave_s}"
        return out


class _Publisher:
    def __init__(self, port: int, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        # Devices that come back 50 ms after the broker: the worst case for the time ingest
        # needs to subscribe again.
        self.client.reconnect_delay_set(0.05, 1)  # type: ignore[arg-type]
        self.sent: list[tuple[bytes, mqtt.MQTTMessageInfo]] = []
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def run(self, n: int, rate: float, start: int = 0, on_index: Any = None) -> None:
        t0 = time.monotonic()
        for i in range(start, start + n):
            if on_index is not None:
                on_index(i)
            due = t0 + (i - start) / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            payload = b"%08d" % i + PAYLOAD
            self.sent.append((payload, self.client.publish(device_topic("d"), payload, qos=1)))

    def acked(self) -> set[bytes]:
        return {p for p, info in self.sent if info._published}

    def wait_acked(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.acked()) == len(self.sent):
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _GroupCommitSink:
    """Acknowledges what it received every ``every_s`` (ingest acks after each spool commit)."""

    def __init__(self, every_s: float = 0.01) -> None:
        self.src: MqttSource | None = None
        self.got: set[bytes] = set()
        self._pending: list[Delivery] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def __call__(self, d: Delivery) -> None:
        with self._lock:
            self.got.add(d.payload)
            self._pending.append(d)

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            with self._lock:
                batch, self._pending = self._pending, []
            for d in batch:
                assert self.src is not None
                self.src.ack(d)

    def count(self) -> int:
        with self._lock:
            return len(self.got)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _settle(sink: _GroupCommitSink, quiet_s: float = 3.0, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = sink.count()
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.1)


class _Pinger:
    """Publishes QoS 1 every ~2 ms and records when PUBACKs arrive: the largest gap between
    two is how long the broker did nothing else (a save blocks its event loop)."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pinger")
        self.acks: list[float] = []
        self.client.on_publish = lambda *_a: self.acks.append(time.perf_counter())
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.client.publish("bench/ping", b"p", qos=1)

    def max_gap_ms(self, since: float) -> float:
        times = [t for t in self.acks if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0) * 1000

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def save_cost(root: Path, autosave_s: int | None, queued: list[int]) -> list[dict[str, Any]]:
    out = []
    for q in queued:
        broker = _Broker(root / f"save-{q}", autosave_s)
        broker.start()
        try:
            # An ingest session that subscribed, then went away: the broker queues for it.
            src = MqttSource(
                MqttSettings(port=broker.port, client_id="absent-ingest", share_group="g"),
                lambda d: None,
            )
            src.start()
            assert src.wait_connected(10)
            src.stop()
            fill = LoadPublisher("127.0.0.1", broker.port, "fill", max_inflight=1000)
            t0 = time.perf_counter()
            for _ in range(q):
                fill.publish(device_topic("d"), PAYLOAD)
            assert fill.flush(600), "fill not acknowledged"
            fill_s = time.perf_counter() - t0
            fill.close()
            pinger = _Pinger(broker.port)
            time.sleep(0.5)
            idle_since = time.perf_counter()
            time.sleep(1.0)
            idle_gap = pinger.max_gap_ms(idle_since)
            stalls = []
            for _ in range(3):
                since = time.perf_counter()
                broker.save_store(600)
                time.sleep(0.3)
                stalls.append(pinger.max_gap_ms(since))
            pinger.close()
            out.append(
                {
                    "queued_messages": q,
                    "fill_msgs_per_s": round(q / fill_s) if q else None,
                    "store_bytes": broker.store_path.stat().st_size,
                    "broker_stall_ms_median": round(sorted(stalls)[1], 1),
                    "baseline_max_ack_gap_ms_without_save": round(idle_gap, 1),
                }
            )
        finally:
            broker.cleanup()
    return out


def restart_keeping_up(
    root: Path, autosave_s: int | None, n: int, rate: float, group: str, how: str
) -> dict[str, Any]:
    broker = _Broker(root / f"keep-{how}-{group}", autosave_s)
    broker.start()
    sink = _GroupCommitSink()
    src = MqttSource(
        MqttSettings(port=broker.port, client_id="bench-ingest", share_group=group), sink
    )
    sink.src = src
    src.start()
    assert src.wait_connected(10)
    pub = _Publisher(broker.port, "bench-pub")
    kill_at = int(n * 0.4)
    killed = threading.Event()

    def crash(i: int) -> None:
        if i == kill_at:
            if how == "sigkill":
                broker.kill()
                threading.Thread(target=broker.start, daemon=True).start()
            else:
                threading.Thread(target=broker.restart, daemon=True).start()
            killed.set()

    try:
        pub.run(n, rate, on_index=crash)
        assert pub.wait_acked(120), "publisher never got every PUBACK"
        _settle(sink)
        acked = pub.acked()
        lost = len(acked - sink.got)
        return {
            "restart": how,
            "subscription": f"$share/{group}/..." if group else "plain",
            "published": n,
            "rate_msgs_per_s": rate,
            "acknowledged_by_broker": len(acked),
            "lost": lost,
        }
    finally:
        src.stop()
        sink.close()
        pub.close()
        broker.cleanup()


def kill_ingest_down(root: Path, autosave_s: int, rate: float) -> dict[str, Any]:
    broker = _Broker(root / f"down-{autosave_s}", autosave_s)
    broker.start()
    sink = _GroupCommitSink()
    settings = MqttSettings(port=broker.port, client_id="bench-ingest", share_group="bench")
    src = MqttSource(settings, sink)
    sink.src = src
    src.start()
    assert src.wait_connected(10)
    src.stop()  # the session stays; ingest is now down
    pub = _Publisher(broker.port, "bench-pub")
    saves: list[float] = []
    watching = threading.Event()

    def watch_store() -> None:  # when did mosquitto last write its store?
        seen = broker.store_path.stat().st_mtime_ns
        while not watching.wait(0.01):
            with contextlib.suppress(FileNotFoundError):
                m = broker.store_path.stat().st_mtime_ns
                if m != seen:
                    seen = m
                    saves.append(time.monotonic())

    watcher = threading.Thread(target=watch_store, daemon=True)
    watcher.start()
    try:
        # Publish for 1.5 intervals: the kill lands about half an interval after an autosave.
        seconds = autosave_s * 1.5
        n = int(rate * seconds)
        pub.run(n, rate)
        assert pub.wait_acked(60)
        acked = pub.acked()
        broker.kill()
        killed_at = time.monotonic()
        watching.set()
        watcher.join(5)
        broker.start()
        src = MqttSource(settings, sink)
        sink.src = src
        src.start()
        assert src.wait_connected(30)
        _settle(sink)
        src.stop()
        return {
            "autosave_interval_s": autosave_s,
            "queued_while_ingest_down": len(acked),
            "seconds_since_last_autosave_at_kill": round(killed_at - saves[-1], 2)
            if saves
            else None,
            "lost": len(acked - sink.got),
        }
    finally:
        sink.close()
        pub.close()
        broker.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--autosave", type=int, default=None, help="default: production's value")
    ap.add_argument("--baseline-autosave", type=int, default=30)
    ap.add_argument("--queued", default="0,50000,200000")
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=2_000.0)
    args = ap.parse_args()
    queued = [int(q) for q in args.queued.split(",") if q]
    production = next(
        int(line.split()[1])
        for line in (Path(__file__).resolve().parents[1] / "deploy/mosquitto/mosquitto.conf")
        .read_text()
        .splitlines()
        if line.startswith("autosave_interval")
    )
    chosen = args.autosave if args.autosave is not None else production
    with tempfile.TemporaryDirectory(prefix="coldchain-bench-broker-") as tmp:
        root = Path(tmp)
        result = {
            "autosave_interval_s": chosen,
            "save_cost": save_cost(root, chosen, queued),
            "restart_keeping_up": [
                restart_keeping_up(root, chosen, args.messages, args.rate, group, how)
                for how in ("graceful", "sigkill")
                for group in ("bench", "")
            ],
            "kill_ingest_down": kill_ingest_down(root, chosen, args.rate),
            "baseline": {
                "autosave_interval_s": args.baseline_autosave,
                "kill_ingest_down": kill_ingest_down(root, args.baseline_autosave, args.rate),
            },
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
