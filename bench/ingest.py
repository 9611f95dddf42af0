"""Ingest benchmark: end-to-end throughput and latency beside same-run baselines.

Prints one JSON object. Everything runs on this machine against a real mosquitto and influxd
started by the launcher, loopback only, and stops by itself.

- ``baseline.counting_subscriber_msgs_per_s``: a paho subscriber with paho's defaults (MQTT
  3.1.1, QoS 1, auto-ack) that only counts, draining a backlog the broker holds for its
  persistent session: what a plain Python consumer gets. Measured before and after the
  single-process ingest rows (``..._start_end_...``); the figure and every ``ratio_*`` use the
  mean of the two, since this machine's speed drifts by a third within minutes. Beside it the
  same subscriber on MQTT 5 (``..._mqtt5_...``) and on ingest's ``BatchedClient``
  (``..._batched_client_...``), which show what the protocol and the batched socket I/O are
  worth on their own.
- ``baseline.influx_raw_points_per_s``: the same points, pre-encoded, written straight to
  ``/write`` in 5,000-point gzip batches: InfluxDB's own rate here.
- ``ingest.msgs_per_s``: one ingest process draining the same backlog through decode, validate,
  durable spool (fsync per group commit), acks and InfluxDB writes, until the last point is
  confirmed by InfluxDB, with the rules engine on (``evaluated_msgs_per_s``: until the rules
  have evaluated the last sample too); ``ingest_without_rules``: the same with rules off;
  ``ingest_rules_subprocess``: with ``rules.mode = "subprocess"`` (the rules in a child process
  of ingest, ``ingest.rules_child``; its start-up is waited for before the clock starts).
  Each of these rows also gives the CPU per 1,000 messages of the broker, influxd and the rules
  child (``*_cpu_s_per_1k_msgs``, from /proc) and ``machine_busy_fraction``, the share of all
  cores busy through the row: whether the row was short of cores or of one interpreter lock.
- ``scale_out``: 2 ingest processes (``rules.mode = "forward"``, one subscription group, each its
  own client id and spool) + 1 rules worker owning every partition, each an OS process of its
  own, draining the same backlog (``bench/scale_out.py``): ``msgs_per_s`` until the last point
  is confirmed in InfluxDB, ``evaluated_msgs_per_s`` until the worker evaluated the last sample.
  Draining a pre-queued backlog keeps the load generator's CPU out of
  the measurement for both the baseline and the project.
- ``latency``: publish -> confirmed in InfluxDB at a steady rate (default 2,000 msg/s); the
  device time in each payload is its publish time, read back from the confirmed write body.
  The publisher runs in a process of its own, so it neither shares ingest's GIL nor misses
  its rate.
  ``latency.breakdown`` splits it by stage, times the garbage collector's passes and lists the
  worst seconds (``bench/latency_trace.py``); ``cpu_ms_per_msg`` is this process's CPU per
  message through the phase; ``gc_tracked_at_end`` counts what a full collection walks. The
  ingest heap is frozen before the phase as ``coldchain ingest`` does (``cli.serve``), and the
  backlog of the throughput rows is dropped first: it is the benchmark's, not ingest's.
- ``memory`` (in ``latency``): resident set size of this (the ingest) process sampled every
  second through the steady-rate phase; growth is last minus first after the first fifth
  (warm-up). ``--tracemalloc FRAMES`` adds what was allocated after the warm-up and is still
  alive at the end, by call site (slows ingest; its own memory counts in the RSS then).
- ``loadavg_start_end``: the machine's load averages: other jobs move every figure.

Usage: ``uv run python bench/ingest.py [--messages 100000] [--rate 2000] [--steady-s 30]``
(``--latency-only``: the steady phase alone; ``--latency-setting spool.linger_ms=0``: a setting
of its ingest, repeatable; ``--no-settle-heap``: without the heap freeze).
The issue 12 RSS target is over a 10-minute steady run: ``--steady-s 600`` (about 13 minutes
in all with the default backlog).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency_trace import LatencyTrace, heap_growth, tracked_census
from bench.scale_out import bench_scale_out
from coldchain.contract import PointEncoder, parse_message, shared_subscription
from coldchain.fleet import Fleet
from coldchain.settings import (
    InfluxSettings,
    MqttSettings,
    Settings,
    SpoolSettings,
)
from deploy.launcher import Services
from ingest.heap import settle_heap
from ingest.mqtt_client import BatchedClient
from ingest.rules_child import RulesChild
from ingest.service import IngestService
from registry import upgrade
from simulators.loadgen import LoadMessage, LoadPublisher, SeededLoad, make_fleet
from timeseries.client import InfluxClient


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _prequeue(services: Services, messages: list[LoadMessage]) -> float:
    pub = LoadPublisher("127.0.0.1", services.mosquitto.port, "bench-pub")
    t0 = time.perf_counter()
    for m in messages:
        pub.publish(m.topic, m.payload)
    assert pub.flush(300), "broker did not acknowledge the backlog"
    rate = len(messages) / (time.perf_counter() - t0)
    pub.close()
    return rate


def _discard_session(port: int, client_id: str) -> None:
    """Drop a persistent session so the broker stops queueing copies for it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect("127.0.0.1", port)  # MQTT 3.1.1, clean_session=True: the session is dropped
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


