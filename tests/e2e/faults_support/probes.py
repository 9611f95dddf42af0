"""What a fault run watches and drives from outside ingest: the steady-rate QoS 1 publisher (its
own process, recording when the broker acknowledged each message), ``coldchain ingest`` as a
subprocess, a ``/healthz`` poller and an alert subscriber.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["AlertWatcher", "HealthProbe", "IngestProcess", "Publisher", "discard_session"]

REPO = Path(__file__).resolve().parents[3]


# -- publisher ----------------------------------------------------------------------------------


def _publish_loop(
    port: int,
    client_id: str,
    messages: list[tuple[str, bytes]],
    rate: float,
    published: Synchronized[int],
    acked: Synchronized[int],
    hold_at: int,
    release: Any,
    out: Any,
) -> None:
    """Child process: publish ``messages`` at ``rate`` msg/s, QoS 1, and report the monotonic
    time of each PUBACK (None: never acknowledged). paho re-sends unacknowledged messages after
    a reconnect, as a device does, so a broker outage delays messages rather than dropping
    them on the publisher's side. Before message ``hold_at`` it waits for ``release``."""
    ack_t: list[float | None] = [None] * len(messages)
    index_of: dict[int, int] = {}
    early: dict[int, float] = {}  # PUBACKs that came before publish() returned their mid
    lock = threading.Condition()  # never held while calling paho (paho calls back under its own)
    state = {"acked": 0}

    def record(i: int, t: float) -> None:
        if ack_t[i] is None:
            ack_t[i] = t
            state["acked"] += 1
            acked.value = state["acked"]

    def on_publish(client: object, userdata: object, mid: int, rc: object, p: object) -> None:
        now = time.monotonic()
        with lock:
            i = index_of.pop(mid, None)
            if i is None:
                early[mid] = now
            else:
                record(i, now)
            lock.notify_all()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    window = 100  # unacknowledged at most: 16-bit packet ids never wrap onto a live one
    client.max_inflight_messages_set(window)
    client.reconnect_delay_set(1, 1)  # as soon as the broker is back
    client.on_publish = on_publish
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    t0 = time.monotonic()
    for i, (topic, payload) in enumerate(messages):
        if i == hold_at:
            release.wait()
            t0 = time.monotonic() - i / rate
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with lock:
            # A device buffers while its broker is away: wait (as long as it takes) for room.
            while len(index_of) >= window:
                lock.wait(1.0)
        info = client.publish(topic, payload, qos=1)
        with lock:
            t = early.pop(info.mid, None)
            if t is None:
                index_of[info.mid] = i
            else:
                record(i, t)
        published.value = i + 1
    deadline = time.monotonic() + 300
    with lock:
        while state["acked"] < len(messages) and time.monotonic() < deadline:
            lock.wait(1.0)
    out.put(ack_t)
    client.disconnect()
    client.loop_stop()


