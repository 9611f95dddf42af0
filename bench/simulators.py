"""Simulator benchmark: how fast one process publishes in scale mode, beside same-run baselines.

Prints one JSON object. Starts its own mosquitto (deploy.launcher), loopback only, stops by
itself in well under a minute.

- ``baseline.bare_paho_msgs_per_s``: the same connections publishing one identical pre-built
  payload of scale mode's size in a tight loop, QoS 1, until acknowledged: the MQTT client and
  broker ceiling on this machine, with no simulation at all.
- ``generate_msgs_per_s``: the pure generator alone (physics, GPS, JSON), no network.
- ``scale.msgs_per_s``: scale mode flat out: N devices simulated and published by one process
  over a few multiplexed connections, every message acknowledged.
- ``scale_per_device_connection.msgs_per_s``: the same with one MQTT connection per device.
- ``devices_at_1_per_10s``: what that rate sustains at one message per device every 10 s, and
  ``paced``: a check run of 80 % of that many devices on schedule in real time, with the
  achieved rate and the worst lag behind schedule (small lag = the process kept up).

Usage: ``uv run python bench/simulators.py [--devices 2000] [--connections 4] [--seconds 6]``
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.launcher import Mosquitto
from simulators.engine import Simulation
from simulators.publish import ClientPool, run_scale
from simulators.scale import scale_scenario


def bare_paho(port: int, connections: int, payload: bytes, seconds: float) -> float:
    pool = ClientPool("127.0.0.1", port)
    keys = [f"bench-bare-{i}" for i in range(connections)]
    for k in keys:
        pool.add(k)
    pool.wait_connected()
    topic = "coldchain/v1/devices/bench-bare/telemetry"
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(256):
            pool.publish(keys[n % connections], topic, payload, 1, False)
            n += 1
        pool.pump(0.0)
    pool.flush()
    elapsed = time.monotonic() - t0
    pool.close()
    return n / elapsed


def generate_only(devices: int, seconds: float) -> tuple[float, int]:
    sc = scale_scenario(devices, duration_s=600.0, sample_interval_s=10.0)
    stream = Simulation(sc, start=datetime(2026, 1, 1, tzinfo=UTC)).messages()
    size = len(next(stream).payload)  # builds every device first: setup is not generation
    n = 0
    t0 = time.monotonic()
    for _ in stream:
        n += 1
        if n % 512 == 0 and time.monotonic() - t0 >= seconds:
            break
    return n / (time.monotonic() - t0), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each measured phase")
    ap.add_argument("--per-device", type=int, default=500, help="devices in the 1:1 run")
    args = ap.parse_args()

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    per_device = min(args.per_device, max(10, soft - 100))
    broker = Mosquitto()
    broker.start()
    t_start = time.monotonic()
    try:
        gen_rate, payload_size = generate_only(args.devices, args.seconds / 2)
        bare = bare_paho(broker.port, args.connections, b"x" * payload_size, args.seconds / 2)
        scale = run_scale(
            args.devices,
            port=broker.port,
            connections=args.connections,
            time_limit_s=args.seconds,
        )
        one_to_one = run_scale(
            per_device, port=broker.port, connections=0, time_limit_s=args.seconds / 2
        )
        estimate = int(scale.msgs_per_s * 10.0)
        # Confirm on schedule: 80 % of the estimate in real time; if that lags, try half of it.
        checks: list[dict[str, Any]] = []
        for fraction in (0.8, 0.4):
            if checks and time.monotonic() - t_start > 35.0:
                break  # stay well inside a minute; the JSON says the first check lagged
            devices = max(10, int(estimate * fraction))
            paced = run_scale(
                devices,
                port=broker.port,
                connections=args.connections,
                paced=True,
                time_limit_s=11.0,
                sample_interval_s=10.0,
            )
            kept_up = paced.max_lag_s < 2.0
            checks.append(
                {
                    "devices": devices,
                    "target_msgs_per_s": round(devices / 10.0, 1),
                    "achieved_msgs_per_s": round(paced.msgs_per_s, 1),
                    "max_lag_s": round(paced.max_lag_s, 3),
                    "setup_s": round(paced.setup_s, 2),
                    "kept_up": kept_up,
                }
            )
            if kept_up:
                break
    finally:
        broker.cleanup()
    verified = next((c["devices"] for c in checks if c["kept_up"]), 0)
    result = {
        "machine_note": "loopback, one Python process publishing; mosquitto on the same host",
        "payload_bytes": payload_size,
        "baseline": {
            "bare_paho_msgs_per_s": round(bare, 1),
            "connections": args.connections,
        },
        "generate_msgs_per_s": round(gen_rate, 1),
        "scale": {"devices": args.devices, **scale.to_dict()},
        "scale_per_device_connection": {"devices": per_device, **one_to_one.to_dict()},
        "msgs_per_s": round(scale.msgs_per_s, 1),
        "devices_at_1_per_10s": {"estimate": estimate, "verified_paced": verified},
        "scale_vs_bare_paho": round(scale.msgs_per_s / bare, 3) if bare else None,
        "paced_checks": checks,
        "bench_wall_s": round(time.monotonic() - t_start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
