"""What auditing regulator reads costs a trace; prints ONE JSON object.

Real influxd (deploy/launcher) and a real SQLite registry; two uvicorn servers on loopback
serve the *same* registry and InfluxDB, one with read auditing (every regulator trace is an
entry of the read chain, committed before the answer) and one without (``create_app(...,
audit_reads=False)``): the same-run baseline. Requests alternate between the two, so drift of a
shared machine hits both alike.

* ``sequential``: one client, a regulator key, p50/p95 trace latency with and without auditing,
  and the median of the back-to-back differences (robust to a shared machine's drifting load);
* ``with_ingest_writes``: the same while another thread commits an excursion change on the
  writes chain every 20 ms (50 transactions/s, above the registry's expected write rate): reads
  take their own head, so they do not queue behind the writers' one (on SQLite both still
  share the database's write lock, held for a small insert);
* ``concurrent``: 8 clients at once; requests/s with and without auditing, and how many read
  entries each read-chain transaction carried (group commit);
* ``record_read_alone_ms``: one read-chain append, measured directly.

The shipment: 5 custody legs over one day (a truck and a cold-store compartment at 1-minute
product and air readings, three docks). Bounded: about a minute. Usage:
``uv run --frozen python bench/api_audit.py [--quick]``.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from api import create_app
from coldchain.fleet import Asset, Compartment, Fleet, SensorSpec
from coldchain.rules import load_presets
from coldchain.rules.excursion import Excursion
from coldchain.settings import ApiSettings, InfluxSettings, Settings
from deploy.launcher import Influxd, free_port
from registry import CustodyAction, Registry, open_registry, upgrade
from timeseries.client import InfluxClient

MIN = 60_000
T0 = 1_790_000_000_000  # device time of the first load
THREADS = 8


def _comp(cid: str) -> Compartment:
    return Compartment(
        id=cid,
        profile="chilled",
        sensors=(
            SensorSpec(id=f"{cid}-air", probe="air"),
            SensorSpec(id=f"{cid}-p", probe="product"),
        ),
    )


FLEET = Fleet(
    [
        Asset(id="truck-1", kind="vehicle", devices=("tcu-1",), compartments=(_comp("c1"),)),
        Asset(id="store-1", kind="store", devices=("gw-1",), compartments=(_comp("z1"),)),
    ]
)
# (action, asset, compartment, minute): truck 0..600, dock 600..640, store 640..1440, dock.
SCANS: list[tuple[CustodyAction, str, str | None, int]] = [
    ("load", "truck-1", "c1", 0),
    ("unload", "truck-1", "c1", 600),
    ("handover", "store-1", None, 601),
    ("load", "store-1", "z1", 640),
    ("unload", "store-1", "z1", 1440),
]


def _lines() -> str:
    out = []
    for asset, comp, lo, hi in (("truck-1", "c1", -10, 600), ("store-1", "z1", 630, 1440)):
        for minute in range(lo, hi):
            t = T0 + minute * MIN
            prod = 4.0 + (minute % 37) / 37.0
            out.append(
                f"temperature,asset={asset},compartment={comp},probe=product,sensor={comp}-p "
                f"temp_c={prod:.3f} {t}"
            )
            out.append(
                f"temperature,asset={asset},compartment={comp},probe=air,sensor={comp}-air "
                f"temp_c={prod - 1.5:.3f} {t}"
            )
    return "\n".join(out)


@contextmanager
def _serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
    }


def _paired_cost(runs: dict[str, list[float]]) -> float:
    """Median of (audited - unaudited) over back-to-back pairs: robust to a machine whose load
    drifts during the run (each pair shares its moment)."""
    diffs = [a - b for a, b in zip(runs["audit"], runs["no_audit"], strict=True)]
    return round(statistics.median(diffs), 2)


def _timed(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    r = client.get(path)
    elapsed = (time.perf_counter() - start) * 1000.0
    if r.status_code != 200:
        raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
    return elapsed


def _alternate(urls: dict[str, str], token: str, n: int) -> dict[str, list[float]]:
    path = "/v1/shipments/BENCH-1/trace"
    clients = {k: httpx.Client(base_url=u, headers={"X-API-Key": token}) for k, u in urls.items()}
    try:
        for c in clients.values():  # warm up connections and caches
            for _ in range(5):
                _timed(c, path)
        out: dict[str, list[float]] = {k: [] for k in clients}
        for i in range(n):
            order = list(clients) if i % 2 == 0 else list(reversed(clients))
            for k in order:
                out[k].append(_timed(clients[k], path))
        return out
    finally:
        for c in clients.values():
            c.close()


def _concurrent(url: str, token: str, per_thread: int) -> dict[str, Any]:
    path = "/v1/shipments/BENCH-1/trace"
    latencies: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": token}) as c:
            mine = [_timed(c, path) for _ in range(per_thread)]
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"requests_per_s": round(len(latencies) / wall, 1)} | _stats(latencies)


@contextmanager
def _writer(registry: Registry, period_s: float) -> Iterator[dict[str, int]]:
    """Commit one excursion change on the writes chain every ``period_s`` (ingest-like)."""
    stop = threading.Event()
    done = {"transactions": 0}
    base = Excursion("truck-9", "c1", "range", "range", "warning", "open", T0, None, T0)

    def run() -> None:
        i, start = 0, time.perf_counter()
        # On a schedule (not "sleep, then write"), so slow writes do not lower the rate.
        while not stop.wait(max(0.0, start + (i + 1) * period_s - time.perf_counter())):
            i += 1
            registry.upsert_excursions([replace(base, peak_c=8.0 + i / 1000.0)])
            done["transactions"] += 1

    thread = threading.Thread(target=run, daemon=True)
    started = time.perf_counter()
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(10)
        done["per_s"] = round(done["transactions"] / (time.perf_counter() - started))


def measure(quick: bool = False) -> dict[str, Any]:
    n = 60 if quick else 150
    per_thread = 10 if quick else 25
    with tempfile.TemporaryDirectory(prefix="coldchain-bench-audit-") as tmp:
        root = Path(tmp)
        influxd = Influxd(root / "influxd")
        influxd.start()
        try:
            return _run(root, influxd, n, per_thread)
        finally:
            influxd.stop()
            influxd.cleanup()


def _run(root: Path, influxd: Influxd, n: int, per_thread: int) -> dict[str, Any]:
    url = f"sqlite:///{root / 'registry.sqlite3'}"
    upgrade(url)
    influx = InfluxClient(InfluxSettings(url=influxd.url, database="bench_audit"))
    influx.create_database()
    influx.write(_lines().encode())
    points = 2 * (610 + 810)
    with open_registry(url) as registry:
        registry.create_shipment("BENCH-1", profile="chilled", actor="bench")
        for action, asset, comp, minute in SCANS:
            registry.record_custody_event(
                "BENCH-1", action, asset, comp, ts_ms=T0 + minute * MIN, actor="bench"
            )
        _key, token = registry.keys.create("regulator", created_by="bench", shipments=["BENCH-1"])
        settings = Settings(fleet_path=root / "none.yaml", api=ApiSettings())
        clock: Callable[[], int] = lambda: T0 + 1500 * MIN  # noqa: E731 - the trace's "now"

        def app(audit_reads: bool) -> FastAPI:
            return create_app(
                settings,
                registry=registry,
                influx=influx,
                fleet=FLEET,
                profiles=load_presets(),
                clock_ms=clock,
                audit_reads=audit_reads,
            )

        with _serve(app(False)) as plain, _serve(app(True)) as audited:
            urls = {"no_audit": plain, "audit": audited}
            seq = _alternate(urls, token, n)
            with _writer(registry, 0.02) as writes:
                loaded = _alternate(urls, token, n)
            before = (registry.trail.heads()["reads"][0], registry.trail.transactions)
            conc_plain = _concurrent(plain, token, per_thread)
            conc_audit = _concurrent(audited, token, per_thread)
            after = (registry.trail.heads()["reads"][0], registry.trail.transactions)
        alone = []
        for _ in range(n):
            start = time.perf_counter()
            registry.trail.record_read(
                actor="bench",
                action="read.trace",
                entity="shipment",
                entity_id="BENCH-1",
                payload={},
            )
            alone.append((time.perf_counter() - start) * 1000.0)
        report = registry.trail.verify()
        legs = len(registry.custody_legs("BENCH-1"))
    influx.close()
    entries = after[0] - before[0]
    batches = after[1] - before[1]
    s_plain, s_audit = _stats(seq["no_audit"]), _stats(seq["audit"])
    return {
        "benchmark": "api.audit_reads",
        "python": platform.python_version(),
        "trace": {"legs": legs, "points_in_influxdb": points, "audit_verified": report.ok},
        "sequential": {
            "no_audit_ms": s_plain,
            "audit_ms": s_audit,
            "audit_cost_p50_ms": round(s_audit["p50"] - s_plain["p50"], 2),
            "audit_cost_p50_pct": round(100 * (s_audit["p50"] / s_plain["p50"] - 1), 1),
            "audit_cost_paired_median_ms": _paired_cost(seq),
        },
        "with_ingest_writes": {
            "writer_transactions_per_s": writes["per_s"],
            "no_audit_ms": _stats(loaded["no_audit"]),
            "audit_ms": _stats(loaded["audit"]),
            "audit_cost_paired_median_ms": _paired_cost(loaded),
        },
        "concurrent": {
            "clients": THREADS,
            "no_audit": conc_plain,
            "audit": conc_audit,
            "read_entries": entries,
            "read_transactions": batches,
            "entries_per_transaction": round(entries / batches, 2) if batches else None,
        },
        "record_read_alone_ms": _stats(alone),
    }


def main() -> None:
    print(json.dumps(measure(quick="--quick" in sys.argv)))


if __name__ == "__main__":
    main()
