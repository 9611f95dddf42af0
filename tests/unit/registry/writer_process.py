"""Body of a separate writer process for the concurrency tests (imports only the registry: the
fork server preloads this module, then forks each writer from it)."""

from __future__ import annotations

from registry import open_registry


def append_custody_and_reads(url: str, n: int, count: int) -> None:
    """``count`` custody events on shipment S1 and ``count`` regulator reads, as process n."""
    with open_registry(url) as reg:
        for i in range(count):
            reg.record_custody_event("S1", "handover", f"asset-{n}", None, ts_ms=i, actor=f"p{n}")
            reg.trail.record_read(
                actor=f"p{n}", action="read.trace", entity="shipment", entity_id="S1", payload={}
            )
