"""Processes for the scale-out test: real ``IngestService``/``RulesWorker`` processes on one
replay clock, forked by a ``Zygote``.

``python -m tests.e2e.scale_support ingest|rules --start-ms .. --end-ms .. --speedup ..
--go FILE --status FILE`` runs one process with settings from ``COLDCHAIN_*`` (as ``coldchain
ingest`` and ``coldchain rules`` do), but on a ``ReplayClock`` every process shares (same start,
pace and wall-clock origin, which the test writes to the go file when the publisher starts):
silence and detection times are judged on the replay's clock in every process, as in
``coldchain demo``. It writes its stats as JSON to the status file every 0.2 s (``idle``:
nothing received is left to store, forward or evaluate) and exits on SIGTERM.

``python -m tests.e2e.scale_support zygote`` imports what those processes need once, then forks
one per request (``Zygote``): a process starts in milliseconds instead of 2-3 s of CPU for its
imports (five processes a run, on 2 shared cores). A forked process is an ordinary process of
its own (memory, sockets, pid, signals): SIGKILL and SIGTERM act on it as on any other.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
READY = "scale-support ready"


class SharedWall:
    """Epoch seconds minus the time spent paused: the test pauses every process's replay clock
    and its publisher (``pause``/``resume``) through ``path``; processes read it on change.

    A pause takes effect ``PAUSE_LEAD_S`` after it is written (``pause()`` returns once it
    did), and the clock stops at that moment: a process that last read the file before the
    pause was written has only read times before it, so no process has stamped a time past the
    one the clock stops at (such an item would wait in a rules worker's reorder buffer until
    the resume).
    """

    PAUSE_LEAD_S = 0.2

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: int | None = None
        self._paused_s, self._since = 0.0, None

    def _load(self) -> None:
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return
        if stamp != self._stamp:
            data = json.loads(self.path.read_text())
            self._stamp, self._paused_s, self._since = stamp, data["paused_s"], data["since"]

    def __call__(self) -> float:
        self._load()
        now = time.time()
        return (now if self._since is None else min(now, self._since)) - self._paused_s

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"paused_s": self._paused_s, "since": self._since}))
        tmp.replace(self.path)

    def start(self) -> None:
        """Write the file: not paused."""
        self._save()

    def pause(self) -> None:
        """Stop the clock ``PAUSE_LEAD_S`` from now; returns once it stopped."""
        self._since = time.time() + self.PAUSE_LEAD_S
        self._save()
        time.sleep(self.PAUSE_LEAD_S + 0.05)

    def resume(self) -> None:
        assert self._since is not None
        self._paused_s += max(0.0, time.time() - self._since)
        self._since = None
        self._save()


class Zygote:
    """The forking process (``python -m tests.e2e.scale_support zygote``); ``log`` gets its
    stderr. ``fork(argv, env, log)`` starts ``main(argv)`` with ``env`` as its ``COLDCHAIN_*``
    variables and its stderr appended to ``log``, and returns its pid. The zygote ignores
    SIGCHLD, so the kernel reaps its children: a pid is gone once its process exited."""

    def __init__(self, log: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("COLDCHAIN_")}
        self.log = log
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.scale_support", "zygote"],
            env=base,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            cwd=ROOT,
            text=True,
        )
        if self._line() != "ready":
            raise RuntimeError(f"the zygote did not start:\n{log.read_text()[-3000:]}")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()  # "" once the zygote died

    def fork(self, argv: list[str], env: dict[str, str], log: Path) -> int:
        assert self.proc.stdin is not None
        request = json.dumps({"argv": argv, "env": env, "log": str(log)})
        with self._lock:
            self.proc.stdin.write(request + "\n")
            self.proc.stdin.flush()
            answer = self._line()
        if not answer.isdigit():
            raise RuntimeError(f"the zygote did not fork:\n{self.log.read_text()[-3000:]}")
        return int(answer)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # its loop ends on end of input
        self.proc.wait(10)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Proc:
    """One process of the run, forked by ``zygote``: ``role`` is ingest or rules; ``args`` its
    extra arguments."""

    def __init__(
        self,
        zygote: Zygote,
        name: str,
        role: str,
        env: dict[str, str],
        clock: list[str],
        root: Path,
        *args: str,
    ) -> None:
        self.zygote = zygote
        self.name, self.role, self.env, self.args = name, role, env, [*clock, *args]
        self.log = root / f"{name}.log"
        self.status_path = root / f"{name}.status.json"
        self.pid: int | None = None
        self._started = 0

    def start(self) -> Proc:
        return self.launch().wait_ready()

    def launch(self) -> Proc:
        self.log.touch()  # the child appends to it
        self._started = self.log.read_text().count(READY)
        self.status_path.unlink(missing_ok=True)
        argv = [self.role, *self.args, "--status", str(self.status_path)]
        self.pid = self.zygote.fork(argv, self.env, self.log)
        return self

    def wait_ready(self) -> Proc:
        def ready() -> bool:
            assert self.alive(), f"{self.name} exited:\n{self.log.read_text()[-3000:]}"
            return self.log.read_text().count(READY) > self._started

        ok = wait_for(ready, 60, 0.05)
        assert ok, f"{self.name} did not start:\n{self.log.read_text()[-3000:]}"
        return self

    def status(self) -> dict[str, Any]:
        try:
            out: dict[str, Any] = json.loads(self.status_path.read_text())
            return out
        except (OSError, ValueError):
            return {}

    def alive(self) -> bool:
        return self.pid is not None and not _gone(self.pid)

    def wait_gone(self, timeout_s: float) -> bool:
        pid = self.pid
        return pid is None or wait_for(lambda: _gone(pid), timeout_s, 0.02)

    def kill(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        assert self.wait_gone(10), f"{self.name} survived SIGKILL"

    def signal_stop(self) -> None:
        """SIGTERM (it checkpoints and exits); ``wait_gone`` for the exit."""
        if self.alive():
            assert self.pid is not None
            os.kill(self.pid, signal.SIGTERM)


def _write_status(path: Path, stats: dict[str, object], idle: bool) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**stats, "idle": idle}, default=str))
    tmp.replace(path)


def main(argv: list[str]) -> int:
    if argv == ["zygote"]:
        return _zygote()
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=("ingest", "rules"))
    p.add_argument("--start-ms", type=int, required=True)
    p.add_argument("--end-ms", type=int, required=True)
    p.add_argument("--speedup", type=float, required=True)
    p.add_argument("--go", type=Path, required=True, help="holds the replay's wall-clock origin")
    p.add_argument("--wall", type=Path, required=True, help="SharedWall's file")
    p.add_argument("--status", type=Path, required=True)
    p.add_argument("--partitions", default="all")
    p.add_argument("--client-id-prefix", default="coldchain-rules")
    p.add_argument("--silence-lag-ms", type=int, default=None)
    args = p.parse_args(argv)

    from coldchain.fleet import load_fleet
    from coldchain.rules import parse_partitions
    from coldchain.settings import load_settings
    from simulators.publish import ReplayClock

    settings = load_settings()
    fleet = load_fleet(settings.fleet_path)
    clock = ReplayClock(
        datetime.fromtimestamp(args.start_ms / 1000, UTC),
        args.speedup,
        datetime.fromtimestamp(args.end_ms / 1000, UTC),
        wall=SharedWall(args.wall),
    )

    def begin_when_go() -> None:  # the replay starts when the test writes its origin
        while not args.go.exists():  # written whole (renamed into place)
            time.sleep(0.01)
        clock.begin(at_s=float(args.go.read_text()))

    threading.Thread(target=begin_when_go, daemon=True).start()
    service: Any
    if args.role == "ingest":
        from ingest.service import IngestService

        service = IngestService(settings, fleet, clock_ms=clock)

        def idle() -> bool:
            return bool(service.wait_drained(0.01))
    else:
        from ingest.rules_worker import RulesWorker

        owned = parse_partitions(args.partitions, settings.rules.partitions)
        service = RulesWorker(
            settings,
            fleet,
            owned,
            clock_ms=clock,
            client_id_prefix=args.client_id_prefix,
            silence_lag_ms=args.silence_lag_ms,
        )
        idle = service.idle
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.start()
    print(READY, file=sys.stderr, flush=True)
    while not stop.wait(0.2):
        _write_status(args.status, service.stats(), idle())
    service.stop()
    return 0


def _zygote() -> int:
    """Import what ``main`` needs, say "ready", then fork ``main`` for each request line (JSON
    ``argv``, ``env``, ``log``) and answer its pid. Ends on end of input."""
    import psycopg  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

    import coldchain.fleet  # noqa: F401  # the imports every child would otherwise pay for
    import ingest.rules_worker
    import ingest.service  # noqa: F401
    import simulators.publish  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(pid, flush=True)
    return 0


def _child(request: dict[str, Any]) -> None:
    """In the forked process: stdio and environment of its own, then ``main``; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for fd, target in ((0, null), (1, null), (2, log)):
            os.dup2(target, fd)
        os.close(null)
        os.close(log)
        for key in [k for k in os.environ if k.startswith("COLDCHAIN_")]:
            del os.environ[key]
        os.environ.update(request["env"])
        _log_to_stderr()
        code = main(request["argv"])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


if __name__ == "__main__":
    _log_to_stderr()
    sys.exit(main(sys.argv[1:]))
