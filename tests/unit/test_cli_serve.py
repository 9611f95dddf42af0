"""cli.serve: the long-lived commands start, reload on SIGHUP, and stop on SIGTERM with their
counters printed as one JSON line (run in a child process: signals reach the main thread)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import gc, os, signal, sys, threading
    from cli.serve import serve

    class Service:
        def __init__(self):
            self.events = []
        def start(self):
            self.events.append("start")
            # serve() froze the heap built before start (cli.serve.settle_heap)
            self.events.append(f"frozen {gc.get_freeze_count() > 1000}")
            # After serve() installed its handlers: a reload, then the stop. CPython runs
            # pending handlers in signal-number order (SIGHUP 1 before SIGTERM 15), so the
            # order holds however late the main thread gets to them.
            def send():
                os.kill(os.getpid(), signal.SIGHUP)
                os.kill(os.getpid(), signal.SIGTERM)
            threading.Thread(target=send, daemon=True).start()
        def stop(self, *, timeout_s):
            self.events.append(f"stop {timeout_s}")
        def stats(self):
            return {"events": self.events}

    s = Service()
    sys.exit(serve(s, "banner line", stop_timeout_s=3.0,
                   on_hangup=lambda: s.events.append("hangup")))
    """
)


def test_serve_freezes_the_heap_reloads_on_sighup_and_stops_on_sigterm() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "banner line"
    assert json.loads(done.stdout) == {"events": ["start", "frozen True", "hangup", "stop 3.0"]}


GIVES_UP = textwrap.dedent(
    """
    import sys
    from cli.serve import serve

    class Service:
        def __init__(self):
            self.events = []
        def start(self):
            self.events.append("start")
        def stop(self, *, timeout_s):
            self.events.append("stop")
        def stats(self):
            return {"events": self.events}

    # A rules worker that lost a partition's lease: no signal, serve stops it and exits 1.
    sys.exit(serve(Service(), "banner line", stop_timeout_s=3.0, exit_status=lambda: 1))
    """
)


def test_serve_stops_a_service_that_gave_up_and_exits_with_its_status() -> None:
    done = subprocess.run(
        [sys.executable, "-c", GIVES_UP], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {"events": ["start", "stop"]}
