"""Processes for the scale-out test: real ``IngestService``/``RulesWorker`` subprocesses on one
replay clock.

``python -m tests.e2e.scale_support ingest|rules --start-ms .. --end-ms .. --speedup ..
--go FILE --status FILE`` runs one process with settings from ``COLDCHAIN_*`` (as ``coldchain
ingest`` and ``coldchain rules`` do), but on a ``ReplayClock`` every process shares (same start,
pace and wall-clock origin, which the test writes to the go file when the publisher starts):
silence and detection times are judged on the replay's clock in every process, as in
``coldchain demo``. It writes its stats as JSON to the status file every 0.2 s (``idle``:
nothing received is left to store, forward or evaluate) and exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
READY = "scale-support ready"


class SharedWall:
    """Epoch seconds minus the time spent paused: the test pauses every process's replay clock
    and its publisher (``pause``/``resume``) through ``path``; processes read it on change."""

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
        return (time.time() if self._since is None else self._since) - self._paused_s

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"paused_s": self._paused_s, "since": self._since}))
        tmp.replace(self.path)

    def start(self) -> None:
        """Write the file: not paused."""
        self._save()

    def pause(self) -> None:
        self._since = time.time()
        self._save()

    def resume(self) -> None:
        assert self._since is not None
        self._paused_s += time.time() - self._since
        self._since = None
        self._save()


class Proc:
    """One subprocess of the run: ``role`` is ingest or rules; ``args`` its extra arguments."""

    def __init__(
        self, name: str, role: str, env: dict[str, str], clock: list[str], root: Path, *args: str
    ) -> None:
        self.name, self.role, self.env, self.args = name, role, env, [*clock, *args]
        self.log = root / f"{name}.log"
        self.status_path = root / f"{name}.status.json"
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = 0

    def start(self) -> Proc:
        return self.launch().wait_ready()

    def launch(self) -> Proc:
        self._started = self.log.read_text().count(READY) if self.log.exists() else 0
        self.status_path.unlink(missing_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("COLDCHAIN_")}
        self.proc = subprocess.Popen(
            [*self._argv(), "--status", str(self.status_path)],
            env=base | self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            cwd=ROOT,
        )
        return self

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "tests.e2e.scale_support", self.role, *self.args]

    def wait_ready(self) -> Proc:
        ok = wait_for(lambda: self.log.read_text().count(READY) > self._started, 60, 0.05)
        assert ok, f"{self.name} did not start:\n{self.log.read_text()[-3000:]}"
        return self

    def status(self) -> dict[str, Any]:
        try:
            out: dict[str, Any] = json.loads(self.status_path.read_text())
            return out
        except (OSError, ValueError):
            return {}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)


def _write_status(path: Path, stats: dict[str, object], idle: bool) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**stats, "idle": idle}, default=str))
    tmp.replace(path)


def main(argv: list[str]) -> int:
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


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.exit(main(sys.argv[1:]))
