"""The garbage collector of a long-lived ingest or rules process.

Every message allocates a dozen container objects (the decoded models, the rules'
observations, the group's bookkeeping), almost all freed at once by reference counting. With
CPython's default thresholds (700, 10, 10) that triggers a young collection every ~60 messages
and, every few seconds, a full collection that walks every object the process holds: the
imported modules, the fleet, the rules engine. Measured on ``bench/ingest.py``'s drain (one
process with rules, 40,000 messages, this 2-core machine): 8 full collections took 2.3 s of a
13 s drain; ``settle_heap`` cut process CPU per message by about a fifth (docs/operations.md,
"Sizing").

``settle_heap`` is process-wide: only a process's entry point calls it (``cli.serve``, the demo,
the benchmarks), once, after the service is built and before it starts.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_COLLECTION_EVERY", "settle_heap"]

# Net container allocations between two young collections (CPython's default: 700). Garbage in
# reference cycles, rare on this path, waits at most this long; everything else is freed by
# reference counting as before. Above what one group commit holds alive at once (a group of the
# default 2,000 messages: ~15 tracked objects each, its models, records and lines, ~30k), so a
# drain does not collect in the middle of every group only to find all of it alive: at 10,000,
# 8-9 % of a drain's time went to such collections (bench/ingest.py, issue 12).
YOUNG_COLLECTION_EVERY = 50_000


def settle_heap(young_collection_every: int = YOUNG_COLLECTION_EVERY) -> None:
    """Collect once, move every object that exists now to the permanent generation
    (``gc.freeze``, Python 3.7+: later collections never walk it; the CPython documentation
    recommends it for long-lived processes whose start-up objects live as long as they do), and
    collect the young generation every ``young_collection_every`` allocations.

    Objects frozen here are never collected if they later become cyclic garbage: call it after
    start-up, when what exists is what the process keeps. Raises ``ValueError`` for a threshold
    below 1.
    """
    if young_collection_every < 1:
        raise ValueError(f"young_collection_every must be >= 1, got {young_collection_every}")
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_collection_every, older, oldest)
