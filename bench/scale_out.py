"""The scale-out row of ``bench/ingest.py``: 2 ingest processes + 1 rules worker.

Two ``IngestService`` processes with ``rules.mode = "forward"`` share one subscription group
(each its own client id, persistent session and spool) and drain the same pre-queued backlog
as the single-process rows; one ``RulesWorker`` process owns every partition. Each runs in an
OS process of its own (multiprocessing, spawn), so none shares another's GIL or the
benchmark's. Each child writes its stats, idle state and process CPU time as JSON to a status
file every 50 ms; the benchmark only polls those files.

- ``msgs_per_s``: from the go signal (both ingest processes constructed, sessions created
  before the backlog was queued) until both together report every message confirmed in
  InfluxDB (or dead-lettered), as the single-process row measures it.
- ``evaluated_msgs_per_s``: until the worker also received every item the ingest processes
  forwarded and every partition's rules stage is idle (evaluated, nothing buffered or
  pending). Acknowledgements to the broker follow the checkpoints and are not waited for. The
  tail includes the reorder watermark (the ingest processes' heartbeats, every 0.1 s).
- ``*_cpu_s_per_1k_msgs``: process CPU per 1,000 messages, of both ingest processes together
  until the last point was confirmed, and of the worker from its start until it evaluated the
  last sample: ``1000 / cpu_s_per_1k`` is what one process could do with a core of its
  own (an estimate; the run itself shares 2 cores among three processes and the broker).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from coldchain.settings import Settings
from deploy.launcher import Services

__all__ = ["bench_scale_out"]

PARTITIONS = 8


def _write_status(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(path)


def _child(role: str, settings: Settings, status: str, go: Event, stop: Event) -> None:
    """One process of the row: ``role`` "ingest" waits for ``go``; "rules" starts at once."""
    import logging

    logging.basicConfig(level=logging.WARNING, format=f"{role} %(name)s %(message)s")
    from coldchain.fleet import load_fleet
    from ingest.rules_worker import RulesWorker
    from ingest.service import IngestService

    fleet = load_fleet(settings.fleet_path)
    path = Path(status)
    service: Any
    if role == "ingest":
        service = IngestService(settings, fleet)

        def idle() -> bool:
            return bool(service.wait_drained(0.01))
    else:
        service = RulesWorker(
            settings, fleet, list(range(PARTITIONS)), client_id_prefix="bench-rules"
        )

        # Evaluated, not acknowledged: a worker acknowledges the tail of a burst only at its
        # next checkpoint with new work (or at stop), so ``service.idle()`` can stay False.
        def idle() -> bool:
            return all(p.stage.idle() for p in service._parts)

    from cli.serve import settle_heap

    settle_heap()  # as `coldchain ingest` and `coldchain rules` do (cli.serve)
    _write_status(path, {"ready": True})
    if role == "ingest":
        go.wait()
    cpu0 = time.process_time()
    service.start()
    while not stop.wait(0.05):
        stats = service.stats()
        cpu = time.process_time() - cpu0
        _write_status(path, {**stats, "idle": idle(), "cpu_s": cpu, "ready": True})
    service.stop()


def _status(path: Path) -> dict[str, Any]:
    try:
        out: dict[str, Any] = json.loads(path.read_text())
        return out
    except (OSError, ValueError):
        return {}


def _is_received(key: str) -> bool:
    return key.startswith("rules_partition_") and key.endswith("_received")


def _settings(base: Settings, root: Path, name: str, **mqtt: str) -> Settings:
    return base.model_copy(
        update={
            "mqtt": base.mqtt.model_copy(update=mqtt),
            "spool": base.spool.model_copy(update={"path": root / f"{name}.sqlite3"}),
            "rules": base.rules.model_copy(update={"mode": "forward", "partitions": PARTITIONS}),
        }
    )


def bench_scale_out(
    services: Services,
    root: Path,
    base: Settings,
    n_messages: int,
    prequeue: Any,
    discard_session: Any,
) -> dict[str, float]:
    """The row (see the module docstring). ``base``: settings of a fresh database and registry;
    ``prequeue()`` queues the backlog; ``discard_session(client_id)`` drops a session."""
    from ingest.service import IngestService

    group = "bench_scale"
    ingests = [
        _settings(base, root, f"{group}-ingest-{i}", client_id=f"{group}-ingest-{i}")
        for i in range(2)
    ]
    worker_settings = _settings(base, root, f"{group}-rules", client_id=f"{group}-rules")
    from coldchain.fleet import load_fleet

    fleet = load_fleet(base.fleet_path)
    for s in ingests:  # create both persistent sessions in the group before the backlog
        service = IngestService(s, fleet)
        service.start()
        service.stop()
    ctx = multiprocessing.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    paths = [root / f"{group}-ingest-{i}.status.json" for i in range(2)]
    wpath = root / f"{group}-rules.status.json"
    procs = [
        ctx.Process(target=_child, args=("ingest", s, str(p), go, stop))
        for s, p in zip(ingests, paths, strict=True)
    ]
    procs.append(ctx.Process(target=_child, args=("rules", worker_settings, str(wpath), go, stop)))
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + 120
        while not all(_status(p).get("ready") for p in [*paths, wpath]):
            assert time.monotonic() < deadline, "scale-out processes did not start"
            time.sleep(0.05)
        while _status(wpath).get("cpu_s") is None:  # the worker started (and connected)
            assert time.monotonic() < deadline, "the rules worker did not start"
            time.sleep(0.05)
        prequeue()
        t0 = time.perf_counter()
        go.set()
        deadline = time.monotonic() + 600
        while True:
            st = [_status(p) for p in paths]
            done = sum(s.get("written_messages", 0) + s.get("dead_letters_total", 0) for s in st)
            if done >= n_messages:
                break
            assert time.monotonic() < deadline, f"scale-out ingest stalled: {st}"
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        at_done = st  # ingest CPU up to here (each child's last status, <= 50 ms old)
        while True:
            st = [_status(p) for p in paths]
            w = _status(wpath)
            forwarded = sum(s.get("rules_forwarded", 0) for s in st)
            received = sum(v for k, v in w.items() if _is_received(k))
            if all(s.get("idle") for s in st) and received >= forwarded and w.get("idle"):
                break
            assert time.monotonic() < deadline, f"scale-out rules stalled: {w}"
            time.sleep(0.01)
        evaluated = time.perf_counter() - t0
        stop.set()
        for p in procs:
            p.join(60)
    finally:
        stop.set()
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
        for s in ingests:
            discard_session(s.mqtt.client_id)
        for k in range(PARTITIONS):
            discard_session(f"bench-rules-{k}")
    dead = sum(s.get("dead_letters_total", 0) for s in st)
    assert dead == 0, st
    share = [s.get("written_messages", 0) / n_messages for s in st]
    return {
        "msgs_per_s": n_messages / elapsed,
        "elapsed_s": elapsed,
        "evaluated_msgs_per_s": n_messages / evaluated,
        "forwarded_items": float(forwarded),
        "worker_received_items": float(received),
        "ingest_share_min": min(share),
        "ingest_cpu_s_per_1k_msgs": 1000.0 * sum(s["cpu_s"] for s in at_done) / n_messages,
        "rules_worker_cpu_s_per_1k_msgs": 1000.0 * w["cpu_s"] / n_messages,
    }
