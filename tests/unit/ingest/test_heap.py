"""``ingest.heap.settle_heap``: start-up objects frozen, young collections less often.

Run in a child interpreter: the setting is process-wide and must not change pytest's own."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from ingest.heap import YOUNG_COLLECTION_EVERY, settle_heap

_CHILD = """
import gc, json
from ingest.heap import settle_heap
before = gc.get_freeze_count(), gc.get_threshold()
start_up = [[i] for i in range(1000)]  # containers a service built at start-up
settle_heap({every})
oldest = len(gc.get_objects(2))
print(json.dumps({{"before": before, "frozen": gc.get_freeze_count(),
                  "threshold": gc.get_threshold(), "tracked_oldest": oldest}}))
"""


def _child(every: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(every=every)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_start_up_objects_are_frozen_and_the_young_threshold_raised() -> None:
    got = _child(YOUNG_COLLECTION_EVERY)
    before_frozen, before_threshold = got["before"]
    assert before_frozen == 0
    assert before_threshold[0] != YOUNG_COLLECTION_EVERY
    assert isinstance(got["frozen"], int) and got["frozen"] > 1000  # the list's 1,000 and more
    assert got["threshold"] == [YOUNG_COLLECTION_EVERY, *before_threshold[1:]]
    # Without the freeze the 1,000 lists would sit in the oldest generation, walked by every
    # full collection.
    assert isinstance(got["tracked_oldest"], int) and got["tracked_oldest"] < 50


def test_a_custom_threshold_is_used() -> None:
    assert _child(2500)["threshold"][0] == 2500


def test_a_threshold_below_one_is_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match="young_collection_every must be >= 1, got 0"):
        settle_heap(0)
