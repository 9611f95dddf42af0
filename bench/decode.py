"""Decode/validate/encode cost per message (``process_delivery``); prints ONE JSON object.

The ingest pipeline thread's per-message Python work, without MQTT, SQLite or InfluxDB: what
``ingest.pipeline.process_delivery`` costs on

- ``good_single``: ~200-byte single-sample messages from the load generator (the common case,
  taken by the strict fast path);
- ``good_batch_100``: 100-sample backlog batches (fast path);
- ``bad_value_batch_5000``: a 5,000-sample backlog with one probe at -127.0 in the middle (the
  salvage path: every other value stored, one dead letter).

Beside each, the same run's ``baseline``: ``json.loads`` of the same payloads (the floor any
Python consumer pays to read them). Figures are microseconds per message (median of repeats).
``good_single`` also splits ``process_delivery`` into its stages (``stages_us``: decode,
validate, encode, each on the previous stage's output; the first computation of a sample's
device time, ``Sample.ts_ms``, falls in the first repeat, so the medians leave it out; the rest
of ``process_delivery`` is the delivery's bookkeeping), so a profile's hot spot can be checked
against the same run's ``json.loads``.

Usage: ``uv run --frozen python bench/decode.py [--repeat 7]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldchain.contract import Limits, PointEncoder
from ingest.consumer import Delivery
from ingest.decode import decode
from ingest.pipeline import process_delivery
from ingest.validate import validate
from simulators.loadgen import SeededLoad, make_fleet


def _per_message_us(
    fn: Callable[[str, bytes], object], messages: list[tuple[str, bytes]], repeat: int
) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for topic, payload in messages:
            fn(topic, payload)
        runs.append((time.perf_counter() - t0) / len(messages) * 1e6)
    return round(statistics.median(runs), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    fleet = make_fleet(20)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 3_600_000
    singles = [(m.topic, m.payload) for m in SeededLoad(fleet, seed=1).messages(100, start_ms)]
    fast = SeededLoad(fleet, seed=2, interval_ms=100)
    batches = [
        (m.topic, m.payload) for m in fast.messages(2, start_ms, batch_every=1, batch_size=100)
    ]
    backlog_msg = next(
        SeededLoad(fleet, seed=3, interval_ms=100).messages(
            1, start_ms, batch_every=1, batch_size=5000
        )
    )
    backlog = json.loads(backlog_msg.payload)
    backlog["samples"][2500]["temps_c"]["c1-air"] = -127.0
    bad = (backlog_msg.topic, json.dumps(backlog, separators=(",", ":")).encode())

    encoder = PointEncoder(fleet)
    limits = Limits()

    def process(topic: str, payload: bytes) -> Any:
        d = Delivery(topic, payload, 1, 1, now_ms, 0)
        return process_delivery(d, fleet, encoder, limits, 1 << 20)

    def baseline(topic: str, payload: bytes) -> object:
        return json.loads(payload)

    cases = {"good_single": singles, "good_batch_100": batches, "bad_value_batch_5000": [bad]}
    out: dict[str, Any] = {"unit": "us_per_message"}
    for name, messages in cases.items():
        out[name] = {
            "messages": len(messages),
            "process_delivery_us": _per_message_us(process, messages, args.repeat),
            "baseline_json_loads_us": _per_message_us(baseline, messages, args.repeat),
        }
    decoded = [decode(t, p, 1 << 20) for t, p in singles]
    validated = [validate(d, fleet, now_ms, limits) for d in decoded]
    pairs = list(zip(singles, decoded, validated, strict=True))

    def stage(fn: Callable[[tuple[tuple[str, bytes], Any, Any]], object]) -> float:
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for item in pairs:
                fn(item)
            runs.append((time.perf_counter() - t0) / len(pairs) * 1e6)
        return round(statistics.median(runs), 2)

    out["good_single"]["stages_us"] = {
        "decode": stage(lambda x: decode(x[0][0], x[0][1], 1 << 20)),
        "validate": stage(lambda x: validate(x[1], fleet, now_ms, limits)),
        "encode": stage(lambda x: encoder.encode(x[2].device_id, x[2].asset, x[2].samples, 0)),
    }
    processed = process(*bad)
    out["bad_value_batch_5000"]["dead_letters"] = len(processed.dead)
    out["bad_value_batch_5000"]["stored_points"] = (
        len(processed.spooled.lines) if processed.spooled else 0
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
