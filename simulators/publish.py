"""The I/O edge: pace the pure message stream on an accelerated clock and publish it over MQTT.

Connections. By default every device has its own MQTT connection (client id and username = the
device id, a retained ``offline`` status as last will), as in production where the broker's ACL
(deploy/mosquitto/acl, ``pattern write coldchain/v1/devices/%u/...``) lets a device write only
below its own topic. Thousands of paho clients do not need thousands of threads: one
``ClientPool`` drives all their sockets from the calling thread (paho's external-loop API).
Multiplexing (``connections=k``) publishes every device's messages over k shared connections
instead, as a gateway would; its username must be allowed to write below every device, e.g. an
ACL entry ``user coldchain-simulator`` + ``topic write coldchain/v1/devices/#``. Per-device last
wills are not available when multiplexing.

Clock. ``SimClock`` maps wall time to simulated time at ``speedup`` but never past the wall clock,
so device timestamps are never in ingest's future; a live run therefore defaults to a window that
ends now (``start = now - duration``). With a ``ReplayProgress`` the publisher also tells the
replay's watermark what it sent and waits for a stalled ingest (simulators/replay_clock.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import selectors
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from coldchain.contract.topics import device_topic
from coldchain.exceptions import ColdchainError
from simulators.device import SimMessage
from simulators.engine import Simulation
from simulators.replay_clock import ReplayClock, ReplayProgress
from simulators.scale import scale_scenario
from simulators.scenario import Scenario

__all__ = [
    "GATEWAY_USERNAME",
    "ClientPool",
    "PublishError",
    "PublishStats",
    "ReplayClock",
    "ReplayProgress",
    "SimClock",
    "live_start",
    "publish_stream",
    "replay_window",
    "run_live",
    "run_scale",
]

log = logging.getLogger(__name__)

GATEWAY_USERNAME = "coldchain-simulator"


class PublishError(ColdchainError):
    """The broker refused a connection or did not acknowledge in time."""


def live_start(
    duration_s: float, now_s: float | None = None, *, utc_offset_h: float | None = None
) -> datetime:
    """Start of a live run's window (whole seconds, UTC).

    Without ``utc_offset_h`` the window ends at the wall clock. With it, the window starts at
    the latest local midnight (UTC + ``utc_offset_h``) that lets it end by now: a scenario's
    faults then meet the same time of day - the same ambient temperature - whenever it runs, so
    a replay is reproducible (a 2 h power cut at 15:00 warms a store more than one at 03:00).
    """
    now = time.time() if now_s is None else now_s
    latest = math.floor(now - duration_s)
    if utc_offset_h is None:
        return datetime.fromtimestamp(latest, tz=UTC)
    offset_s = round(utc_offset_h * 3600)
    day_s = 86_400
    local_midnight = (latest + offset_s) // day_s * day_s - offset_s
    return datetime.fromtimestamp(local_midnight, tz=UTC)


def replay_window(scenario: Scenario, now_s: float | None = None) -> tuple[datetime, datetime]:
    """(start, end) of a live replay of ``scenario``: the latest window starting at a local
    midnight (the scenario's ``utc_offset_h``) that ends by now; see ``live_start``."""
    start = live_start(scenario.duration_s, now_s, utc_offset_h=scenario.utc_offset_h)
    return start, start + timedelta(seconds=scenario.duration_s)


class SimClock:
    """Simulated time = start + elapsed wall time x speedup, capped at the wall clock.

    ``speedup <= 0`` means no pacing beyond the cap (as fast as the wall clock allows).
    """

    def __init__(
        self,
        sim_start: datetime,
        speedup: float,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.sim_start = sim_start
        self.speedup = speedup
        self._wall = wall
        self._wall0 = wall()

    def wall_time_for(self, sim_time: datetime) -> float:
        """The wall-clock epoch second at which ``sim_time`` may be published."""
        not_before = sim_time.timestamp()  # never ahead of the wall clock
        if self.speedup <= 0:
            return not_before
        paced = self._wall0 + (sim_time - self.sim_start).total_seconds() / self.speedup
        return max(paced, not_before)

    def delay_s(self, sim_time: datetime) -> float:
        return self.wall_time_for(sim_time) - self._wall()


@dataclass
class PublishStats:
    messages: int = 0
    payload_bytes: int = 0
    acked: int = 0
    devices: int = 0
    connections: int = 0
    wall_s: float = 0.0
    sim_s: float = 0.0
    # How far behind schedule publishing fell at worst (paced runs): > a few seconds means the
    # publisher, not the broker or the schedule, was the limit.
    max_lag_s: float = 0.0
    # Building the simulation before publishing began (scale mode), not in wall_s.
    setup_s: float = 0.0
    # Wall seconds publishing waited for ingest to catch up (a ReplayProgress's ``ahead_s``).
    held_s: float = 0.0

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["msgs_per_s"] = round(self.msgs_per_s, 1)
        return out


class ClientPool:
    """Many paho clients driven from one thread through a selector (no loop threads)."""

    def __init__(self, host: str, port: int, max_inflight: int = 2000) -> None:
        self.host = host
        self.port = port
        self.max_inflight = max_inflight
        self._sel = selectors.DefaultSelector()
        self._clients: dict[str, mqtt.Client] = {}
        self._connected: set[str] = set()
        self._refused: dict[str, str] = {}
        self._dirty: set[mqtt.Client] = set()
        self._misc_at = 0.0
        self.sent = 0
        self.acked = 0

    def _on_connect(self, client: mqtt.Client, key: str, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._refused[key] = str(rc)
        else:
            self._connected.add(key)

    def _on_publish(self, client: mqtt.Client, key: str, mid: int, rc: Any, props: Any) -> None:
        self.acked += 1

    def add(
        self,
        key: str,
        *,
        username: str | None = None,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=key,
            userdata=key,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(0)
        if username:
            client.username_pw_set(username)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        try:
            client.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise PublishError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        sock = client.socket()
        if sock is None:
            raise PublishError(f"no socket after connecting to {self.host}:{self.port}")
        self._sel.register(sock, selectors.EVENT_READ, client)
        self._clients[key] = client
        self._dirty.add(client)

    def wait_connected(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self._connected) < len(self._clients):
            if self._refused:
                key, why = next(iter(self._refused.items()))
                raise PublishError(f"broker refused client {key!r}: {why}")
            if time.monotonic() > deadline:
                raise PublishError(
                    f"{len(self._clients) - len(self._connected)} clients got no CONNACK "
                    f"within {timeout_s} s"
                )
            self.pump(0.05)

    def publish(self, key: str, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        client = self._clients[key]
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise PublishError(f"publish on {topic} failed: {mqtt.error_string(info.rc)}")
        if qos == 0:
            self.acked += 1
        self.sent += 1
        self._dirty.add(client)

    def pump(self, timeout_s: float = 0.0) -> None:
        """Read acks, write what the sockets would not take yet, keep connections alive."""
        for key, _ in self._sel.select(timeout_s):
            key.data.loop_read()
        dirty, self._dirty = self._dirty, set()
        for client in dirty:
            if client.want_write():
                client.loop_write()
                self._dirty.add(client)
        now = time.monotonic()
        if now - self._misc_at > 1.0:
            self._misc_at = now
            for client in self._clients.values():
                client.loop_misc()

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until the broker acknowledged every QoS 1 publish."""
        deadline = time.monotonic() + timeout_s
        while self.acked < self.sent and time.monotonic() < deadline:
            self.pump(0.02)
        return self.acked >= self.sent

    def close(self) -> None:
        for client in self._clients.values():
            client.disconnect()
            client.loop_write()
        for client in self._clients.values():
            sock = client.socket()
            if sock is not None:
                self._sel.unregister(sock)
        self._sel.close()
        self._clients.clear()

    def __len__(self) -> int:
        return len(self._clients)


def _offline_payload(device_id: str) -> bytes:
    return json.dumps({"v": 1, "device_id": device_id, "state": "offline"}).encode()


def _open_pool(
    host: str, port: int, device_ids: list[str], connections: int, username: str | None
) -> tuple[ClientPool, Callable[[str], str]]:
    pool = ClientPool(host, port)
    if connections <= 0:
        for d in device_ids:
            pool.add(
                d, username=username or d, will=(device_topic(d, "status"), _offline_payload(d))
            )

        def route(device_id: str) -> str:
            return device_id
    else:
        keys = [f"{GATEWAY_USERNAME}-{i}" for i in range(min(connections, len(device_ids)))]
        for k in keys:
            pool.add(k, username=username or GATEWAY_USERNAME)
        index = {d: keys[i % len(keys)] for i, d in enumerate(device_ids)}

        def route(device_id: str) -> str:
            return index[device_id]

    pool.wait_connected()
    return pool, route


def publish_stream(
    messages: Iterable[SimMessage],
    pool: ClientPool,
    route: Callable[[str], str],
    clock: SimClock | None,
    *,
    stop: threading.Event | None = None,
    time_limit_s: float | None = None,
    report_every_s: float = 5.0,
    on_publish: Callable[[SimMessage], None] | None = None,
    progress: ReplayProgress | None = None,
) -> PublishStats:
    """Publish messages as the clock allows; returns what was sent. Flushes before returning.

    ``progress``: the replay's watermark (simulators.replay_clock): told what is out, and a
    message waits until it is within ``progress.ahead_s`` of what ingest processed."""
    stats = PublishStats(connections=len(pool))
    devices: set[str] = set()
    t0 = time.monotonic()
    next_report = t0 + report_every_s
    last_report_n = 0
    first: datetime | None = None
    last: datetime | None = None
    for msg in messages:
        if progress is not None:
            progress_ms = msg.time.timestamp() * 1000.0
            progress.advance(progress_ms)  # all before it is out
            stats.held_s += progress.hold(progress_ms, pool.pump, stop)
        if clock is not None:
            delay = clock.delay_s(msg.time)
            while delay > 0:
                pool.pump(min(delay, 0.05))
                if stop is not None and stop.is_set():
                    break
                delay = clock.delay_s(msg.time)
            if clock.speedup > 0:
                stats.max_lag_s = max(stats.max_lag_s, -delay)
        if (stop is not None and stop.is_set()) or (
            time_limit_s is not None and time.monotonic() - t0 >= time_limit_s
        ):
            break
        pool.publish(route(msg.device_id), msg.topic, msg.payload, msg.qos, msg.retain)
        if progress is not None:
            progress.published(msg.time.timestamp() * 1000.0, msg.kind)
        if on_publish is not None:
            on_publish(msg)
        devices.add(msg.device_id)
        first = first or msg.time
        last = msg.time
        stats.messages += 1
        stats.payload_bytes += len(msg.payload)
        if stats.messages % 256 == 0:
            pool.pump(0.0)
            now = time.monotonic()
            if now >= next_report:
                rate = (stats.messages - last_report_n) / (now - next_report + report_every_s)
                log.info(
                    "published %d messages, %.0f msg/s, sim time %s", stats.messages, rate, last
                )
                last_report_n = stats.messages
                next_report = now + report_every_s
    stats.wall_s = time.monotonic() - t0
    if progress is not None:
        progress.close()
    if not pool.flush():
        log.warning("%d messages still unacknowledged", pool.sent - pool.acked)
    stats.acked = pool.acked
    stats.devices = len(devices)
    if first is not None and last is not None:
        stats.sim_s = (last - first).total_seconds()
    return stats


def _primed(messages: Iterator[SimMessage]) -> Iterator[SimMessage]:
    """Pull the first message now (which builds every asset), then hand back the whole stream."""
    first = next(messages, None)
    return messages if first is None else itertools.chain([first], messages)


def run_live(
    scenario: Scenario,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    seed: int | None = None,
    speedup: float = 1440.0,
    start: datetime | None = None,
    truth_path: str | Path | None = None,
    connections: int = 0,
    username: str | None = None,
    stop: threading.Event | None = None,
    on_publish: Callable[[SimMessage], None] | None = None,
    from_s: float = 0.0,
    wall: Callable[[], float] | None = None,
    progress: ReplayProgress | None = None,
) -> PublishStats:
    """Replay a scenario to a broker: by default the window ending now, ``speedup`` x real time.
    ``from_s``: publish only what the simulation sends from that many seconds after its start
    on (the simulation still runs from the start; the replay's clock starts there). ``wall``:
    the pacing clock (epoch seconds; a test passes one it can pause). ``progress``: the replay's
    watermark, shared with ingest's ``ReplayClock`` (simulators.replay_clock).

    Writes the ground truth to ``truth_path`` once the stream is complete (a stopped run writes
    none: its truth would claim messages that were never sent).
    """
    start = start or replay_window(scenario)[0]
    sim = Simulation(scenario, start=start, seed=seed)
    fleet = scenario.fleet()
    pool, route = _open_pool(host, port, fleet.device_ids, connections, username)
    try:
        messages = sim.messages()
        if from_s:  # skipped before the clock starts, so the replay starts on time
            first = next((m for m in messages if m.t_s >= from_s), None)
            stream: Iterator[SimMessage] = (
                messages if first is None else itertools.chain([first], messages)
            )
        else:
            stream = _primed(messages)
        stats = publish_stream(
            stream,
            pool,
            route,
            SimClock(start + timedelta(seconds=from_s), speedup, wall=wall or time.time),
            stop=stop,
            on_publish=on_publish,
            progress=progress,
        )
    finally:
        pool.close()
    if truth_path is not None and not (stop is not None and stop.is_set()):
        sim.truth().write(truth_path)
    return stats


def run_scale(
    n_devices: int,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    sample_interval_s: float = 10.0,
    connections: int = 4,
    paced: bool = False,
    speedup: float = 1.0,
    time_limit_s: float = 30.0,
    seed: int = 1,
    username: str | None = None,
) -> PublishStats:
    """Scale mode: ``n_devices`` simulated devices from this one process.

    Unpaced, it publishes as fast as it can generate for ``time_limit_s`` (from a past window,
    so every timestamp is valid): the publish rate is this process's ceiling. Paced, each device
    publishes every ``sample_interval_s`` of simulated time at ``speedup`` (1.0 = real time) and
    ``max_lag_s`` tells whether the process kept up.
    """
    if paced:
        s = max(speedup, 1.0)
        duration = max(time_limit_s * s, sample_interval_s)
    else:
        # Enough simulated time that the generator cannot run dry within the time limit at a
        # generous 10,000 msg/s, and no more: trip planning costs grow with the window.
        per_device = time_limit_s * 10_000.0 / n_devices
        duration = max(600.0, sample_interval_s * math.ceil(per_device + 1))
    scenario = scale_scenario(
        n_devices, duration_s=duration, sample_interval_s=sample_interval_s, seed=seed
    )
    pool, route = _open_pool(host, port, scenario.fleet().device_ids, connections, username)
    try:
        setup_t0 = time.monotonic()
        now = time.time()
        if paced:
            # Simulated time must never pass the wall clock: over T wall seconds at speedup s
            # the window advances s*T, so it may start at most (s - 1)*T before now.
            start = datetime.fromtimestamp(math.ceil(now - (s - 1.0) * time_limit_s), tz=UTC)
        else:
            # The window ends now: every timestamp is in ingest's accepted past.
            start = live_start(duration, now)
        # Build every device's simulation before the clock starts: setup is not publishing.
        stream = _primed(Simulation(scenario, start=start).messages())
        setup_s = time.monotonic() - setup_t0
        clock = SimClock(start, speedup) if paced else None
        stats = publish_stream(stream, pool, route, clock, time_limit_s=time_limit_s)
        stats.setup_s = setup_s
    finally:
        pool.close()
    return stats
