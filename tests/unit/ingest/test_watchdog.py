"""``ingest.watchdog.guarded``: a thread that dies or quits early is a named health problem."""

from __future__ import annotations

import threading

from ingest.health import Health
from ingest.watchdog import guarded


def _run(target: object, stopping: threading.Event) -> Health:
    health = Health()
    t = guarded("pipeline", target, health, stopping)  # type: ignore[arg-type]
    assert t.name == "ingest-pipeline" and t.daemon
    t.start()
    t.join(10)
    assert not t.is_alive()
    return health


def test_an_exception_raises_the_dead_problem() -> None:
    def boom() -> None:
        raise RuntimeError("no such table: spool")

    problems = _run(boom, threading.Event()).problems()
    assert list(problems) == ["pipeline_dead"]
    assert "RuntimeError: no such table: spool" in problems["pipeline_dead"]


def test_returning_while_running_is_a_death_too() -> None:
    problems = _run(lambda: None, threading.Event()).problems()
    assert "exited unexpectedly" in problems["pipeline_dead"]


def test_returning_when_asked_to_stop_is_fine() -> None:
    stopping = threading.Event()
    stopping.set()
    assert _run(lambda: None, stopping).ok