class Publisher:
    """The devices: a separate process publishing a known set at a steady rate. It stops
    before message ``hold_at`` until ``release()`` (the tail that shows ingest receives again
    once the fault is over)."""

    def __init__(
        self,
        port: int,
        client_id: str,
        messages: list[tuple[str, bytes]],
        rate: float,
        hold_at: int = -1,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.n = len(messages)
        self.hold_at = hold_at
        self._release = ctx.Event()
        self._published: Synchronized[int] = ctx.Value("i", 0)
        self._acked: Synchronized[int] = ctx.Value("i", 0)
        self._out = ctx.Queue()
        self._proc = ctx.Process(
            target=_publish_loop,
            args=(
                port,
                client_id,
                messages,
                rate,
                self._published,
                self._acked,
                hold_at,
                self._release,
                self._out,
            ),
            daemon=True,
        )
        self.ack_times: list[float | None] | None = None
        self.started_at = 0.0

    def start(self) -> Publisher:
        self._proc.start()
        self.started_at = time.monotonic()
        return self

    @property
    def published(self) -> int:
        return int(self._published.value)

    @property
    def acked(self) -> int:
        return int(self._acked.value)

    def wait_published(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.published < count:
            if time.monotonic() > deadline or not self._proc.is_alive():
                return False
            time.sleep(0.002)
        return True

    def wait_acked(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.acked < count:
            if time.monotonic() > deadline or not self._proc.is_alive():
                return False
            time.sleep(0.01)
        return True

    def release(self) -> None:
        self._release.set()

    def result(self, timeout_s: float = 330.0) -> list[float | None]:
        """Ack time of every message, once the publisher finished (all acked, or gave up)."""
        if self.ack_times is None:
            self.ack_times = self._out.get(timeout=timeout_s)
            self._proc.join(10)
        return self.ack_times

    def stop(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


def discard_session(port: int, client_id: str) -> None:
    """Drop a persistent session (connect clean), so the broker stops queueing for it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    done = threading.Event()
    client.on_connect = lambda *_: done.set()
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()


# -- ingest ---------------------------------------------------------------------------------------


class IngestProcess:
    """``coldchain ingest`` as an operator runs it: COLDCHAIN_* environment, SIGTERM to stop."""

    # The line `coldchain ingest` prints once started (its errors start "coldchain ingest:" too).
    READY = re.compile(r"^coldchain ingest: \d+ devices registered", re.MULTILINE)

    def __init__(self, env: dict[str, str], log: Path, stdout: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("COLDCHAIN_")}
        self.env = base | env
        self.log, self.stdout = log, stdout
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        exe = Path(sys.executable).parent / "coldchain"
        self._cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]

    def start(self, timeout_s: float = 60.0) -> None:
        """Start and wait for the ready line; raises AssertionError with the log if it exits."""
        before = self._ready_lines()
        with self.log.open("ab") as err, self.stdout.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self._cmd, "ingest"], env=self.env, stdout=out, stderr=err, cwd=REPO
            )
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while self._ready_lines() <= before:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"coldchain ingest exited with {rc}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"coldchain ingest not ready in {timeout_s} s")
            time.sleep(0.05)

    def _ready_lines(self) -> int:
        if not self.log.exists():
            return 0
        return len(self.READY.findall(self.log.read_text(errors="replace")))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout_s: float = 120.0) -> tuple[int | None, float]:
        """SIGTERM; (exit code or None if it had to be killed, seconds to exit)."""
        if self.proc is None or self.proc.poll() is not None:
            return (None if self.proc is None else self.proc.returncode), 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc: int | None = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            rc = None
        return rc, time.monotonic() - t0

    def final_stats(self) -> dict[str, Any]:
        """The stats JSON the last clean exit printed (empty if none)."""
        lines = [ln for ln in self.stdout.read_text(errors="replace").splitlines() if ln]
        for line in reversed(lines):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
        return {}

    def log_tail(self, n_chars: int | None = 4000) -> str:
        """The last ``n_chars`` of the log (all of it for None)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text if n_chars is None else text[-n_chars:]


# -- health ---------------------------------------------------------------------------------------


class HealthProbe:
    """Polls ``/healthz`` every ``interval_s``; records (monotonic time, status or None when
    unreachable, body)."""

    def __init__(self, port: int, interval_s: float = 0.1) -> None:
        self.set_port(port)
        self.samples: list[tuple[float, int | None, str]] = []
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="healthz-probe")

    def set_port(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"

    def start(self) -> HealthProbe:
        self._thread.start()
        return self

    def poll(self) -> tuple[int | None, str]:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except OSError:
            return None, ""

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = self.poll()
            self.samples.append((time.monotonic(), status, body))
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def red_between(self, t0: float, t1: float) -> list[tuple[float, int | None, str]]:
        """Polls in [t0, t1] that were not 200 (unreachable counts: a probe fails too)."""
        return [s for s in self.samples if t0 <= s[0] <= t1 and s[1] != 200]

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as {name without prefix: value} (empty when unreachable)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):  # counters: no "_total" here
            if family.name.startswith("coldchain_ingest_"):
                for sample in family.samples:
                    if not sample.labels:
                        out[family.name.removeprefix("coldchain_ingest_")] = sample.value
        return out


# -- alerts ---------------------------------------------------------------------------------------


class AlertWatcher:
    """An operator's console: a persistent-session QoS 1 subscriber of every alert."""

    def __init__(self, port: int, client_id: str, assets: set[str]) -> None:
        self.client_id = client_id
        # (monotonic time, payload, MQTT dup flag: a broker redelivery to this subscriber)
        self.items: list[tuple[float, dict[str, Any], bool]] = []
        self._assets = assets
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        # Subscribing again on every connect is harmless for a plain (non-shared) filter and
        # covers a broker that came back without this session.
        c.on_connect = lambda c, *_: c.subscribe("coldchain/v1/alerts/#", qos=1)
        c.on_subscribe = lambda *_: self._subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 1)
        self._c = c
        self.port = port

    def start(self) -> AlertWatcher:
        self._c.connect("127.0.0.1", self.port, keepalive=10)
        self._c.loop_start()
        if not self._subscribed.wait(15):
            raise AssertionError("alert watcher could not subscribe")
        return self

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if body.get("asset_id") not in self._assets:
            return  # another test's fleet
        with self._lock:
            self.items.append((time.monotonic(), body, bool(msg.dup)))

    def snapshot(self) -> list[tuple[float, dict[str, Any], bool]]:
        with self._lock:
            return list(self.items)

    def wait_quiet(self, quiet_s: float, timeout_s: float) -> None:
        """Return once no alert arrived for ``quiet_s`` (or after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            items = self.snapshot()
            last = items[-1][0] if items else 0.0
            if time.monotonic() - last >= quiet_s:
                return
            time.sleep(0.1)

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()
        discard_session(self.port, self.client_id)
