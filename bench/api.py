"""Latency of the traceability API's heavy reads; prints ONE JSON object.

A 7-day, 4-leg shipment at 1-minute data: truck (Shantou -> Guangzhou, 36 h), cold store
(60 h), truck (Guangzhou -> Shenzhen, 24 h), cold store (48 h); each compartment with a product
and an air probe every minute (20,160 temperature readings), the trucks' GPS every minute (one
fix in 250 missing), one acknowledged 30-minute excursion. Real influxd (deploy.launcher), a
migrated SQLite registry, the app under uvicorn on loopback, requests over HTTP with httpx.

Measured in the same run:

* ``trace``: ``GET /v1/shipments/{id}/trace`` (series and track at the default resolution);
* ``report_html`` / ``report_pdf``: ``GET .../report.html`` / ``.pdf`` (``tz=Asia/Shanghai``);
  ``report_pdf.first_ms`` is the first PDF of the process (WeasyPrint and fonts loading);
* ``influxql``: the baseline, the InfluxQL statements one trace sends (recorded from the app's
  client), run again directly against influxd: the database's share of the trace;
* with ``--big N``: one leg of N readings (default 1,000,000, one every 10 s), the trace's time
  and Python's peak heap while streaming it (tracemalloc, a second run), beside the same raw
  InfluxQL.

Targets (issue 10): trace p95 under 300 ms, report HTML under 1 s, PDF under 3 s.
Usage: ``uv run --frozen python bench/api.py [--runs 30] [--big 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import uvicorn

# This file is bench/api.py: the project root must come first, so ``api`` is the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import TraceService, create_app
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules import load_presets
from coldchain.rules.excursion import Excursion
from coldchain.settings import InfluxSettings, Settings
from deploy.launcher import Influxd, free_port
from registry import open_registry, upgrade
from simulators.routes import Route, road_path
from timeseries.client import InfluxClient, Series

T0 = 1_790_035_200_000  # 2026-09-22T00:00:00Z
MIN = 60_000
HOUR = 60 * MIN
# (asset, compartment, hours, route or None)
LEGS = [
    ("truck-a", "c1", 36, ("shantou", "guangzhou")),
    ("store-gz", "z1", 60, None),
    ("truck-b", "rear", 24, ("guangzhou", "shenzhen")),
    ("store-sz", "z1", 48, None),
]

LISTED = 1_000  # shipments in the registry for the listing


def _comp(cid: str) -> Compartment:
    return Compartment(
        id=cid,
        profile="chilled",
        sensors=(SensorSpec(id=f"{cid}-air"), SensorSpec(id=f"{cid}-prod", probe="product")),
    )


FLEET = Fleet(
    [
        Asset(
            id=a,
            kind="vehicle" if route else "store",
            devices=(f"{a}-dev",),
            compartments=(_comp(c),),
        )
        for a, c, _, route in LEGS
    ]
)


class RecordingClient(InfluxClient):
    """The app's InfluxDB client, remembering every InfluxQL request it sends."""

    def __init__(self, settings: InfluxSettings) -> None:
        super().__init__(settings)
        self.recorded: list[str] = []
        self.recording = False

    def query_each(self, q: str) -> list[list[Series]]:
        if self.recording:
            self.recorded.append(q)
        return super().query_each(q)


def _lines(rng: random.Random) -> tuple[list[str], list[tuple[str, str, int, int]]]:
    lines: list[str] = []
    spans = []
    t = T0
    for asset, comp, hours, route in LEGS:
        end = t + hours * HOUR
        spans.append((asset, comp, t, end))
        path = Route(road_path(*route)) if route else None
        n = (end - t) // MIN
        for i in range(n):
            ts = t + i * MIN
            spike = asset == "store-gz" and 600 <= i < 630
            product = 2.5 + 0.4 * math.sin(i / 90.0) + rng.gauss(0, 0.05) + (3.5 if spike else 0)
            air = product - 0.8 + rng.gauss(0, 0.3)
            key = f"temperature,asset={asset},compartment={comp}"
            lines.append(f"{key},probe=product,sensor={comp}-prod temp_c={product:.2f} {ts}")
            lines.append(f"{key},probe=air,sensor={comp}-air temp_c={air:.2f} {ts}")
            if path is not None:
                if rng.random() < 0.004:
                    lines.append(f'position,asset={asset} fix="none",speed_kmh=0 {ts}')
                    continue
                here, _ = path.locate(path.length_km * i / max(1, n - 1))
                lines.append(
                    f'position,asset={asset} fix="3d",lat={here.lat:.6f},lon={here.lon:.6f},'
                    f"speed_kmh=70 {ts}"
                )
        t = end
    return lines, spans


