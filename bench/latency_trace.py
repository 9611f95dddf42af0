"""Where publish -> InfluxDB-confirmed latency goes: a bench-only tracer for ``bench/ingest.py``.

It wraps an ``IngestService``'s pipeline spool ``append`` and drain spool ``peek`` and replaces
its InfluxDB writer (instance attributes, before ``start()``): nothing in ``ingest/`` knows about
it. For every message confirmed by InfluxDB it splits the latency (ms, wall clock, publisher and
ingest on one machine) into:

- ``publish_to_receive``: device time (= publish time) to paho's ``on_message`` in ingest
  (publisher process, broker, socket, paho's thread);
- ``receive_to_commit_start``: delivery queue, group linger, decode/validate/encode of the group;
- ``commit``: the spool's group commit (SQLite transaction, fsync);
- ``commit_to_write_start``: the row waits for the writer (busy with an earlier batch, or asleep);
- ``write``: gzip + HTTP ``/write`` until InfluxDB answered 204 (its WAL fsync included).

Memory stays constant (1 ms histograms, sums per 10 ms bucket of the total, the worst second's
record per second kept for the 20 worst seconds; rows in flight are a dict the confirmations
empty), so the RSS the benchmark samples is the ingest's. ``gc.callbacks`` times the collector's
pauses per generation. Every figure printed is the same run's.
"""

from __future__ import annotations

import gc
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ingest.spool import SpoolBatch
from timeseries.client import InfluxClient

__all__ = ["COMPONENTS", "LatencyTrace", "percentile"]

COMPONENTS = (
    "publish_to_receive",
    "receive_to_commit_start",
    "commit",
    "commit_to_write_start",
    "write",
)
_MAX_MS = 120_000
_TAIL_BUCKET_MS = 10
_WORST_SECONDS = 20


def _now_ms() -> float:
    return time.time() * 1000.0


def percentile(buckets: Sequence[int], q: float) -> float:
    """The ``q`` quantile (0..1) of a 1 ms histogram, in ms (nan when empty)."""
    total = sum(buckets)
    seen = 0
    for ms, n in enumerate(buckets):
        seen += n
        if total and seen >= q * total:
            return float(ms)
    return float("nan")


def _summary(buckets: Sequence[int]) -> dict[str, float]:
    top = max((i for i, c in enumerate(buckets) if c), default=-1)
    return {
        "p50_ms": percentile(buckets, 0.5),
        "p99_ms": percentile(buckets, 0.99),
        "max_ms": float(top) if top >= 0 else float("nan"),
    }


class _Hist:
    __slots__ = ("buckets",)

    def __init__(self) -> None:
        # An array of C integers: counting allocates nothing (a list would make int objects).
        self.buckets = array("q", bytes(8 * (_MAX_MS + 1)))

    def add(self, ms: float) -> None:
        self.buckets[min(max(int(ms), 0), _MAX_MS)] += 1