class _Counter:
    """The baseline consumer: paho with its defaults (MQTT 3.1.1 unless ``mqtt5``), persistent
    session, QoS 1 auto-ack, counts only."""

    def __init__(
        self, port: int, group: str, expected: int, *, mqtt5: bool, cls: type[mqtt.Client]
    ) -> None:
        self.n = 0
        self.expected = expected
        self.mqtt5 = mqtt5
        self.done = threading.Event()
        self.client_id = f"count-{group}"
        if mqtt5:
            self.client = cls(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
            )
        else:
            self.client = cls(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False
            )
        self.client.on_connect = lambda c, *_: c.subscribe(shared_subscription(group), qos=1)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.port = port

    def _on_message(self, *_: object) -> None:
        self.n += 1
        if self.n >= self.expected:
            self.done.set()

    def connect(self, *, wait_subscribed: bool = True) -> None:
        if self.mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 3600
            self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        else:
            self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        # On a reconnect the broker sends the session's backlog before the SUBACK of the
        # repeated subscription: there, waiting for it would time the backlog, not the setup.
        assert not wait_subscribed or self.subscribed.wait(10)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bench_counting_subscriber(
    services: Services,
    messages: list[LoadMessage],
    *,
    mqtt5: bool = False,
    cls: type[mqtt.Client] = mqtt.Client,
) -> float:
    group = f"bench-count-{'5' if mqtt5 else '311'}-{cls.__name__}"
    counter = _Counter(services.mosquitto.port, group, len(messages), mqtt5=mqtt5, cls=cls)
    counter.connect()
    counter.stop()
    counter.subscribed.clear()
    _prequeue(services, messages)
    t0 = time.perf_counter()
    counter.connect(wait_subscribed=False)
    assert counter.done.wait(300), f"counted only {counter.n} of {len(messages)}"
    elapsed = time.perf_counter() - t0
    counter.stop()
    _discard_session(services.mosquitto.port, counter.client_id)
    return len(messages) / elapsed


def bench_influx_raw(
    services: Services, messages: list[LoadMessage], fleet_enc: PointEncoder, fleet: object
) -> tuple[float, int]:
    lines: list[str] = []
    for m in messages:
        msg = parse_message(m.payload)
        asset = fleet.asset_of(msg.device_id)  # type: ignore[attr-defined]
        lines.extend(fleet_enc.encode(msg.device_id, asset, msg.samples_list(), 0))
    writer = InfluxClient(InfluxSettings(url=services.influxd.url, database="bench_raw"))
    writer.create_database()
    batch = 5000
    bodies = ["\n".join(lines[i : i + batch]).encode() for i in range(0, len(lines), batch)]
    t0 = time.perf_counter()
    for body in bodies:
        writer.write(body)
    elapsed = time.perf_counter() - t0
    writer.close()
    return len(lines) / elapsed, len(lines)


def _settings(services: Services, root: Path, name: str) -> Settings:
    settings = Settings(
        fleet_path=root / "fleet.yaml",
        registry_url=f"sqlite:///{root / name}-registry.sqlite3",
        mqtt=MqttSettings(port=services.mosquitto.port, client_id=name, share_group=name),
        influx=InfluxSettings(url=services.influxd.url, database=name),
        spool=SpoolSettings(path=root / f"{name}.sqlite3"),
    )
    upgrade(settings.registry_url)
    return settings