def _write(client: InfluxClient, lines: list[str], batch: int = 20_000) -> None:
    for i in range(0, len(lines), batch):
        client.write("\n".join(lines[i : i + batch]).encode())


def _stats(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1), "n": len(ms)}


def _time(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


class _Server:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _big(influx: InfluxClient, reg: Any, n: int) -> dict[str, Any]:
    """One leg of ``n`` product readings (10 s apart, one probe): trace time, peak RSS growth,
    and the same raw InfluxQL."""
    asset, t0 = "truck-big", T0 + 400 * HOUR
    key = f"temperature,asset={asset},compartment=c1,probe=product,sensor=c1-prod temp_c="
    for i in range(0, n, 50_000):
        chunk = range(i, min(n, i + 50_000))
        influx.write(
            "\n".join(f"{key}{3 + (j % 7) * 0.1:.1f} {t0 + j * 10_000}" for j in chunk).encode()
        )
    end = t0 + n * 10_000
    reg.create_shipment("SHP-BIG", profile="chilled", actor="bench", created_ms=t0 - HOUR)
    reg.record_custody_event("SHP-BIG", "load", asset, "c1", ts_ms=t0, actor="bench")
    reg.record_custody_event("SHP-BIG", "deliver", asset, None, ts_ms=end, actor="bench")
    big = Asset(id=asset, kind="vehicle", devices=("big-dev",), compartments=(_comp("c1"),))
    fleet = Fleet([*FLEET.assets.values(), big])
    client = RecordingClient(influx.settings)
    tracer = TraceService(reg, client, fleet, load_presets())
    client.recording = True
    t = time.perf_counter()
    trace = tracer.trace("SHP-BIG", end + HOUR)
    took = time.perf_counter() - t
    client.recording = False
    t = time.perf_counter()
    for q in client.recorded:
        influx.query_each(q)
    raw = time.perf_counter() - t
    # Python's peak heap during a second trace (tracemalloc: slower, so timed apart above).
    tracemalloc.start()
    tracer.trace("SHP-BIG", end + HOUR)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    client.close()
    return {
        "readings": trace.legs[0].readings,
        "trace_s": round(took, 2),
        "influxql_s": round(raw, 2),
        "influx_requests": len(client.recorded),
        "peak_python_heap_mb": round(peak / 2**20, 1),
        "note": "issue 10 measured 6-7 s and 625 MB for 1,000,000 readings before streaming",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="requests per endpoint (PDF: a third)")
    ap.add_argument(
        "--big",
        type=int,
        nargs="?",
        const=1_000_000,
        default=0,
        help="also trace one leg of this many readings",
    )
    args = ap.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        influxd = Influxd(Path(tmp) / "influxd")
        influxd.start()
        try:
            result = _run(args, rng, influxd.url, Path(tmp))
        finally:
            influxd.cleanup()
    print(json.dumps(result))


def _run(args: argparse.Namespace, rng: random.Random, url: str, tmp: Path) -> dict[str, Any]:
    settings = InfluxSettings(url=url, database="bench")
    writer = InfluxClient(settings)
    writer.create_database()
    lines, spans = _lines(rng)
    t = time.perf_counter()
    _write(writer, lines)
    write_s = time.perf_counter() - t
    reg_url = f"sqlite:///{tmp / 'registry.sqlite3'}"
    upgrade(reg_url)
    reg = open_registry(reg_url)
    reg.create_shipment(
        "SHP-B",
        profile="chilled",
        actor="bench",
        created_ms=T0 - HOUR,
        description="yoghurt 酸奶, 12 pallets",
        origin="汕头 Shantou",
        destination="深圳 Shenzhen",
    )
    for asset, comp, start, _ in spans:
        reg.record_custody_event("SHP-B", "load", asset, comp, ts_ms=start, actor="bench")
    reg.record_custody_event(
        "SHP-B", "deliver", spans[-1][0], None, ts_ms=spans[-1][3], actor="bench"
    )
    spike = Excursion(
        asset_id="store-gz",
        compartment_id="z1",
        rule="range",
        kind="range",
        severity="warning",
        status="closed",
        start_ms=spans[1][2] + 610 * MIN,
        end_ms=spans[1][2] + 640 * MIN,
        detected_ms=spans[1][2] + 630 * MIN,
        peak_c=6.4,
        profile="chilled",
        out_of_range_s=1500.0,
        returned_ms=spans[1][2] + 630 * MIN,
    )
    for i in range(LISTED - 1):  # a registry with more than one page of shipments
        reg.create_shipment(f"SHP-L{i:04d}", profile="chilled", actor="bench", created_ms=T0)
    reg.upsert_excursions([spike])
    reg.acknowledge_excursion(spike.id, by="qa", comment="checked")
    at_ms = spans[-1][3] + HOUR
    client = RecordingClient(settings)
    app = create_app(
        Settings(),
        registry=reg,
        influx=client,
        fleet=FLEET,
        profiles=load_presets(),
        clock_ms=lambda: at_ms,
    )
    runs = args.runs
    out: dict[str, Any] = {}
    with (
        _Server(app) as server,
        httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=120) as http,
    ):
        base = "/v1/shipments/SHP-B"

        def get(path: str, **params: str) -> httpx.Response:
            r = http.get(base + path, params=params)
            r.raise_for_status()
            return r

        body = get("/trace").json()
        client.recording = True
        get("/trace")
        client.recording = False
        statements = list(client.recorded)
        trace_s = _time(lambda: get("/trace"), runs)
        influx_s = _time(lambda: [writer.query_each(q) for q in statements], runs)
        html_s = _time(lambda: get("/report.html", tz="Asia/Shanghai"), runs)
        t = time.perf_counter()
        pdf = get("/report.pdf", tz="Asia/Shanghai").content
        first_pdf = time.perf_counter() - t
        pdf_s = _time(lambda: get("/report.pdf", tz="Asia/Shanghai"), max(3, runs // 3))
        # Listing: one page of 100 over HTTP, beside the registry query the route runs.
        n_list = max(50, runs * 5)
        t = time.perf_counter()
        for _ in range(n_list):
            http.get("/v1/shipments", params={"limit": "100"}).raise_for_status()
        listing_rps = n_list / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(n_list):
            reg.find_shipments(limit=100)
        registry_rps = n_list / (time.perf_counter() - t)
        out = {
            "bench": "api",
            "shipment": {
                "days": round((spans[-1][3] - spans[0][2]) / 86_400_000, 2),
                "legs": len(body["legs"]),
                "temperature_readings": sum(x["readings"] for x in body["legs"]) * 2,
                "resolution_s": body["resolution_s"],
                "buckets_per_leg": [len(x["series"]["product"]["t_ms"]) for x in body["legs"]],
                "track_points": sum(
                    len((x["track"] or {"t_ms": []})["t_ms"]) for x in body["legs"]
                ),
                "trace_json_kb": round(len(json.dumps(body)) / 1024, 1),
                "pdf_kb": round(len(pdf) / 1024, 1),
                "write_s": round(write_s, 1),
            },
            "trace": _stats(trace_s),
            "influxql": _stats(influx_s) | {"requests_per_trace": len(statements)},
            "report_html": _stats(html_s),
            "report_pdf": _stats(pdf_s) | {"first_ms": round(first_pdf * 1000, 1)},
            "listing": {
                "shipments": LISTED,
                "page": 100,
                "requests_per_s": round(listing_rps, 1),
                "baseline_registry_queries_per_s": round(registry_rps, 1),
            },
            "targets_ms": {"trace_p95": 300, "report_html": 1000, "report_pdf": 3000},
        }
    if args.big:
        out["big_leg"] = _big(writer, reg, args.big)
    writer.close()
    client.close()
    reg.close()
    out["machine"] = {"python": sys.version.split()[0], "platform": platform.platform()}
    return out


if __name__ == "__main__":
    main()