class LatencyTrace:
    """Attach with ``attach(service)`` before ``service.start()``, ``watch_gc()`` once started;
    ``report()`` at the end.

    ``report()`` -> {"total": {p50_ms, p99_ms, max_ms}, "components": {name: {...}},
    "tail_at_p99": mean of each component over the messages at or above the total's p99,
    "groups"/"batches": per commit and per write sizes and durations, "gc": pauses,
    "worst_seconds": the slowest message of each of the 20 worst seconds, with its split}.
    """

    def __init__(self) -> None:
        self.total = _Hist()
        self.parts = {name: _Hist() for name in COMPONENTS}
        n_tail = _MAX_MS // _TAIL_BUCKET_MS + 1
        self._tail_n = [0] * n_tail
        self._tail_sum = [[0.0] * len(COMPONENTS) for _ in range(n_tail)]
        self._rows: dict[int, tuple[int, float, float]] = {}  # row -> received, start, end
        self._lock = threading.Lock()
        self._batch: SpoolBatch | None = None
        self._group_ms = _Hist()
        self._group_sizes = _Hist()
        self._write_ms = _Hist()
        self._batch_rows = _Hist()
        self._worst: dict[int, tuple[float, tuple[float, ...]]] = {}
        self._gc_start = 0.0
        self._gc_pauses: dict[int, _Hist] = {0: _Hist(), 1: _Hist(), 2: _Hist()}
        self.t0_ms = _now_ms()

    # -- wiring -------------------------------------------------------------------------------
    def attach(self, service: Any) -> InfluxClient:
        """Wrap the service's spools and writer (private attributes: bench-only); returns the
        traced writer, which the service and its drainer now share."""
        pipeline_spool, drain_spool = service.pipeline._spool, service._drain_spool
        append, peek = pipeline_spool.append, drain_spool.peek
        trace = self

        def traced_append(messages: Iterable[Any], dead: Any, replayed: Any = ()) -> int:
            messages = list(messages)
            start = _now_ms()
            last_id: int = append(messages, dead, replayed)
            end = _now_ms()
            trace._committed(messages, last_id, start, end)
            return last_id

        def traced_peek(max_points: int, after_id: int = 0) -> SpoolBatch | None:
            batch: SpoolBatch | None = peek(max_points, after_id)
            trace._batch = batch
            return batch

        pipeline_spool.append = traced_append
        drain_spool.peek = traced_peek

        class _Writer(InfluxClient):
            def write(self, body: bytes) -> None:
                start = _now_ms()
                super().write(body)
                trace._confirmed(start, _now_ms())

        writer = _Writer(service.settings.influx)
        service._writer = writer
        service._drainer._writer = writer
        return writer

    def watch_gc(self) -> None:
        """Time the collector's passes from now on (after start-up's own collections)."""
        gc.callbacks.append(self._on_gc)

    def detach(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    # -- hooks (pipeline and writer threads) ----------------------------------------------------
    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self._gc_pauses[info["generation"]].add((time.perf_counter() - self._gc_start) * 1e3)

    def _committed(self, messages: list[Any], last_id: int, start: float, end: float) -> None:
        self._group_ms.add(end - start)
        self._group_sizes.add(len(messages))
        if not messages:
            return
        first = last_id - len(messages) + 1
        with self._lock:
            for i, m in enumerate(messages):
                self._rows[first + i] = (m.received_ms, start, end)

    def _confirmed(self, write_start: float, write_end: float) -> None:
        batch = self._batch
        self._write_ms.add(write_end - write_start)
        if batch is None:
            return
        self._batch_rows.add(len(batch.rows))
        second = int((write_end - self.t0_ms) // 1000)
        worst: tuple[float, tuple[float, ...]] | None = None
        for row_id, _, lines in batch.rows:
            with self._lock:
                seen = self._rows.pop(row_id, None)
            if seen is None:  # annotations, or rows of a bisected batch already counted
                continue
            received, c_start, c_end = seen
            try:
                device_ms = int(lines.rsplit(" ", 1)[1])  # the row's last line: its device line
            except (IndexError, ValueError):
                continue
            parts = (
                received - device_ms,
                c_start - received,
                c_end - c_start,
                write_start - c_end,
                write_end - write_start,
            )
            total = write_end - device_ms
            self.total.add(total)
            for hist, ms in zip(self.parts.values(), parts, strict=True):
                hist.add(ms)
            k = min(max(int(total), 0), _MAX_MS) // _TAIL_BUCKET_MS
            self._tail_n[k] += 1
            sums = self._tail_sum[k]
            for i, ms in enumerate(parts):
                sums[i] += ms
            if worst is None or total > worst[0]:
                worst = (total, parts)
        if worst is not None:
            self._keep_worst(second, worst)

    def _keep_worst(self, second: int, entry: tuple[float, tuple[float, ...]]) -> None:
        old = self._worst.get(second)
        if old is None or entry[0] > old[0]:
            self._worst[second] = entry
        if len(self._worst) > 2 * _WORST_SECONDS:
            keep = sorted(self._worst.items(), key=lambda kv: kv[1][0])[-_WORST_SECONDS:]
            self._worst = dict(keep)

    # -- report ------------------------------------------------------------------------------
    def tail_at(self, q: float) -> dict[str, float]:
        """Mean of each component over the messages whose total is at or above its ``q``
        quantile (10 ms resolution)."""
        p = percentile(self.total.buckets, q)
        start = int(p) // _TAIL_BUCKET_MS if p == p else 0
        n = sum(self._tail_n[start:])
        out = {"messages": float(n), "from_total_ms": float(start * _TAIL_BUCKET_MS)}
        for i, name in enumerate(COMPONENTS):
            s = sum(self._tail_sum[k][i] for k in range(start, len(self._tail_n)))
            out[f"{name}_ms"] = round(s / n, 1) if n else float("nan")
        return out

    def report(self, extra: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
        worst = sorted(self._worst.items(), key=lambda kv: -kv[1][0])[:_WORST_SECONDS]
        return {
            "samples": sum(self.total.buckets),
            "total": _summary(self.total.buckets),
            "components": {k: _summary(h.buckets) for k, h in self.parts.items()},
            "tail_at_p99": self.tail_at(0.99),
            "groups": {
                "commit": _summary(self._group_ms.buckets),
                "size_messages": _summary(self._group_sizes.buckets),
            },
            "batches": {
                "write": _summary(self._write_ms.buckets),
                "size_rows": _summary(self._batch_rows.buckets),
                "count": sum(self._write_ms.buckets),
            },
            "gc": {
                f"gen{g}": {"count": sum(h.buckets), **_summary(h.buckets)}
                for g, h in self._gc_pauses.items()
            },
            "worst_seconds": [
                {"at_s": s, "total_ms": round(t, 1)}
                | {name: round(ms) for name, ms in zip(COMPONENTS, p, strict=True)}
                for s, (t, p) in worst
            ],
            "rows_in_flight_at_end": len(self._rows),
            **(extra() if extra else {}),
        }


def tracked_census(top: int = 12) -> dict[str, int]:
    """Objects the collector tracks outside the frozen generation, by type (the ``top`` most
    numerous, plus ``"total"``): what a full collection walks."""
    counts: dict[str, int] = {}
    objects = gc.get_objects()
    for obj in objects:
        name = type(obj).__name__
        counts[name] = counts.get(name, 0) + 1
    del objects
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return {"total": sum(counts.values()), **dict(ranked)}


def heap_growth(snapshot: Any, top: int = 15) -> list[dict[str, Any]]:
    """The ``top`` call sites (innermost project or library frame first) holding the most memory
    allocated since ``tracemalloc.start()`` and still alive at ``snapshot``: what grew."""
    import tracemalloc

    snapshot = snapshot.filter_traces(
        [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, __file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        ]
    )
    out = []
    for stat in snapshot.statistics("traceback")[:top]:
        frames = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in stat.traceback]
        out.append({"kib": round(stat.size / 1024, 1), "blocks": stat.count, "at": frames})
    return out