def bench_ingest(
    services: Services,
    root: Path,
    fleet: object,
    messages: list[LoadMessage],
    rules: bool,
    mode: str = "inprocess",
) -> dict[str, float]:
    name = f"bench_rules_{mode}" if rules else "bench_spine"
    settings = _settings(services, root, name)
    settings.rules.mode = mode  # type: ignore[assignment]
    service = IngestService(settings, fleet, rules=rules)  # type: ignore[arg-type]
    service.start()  # creates the persistent session and its subscription
    service.stop()
    _prequeue(services, messages)
    service = IngestService(settings, fleet, rules=rules)  # type: ignore[arg-type]
    child = service.evaluate if isinstance(service.evaluate, RulesChild) else None
    if child is not None:  # its start-up (imports, resume) is not throughput
        assert child.wait_ready(120), "rules child did not start"
    settle_heap()  # as `coldchain ingest` does (ingest.heap)
    pids = {"broker": services.mosquitto.pid, "influxd": services.influxd.pid}
    if child is not None:
        pids["rules_child"] = child.pid
    others0 = {k: _cpu_s(p) for k, p in pids.items()}
    busy0 = _machine_cpu()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    service.start()
    deadline = time.monotonic() + 600
    m = service.metrics
    while m.written_messages + sum(m.dead_letters.values()) < len(messages):
        assert time.monotonic() < deadline, f"ingest stalled: {service.stats()}"
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    # With rules: also until the rules engine has evaluated everything (it runs behind acks).
    while service.evaluate is not None and not service.evaluate.idle():
        assert time.monotonic() < deadline, f"rules stalled: {service.stats()}"
        time.sleep(0.01)
    evaluated = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    others = {k: _cpu_s(p) - others0[k] for k, p in pids.items()}
    busy1 = _machine_cpu()
    stats = service.stats()
    service.stop()
    _discard_session(services.mosquitto.port, settings.mqtt.client_id)
    assert stats["dead_letters_total"] == 0, stats
    out = {
        "msgs_per_s": len(messages) / elapsed,
        "points_per_s": float(stats["written_points"]) / elapsed,  # type: ignore[arg-type]
        "cpu_s_per_1k_msgs": 1000.0 * cpu / len(messages),
        "elapsed_s": elapsed,
        "evaluated_msgs_per_s": len(messages) / evaluated,
    }
    for k, v in others.items():
        out[f"{k}_cpu_s_per_1k_msgs"] = 1000.0 * v / len(messages)
    # How much of the machine's cores were busy through the row (all processes).
    out["machine_busy_fraction"] = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    return out


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (Linux /proc; 0 if unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _paced_publisher(
    port: int, devices: int, rate: float, n: int, out: multiprocessing.SimpleQueue[float]
) -> None:
    """The steady-rate load, in its own process: devices are not in ingest's process, and a
    publisher sharing ingest's GIL would slow both (and miss its rate)."""
    fleet = make_fleet(devices)
    pub = LoadPublisher("127.0.0.1", port, "bench-live")
    load = SeededLoad(fleet, seed=99)
    t0 = time.monotonic()
    # Round-robin over the fleet, device time = publish time (each device ~rate/devices per s).
    for sent in range(n):
        delay = t0 + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        msg = load.live(sent, sent // len(fleet.assets) + 1, int(time.time() * 1000))
        pub.publish(msg.topic, msg.payload)
    out.put(n / (time.monotonic() - t0))
    pub.flush(60)
    pub.close()


def bench_latency(
    services: Services,
    root: Path,
    fleet: object,
    rate: float,
    duration_s: float,
    overrides: dict[str, dict[str, object]] | None = None,
    tracemalloc_frames: int = 0,
    *,
    settle: bool = True,
) -> dict[str, object]:
    settings = _settings(services, root, "bench_latency")
    for section, values in (overrides or {}).items():
        changed = getattr(settings, section).model_copy(update=values)
        settings = settings.model_copy(update={section: changed})
    service = IngestService(settings, fleet)  # type: ignore[arg-type]
    trace = LatencyTrace()
    trace.attach(service)  # swaps the writer and wraps the spools: before start()
    if settle:
        settle_heap()  # as `coldchain ingest` does (ingest.heap)
    service.start()
    trace.watch_gc()
    n = int(rate * duration_s)
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.SimpleQueue[float] = ctx.SimpleQueue()
    devices = len(fleet.assets)  # type: ignore[attr-defined]
    proc = ctx.Process(
        target=_paced_publisher, args=(services.mosquitto.port, devices, rate, n, out)
    )
    rss: list[tuple[float, float]] = []
    t0, cpu0 = time.monotonic(), time.process_time()
    proc.start()
    heap: list[dict[str, object]] = []
    while proc.is_alive() and out.empty():
        rss.append((round(time.monotonic() - t0, 1), round(_rss_mb(), 1)))
        warm = time.monotonic() - t0 >= duration_s / 5  # after it, trace what grows
        if tracemalloc_frames and warm and not tracemalloc.is_tracing():
            tracemalloc.start(tracemalloc_frames)
        time.sleep(1.0)
    census = tracked_census()  # before the service stops: what its collections walk now
    if tracemalloc.is_tracing():
        heap = heap_growth(tracemalloc.take_snapshot())
        tracemalloc.stop()
    achieved = out.get()
    proc.join(120)
    service.wait_drained(60)
    cpu_s = time.process_time() - cpu0
    service.stop()
    trace.detach()
    steady = [r for _, r in rss[len(rss) // 5 :]] or [float("nan")]
    return {
        "target_msgs_per_s": rate,
        "achieved_msgs_per_s": round(achieved, 1),
        "settings_overrides": overrides or {},
        "settle_heap": settle,
        "switch_interval_ms": sys.getswitchinterval() * 1000.0,
        "samples": sum(trace.total.buckets),
        # This process's CPU (ingest's threads, and the tracer's few us a message) per message.
        "cpu_ms_per_msg": round(1000.0 * cpu_s / n, 4),
        **trace.report()["total"],
        "breakdown": {k: v for k, v in trace.report().items() if k not in ("total",)},
        "rss_mb_first_last": [steady[0], steady[-1]],
        "rss_mb_growth_after_warmup": round(steady[-1] - steady[0], 1),
        "gc_tracked_at_end": census,
        "rss_samples": rss,
        **({"heap_growth_after_warmup": heap} if tracemalloc_frames else {}),
    }


def _overrides(items: list[str]) -> dict[str, dict[str, object]]:
    """``section.key=value`` (e.g. ``spool.linger_ms=0``) -> {section: {key: value}}; values
    are validated by the settings model."""
    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = (
            json.loads(value) if value[:1] in "0123456789-[{tfn" else value
        )
    return out


def _loadavg() -> str:
    """The 1/5/15-minute load averages: other jobs on the machine move every figure."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _throughput(
    services: Services, root: Path, fleet: Fleet, messages: list[LoadMessage], devices: int
) -> dict[str, object]:
    """The backlog-drain rows beside their same-run baselines."""
    publish_rate = _prequeue(services, messages[: min(len(messages), 20_000)])
    counting = bench_counting_subscriber(services, messages)
    counting5 = bench_counting_subscriber(services, messages, mqtt5=True)
    counting_batched = bench_counting_subscriber(services, messages, cls=BatchedClient)
    raw_points, n_points = bench_influx_raw(services, messages, PointEncoder(fleet), fleet)
    spine = bench_ingest(services, root, fleet, messages, rules=False)
    ingest = bench_ingest(services, root, fleet, messages, rules=True)
    child = bench_ingest(services, root, fleet, messages, rules=True, mode="subprocess")
    # The baseline again after the ingest rows: it moves by 30 % within minutes here, so the
    # ratios divide by the mean of the two (both are printed).
    counting_end = bench_counting_subscriber(services, messages)
    first_counting, counting = counting, (counting + counting_end) / 2
    scale = bench_scale_out(
        services,
        root,
        _settings(services, root, "bench_scale"),
        len(messages),
        lambda: _prequeue(services, messages),
        lambda cid: _discard_session(services.mosquitto.port, cid),
    )
    points_per_msg = n_points / len(messages)
    return {
        "benchmark": "ingest",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "messages": len(messages),
        "devices": devices,
        "payload_bytes_mean": round(statistics.mean(len(m.payload) for m in messages), 1),
        "points_per_message": round(points_per_msg, 2),
        "baseline": {
            "counting_subscriber_msgs_per_s": round(counting, 1),
            "counting_subscriber_start_end_msgs_per_s": [
                round(first_counting, 1),
                round(counting_end, 1),
            ],
            "counting_subscriber_mqtt5_msgs_per_s": round(counting5, 1),
            "counting_subscriber_batched_client_msgs_per_s": round(counting_batched, 1),
            "influx_raw_points_per_s": round(raw_points, 1),
            "influx_raw_as_msgs_per_s": round(raw_points / points_per_msg, 1),
            "loadgen_publish_msgs_per_s": round(publish_rate, 1),
        },
        "ingest": {k: round(v, 3) for k, v in ingest.items()},
        "ingest_without_rules": {k: round(v, 3) for k, v in spine.items()},
        "ingest_rules_subprocess": {k: round(v, 3) for k, v in child.items()},
        "mqtt_protocol": Settings().mqtt.protocol,
        "ratio_ingest_to_counting_subscriber": round(ingest["msgs_per_s"] / counting, 3),
        "ratio_ingest_without_rules_to_counting_subscriber": round(
            spine["msgs_per_s"] / counting, 3
        ),
        "ratio_ingest_rules_subprocess_to_counting_subscriber": round(
            child["msgs_per_s"] / counting, 3
        ),
        "ratio_ingest_rules_subprocess_evaluated_to_counting_subscriber": round(
            child["evaluated_msgs_per_s"] / counting, 3
        ),
        "scale_out_2_ingest_1_rules_worker": {k: round(v, 3) for k, v in scale.items()},
        "ratio_scale_out_to_counting_subscriber": round(scale["msgs_per_s"] / counting, 3),
        "ratio_scale_out_evaluated_to_counting_subscriber": round(
            scale["evaluated_msgs_per_s"] / counting, 3
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument(
        "--steady-s",
        type=float,
        default=30.0,
        help="steady-rate phase (latency, RSS); 600 for the 10-minute RSS run",
    )
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="skip the throughput rows (baselines, backlog drains): only the steady phase",
    )
    ap.add_argument(
        "--latency-setting",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a setting of the steady phase's ingest, e.g. spool.linger_ms=0 (repeatable)",
    )
    ap.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace allocations after the warm-up (FRAMES deep) and print what grew; slows "
        "ingest and adds its own memory to the RSS figures",
    )
    ap.add_argument(
        "--no-settle-heap",
        action="store_true",
        help="steady phase without ingest.heap.settle_heap (gc.freeze): what it is worth",
    )
    ap.add_argument(
        "--switch-interval-ms",
        type=float,
        default=0.0,
        help="sys.setswitchinterval for the whole run (0: Python's default, 5 ms)",
    )
    args = ap.parse_args()
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000.0)

    fleet = make_fleet(args.devices)
    load = SeededLoad(fleet, seed=1, interval_ms=1000)
    per_device = max(1, args.messages // args.devices)
    start_ms = int(time.time() * 1000) - per_device * 1000 - 60_000
    messages = [] if args.latency_only else list(load.messages(per_device, start_ms))
    overrides = _overrides(args.latency_setting)
    # The backlog lives in this process through the throughput rows but belongs to no measured
    # consumer: keep it out of every collection, baselines' and ingest's alike.
    gc.collect()
    gc.freeze()

    with (
        tempfile.TemporaryDirectory(prefix="coldchain-bench-") as tmp,
        Services(Path(tmp) / "services") as services,
    ):
        root = Path(tmp)
        (root / "fleet.yaml").write_text(fleet.to_yaml())
        load_start = _loadavg()
        result: dict[str, object] = {"benchmark": "ingest"}
        if not args.latency_only:
            result = _throughput(services, root, fleet, messages, args.devices)
        # The backlog is the benchmark's, not ingest's: gone before the steady phase, so that
        # its objects neither lengthen the collector's passes nor count in the RSS.
        messages.clear()
        gc.collect()
        result["latency"] = bench_latency(
            services,
            root,
            fleet,
            args.rate,
            args.steady_s,
            overrides,
            args.tracemalloc,
            settle=not args.no_settle_heap,
        )
        result["loadavg_start_end"] = [load_start, _loadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
