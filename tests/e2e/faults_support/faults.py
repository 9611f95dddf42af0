"""The faults of issue 8, each injected at a known point of a run (see ``run.Fault``).

Service restarts use the launcher's own ``stop``/``kill``/``start``, which keep the port and
the data directory: a broker or InfluxDB that comes back is the same instance with its store.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from deploy.launcher import Mosquitto
from tests.e2e.faults_support.run import Fault, Run, setting

__all__ = [
    "FAULTS",
    "BrokerKill",
    "BrokerRestart",
    "DiskFull",
    "InfluxDown",
    "IngestKill",
    "IngestTerm",
    "RegistryLocked",
    "SpoolCorrupted",
    "SpoolDeleted",
    "autosave_window",
    "stop_grace_s",
]

REPO = Path(__file__).resolve().parents[3]
DETECT_S = 5.0  # how long after a fault ends a late "red" still counts as seen during it


class IngestKill(Fault):
    """SIGKILL ingest mid-stream, start it again one second later (same client id, spool)."""

    name = "ingest_sigkill"

    def inject(self, run: Run) -> None:
        t0 = run.mark("ingest_killed")
        run.ingest.kill()
        time.sleep(1.0)
        run.start_ingest()
        run.fault_window = (t0, run.mark("ingest_restarted"))


class IngestTerm(Fault):
    """SIGTERM ingest mid-stream (what a supervisor or container runtime sends), start it again
    once it has exited; records how long the drain took against the documented bound."""

    name = "ingest_sigterm"

    def inject(self, run: Run) -> None:
        t0 = run.mark("ingest_terminated")
        rc, seconds = run.ingest.terminate(timeout_s=120)
        run.notes["sigterm_exit_code"] = rc
        run.notes["sigterm_drain_s"] = round(seconds, 2)
        run.notes["sigterm_bound_s"] = stop_grace_s()
        run.start_ingest()
        run.fault_window = (t0, run.mark("ingest_restarted"))


def _broker_down_s(run: Run, at_least_s: float) -> float:
    """Down long enough that ingest must report it: past its disconnect grace, if it has one
    (a restart shorter than the grace is meant to stay green)."""
    grace = setting("mqtt", "disconnected_grace_s", run.ingest.env) or 0.0
    down = max(at_least_s, float(grace) + 3.0)
    run.notes["broker_down_s"] = down
    return down


class BrokerRestart(Fault):
    """Graceful broker restart (SIGTERM, mosquitto saves its store), down for ``down_s`` or
    3 s past ingest's disconnect grace, whichever is longer."""

    name = "broker_restart"

    def __init__(self, down_s: float = 3.0) -> None:
        self.down_s = down_s

    def inject(self, run: Run) -> None:
        down_s = _broker_down_s(run, self.down_s)
        t0 = run.mark("broker_stopped")
        run.mosquitto.stop()
        time.sleep(down_s)
        run.mosquitto.start()
        run.fault_window = (t0, run.mark("broker_started") + DETECT_S)


class BrokerKill(Fault):
    """SIGKILL the broker, down as for a restart, start it on the same port and store. Readings
    the broker acknowledged after its last autosave may be lost: the documented exception."""

    name = "broker_sigkill"
    covered = False

    def __init__(self, down_s: float = 3.0) -> None:
        self.down_s = down_s

    def inject(self, run: Run) -> None:
        run.notes["autosave_window"] = autosave_window(run.mosquitto)
        down_s = _broker_down_s(run, self.down_s)
        t0 = run.mark("broker_killed")
        run.mosquitto.kill()
        time.sleep(down_s)
        run.mosquitto.start()
        run.fault_window = (t0, run.mark("broker_started") + DETECT_S)


class InfluxDown(Fault):
    """Stop influxd for ``down_s``, start it again on the same port and data directory."""

    name = "influx_down"

    def __init__(self, down_s: float = 8.0) -> None:
        self.down_s = down_s

    def inject(self, run: Run) -> None:
        t0 = run.mark("influx_stopped")
        run.influxd.stop()
        time.sleep(self.down_s)
        run.influxd.start()
        run.fault_window = (t0, run.mark("influx_started") + DETECT_S)


class DiskFull(Fault):
    """The disk under ingest's data (spool and registry) fills up for ``full_s``, then space
    comes back (the ballast file is deleted) with no operator action on ingest.

    Mechanism: ingest's data directory is a small tmpfs mounted for the run (needs root and
    CAP_SYS_ADMIN, as in the test container); filling it with a ballast file gives ENOSPC on
    every write that needs a new block, exactly as a full disk does.
    """

    name = "disk_full"

    def __init__(self, full_s: float = 8.0) -> None:
        self.full_s = full_s
        self._mounted: Path | None = None

    def prepare(self, run: Run) -> None:
        # Room for the spool, the registry and ingest's disk reserve (if it keeps one) with as
        # much again to spare: a disk ingest can run on and recover on once space is back.
        reserve_mb = setting("spool", "reserve_mb", run.ingest.env) or 0
        size_mb = 64 + 3 * int(reserve_mb)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", run.var],
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise AssertionError(
                "the disk-full case mounts a small tmpfs under ingest's data and needs root "
                f"with CAP_SYS_ADMIN (as scripts/test.sh runs): {done.stderr.strip()}"
            )
        self._mounted = run.var
        run.notes["disk_full_mechanism"] = f"tmpfs {size_mb} MiB filled by a ballast file"

    def inject(self, run: Run) -> None:
        ballast = run.var / "ballast"
        t0 = run.mark("disk_full")
        written = _fill(ballast)
        run.notes["ballast_mb"] = round(written / 2**20, 1)
        time.sleep(self.full_s)
        ballast.unlink()
        run.fault_window = (t0, run.mark("disk_freed") + DETECT_S)

    def cleanup(self, run: Run) -> None:
        if self._mounted is not None:
            # Keep the files for a post-mortem, then release the mount.
            with contextlib.suppress(OSError):
                shutil.copytree(self._mounted, run.root / "var-copy", dirs_exist_ok=True)
            subprocess.run(["umount", "-l", self._mounted], check=False, capture_output=True)
            self._mounted = None


def _fill(path: Path) -> int:
    """Write zeros to ``path`` until the file system is full; the bytes written."""
    chunk = b"\0" * (1 << 20)
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            part = chunk[:size]
            while True:
                try:
                    written += os.write(fd, part)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


class RegistryLocked(Fault):
    """Another process holds the registry's write lock (``BEGIN EXCLUSIVE``) for ``lock_s``
    while custody scans arrive (the plan has scans from 41 % on)."""

    name = "registry_locked"

    def __init__(self, lock_s: float = 15.0) -> None:
        self.lock_s = lock_s

    def inject(self, run: Run) -> None:
        conn = sqlite3.connect(run.registry_path, isolation_level=None, timeout=30)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            t0 = run.mark("registry_locked")
            time.sleep(self.lock_s)
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        run.fault_window = (t0, run.mark("registry_unlocked") + DETECT_S)


class SpoolDeleted(Fault):
    """Ingest crashes (SIGKILL) and someone deletes its spool files before it starts again.
    What the spool held and InfluxDB did not is gone (the documented exception); it must be
    detected, and nothing else may be lost."""

    name = "spool_deleted"
    covered = False
    stays_red = True  # spool_replaced, until an operator accepts the new spool

    def inject(self, run: Run) -> None:
        run.mark("ingest_killed")
        run.ingest.kill()
        t_del = run.mark("spool_deleted")
        # The most the deletion can cost: acknowledged by the broker yet not in InfluxDB now.
        run.notes["_at_risk_until"] = t_del
        run.notes["_stored_at_delete"] = set(run.stored())
        run.notes["spool_rows_at_delete"] = _pending_rows(run.spool_path)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{run.spool_path}{suffix}").unlink(missing_ok=True)
        run.notes["_log_offset"] = len(run.ingest.log_tail(None))
        run.start_ingest()
        # Detection is judged on everything after the restart (health or log).
        run.fault_window = (run.mark("ingest_restarted"), float("inf"))


class SpoolCorrupted(Fault):
    """Ingest is stopped cleanly (SIGTERM), its spool file is corrupted (every byte after the
    100-byte SQLite header overwritten), and ingest is started again."""

    name = "spool_corrupted"
    stays_red = True  # spool_corrupt, until an operator accepts the salvage

    def inject(self, run: Run) -> None:
        run.mark("ingest_terminated")
        rc, _ = run.ingest.terminate(timeout_s=120)
        run.notes["sigterm_exit_code"] = rc
        run.notes["spool_rows_at_corruption"] = _pending_rows(run.spool_path)
        size = run.spool_path.stat().st_size
        with run.spool_path.open("r+b") as f:
            f.seek(100)
            pattern = b"\xde\xad\xbe\xef" * 1024
            left = size - 100
            while left > 0:
                left -= f.write(pattern[: min(left, len(pattern))])
        run.notes["spool_corrupted_bytes"] = size - 100
        run.notes["_log_offset"] = len(run.ingest.log_tail(None))
        run.start_ingest()
        run.fault_window = (run.mark("ingest_restarted"), float("inf"))


def _pending_rows(spool: Path) -> int | None:
    """Rows the spool holds that InfluxDB has not confirmed (None if unreadable)."""
    try:
        conn = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def autosave_window(mosquitto: Mosquitto) -> dict[str, object]:
    """The broker's autosave setting as run: ``{"interval": n, "on_changes": bool}`` (seconds,
    or changes when ``autosave_on_changes`` is true); mosquitto's default is 1800 s."""
    text = "\n".join(
        p.read_text(errors="replace") for p in sorted(mosquitto.data_dir.glob("*.conf"))
    )
    interval = _last_setting(text, "autosave_interval")
    on_changes = _last_setting(text, "autosave_on_changes")
    return {
        "interval": int(interval) if interval else 1800,
        "on_changes": (on_changes or "false").lower() == "true",
    }


def _last_setting(text: str, key: str) -> str | None:
    found = re.findall(rf"^\s*{key}\s+(\S+)", text, flags=re.MULTILINE)
    return found[-1] if found else None


def stop_grace_s() -> float:
    """The ingest service's stop grace period in deploy/compose.yaml (the runtime's default,
    10 s, when it sets none): the bound a SIGTERM drain must keep."""
    text = (REPO / "deploy" / "compose.yaml").read_text()
    ingest = text[text.find("\n  ingest:") :]
    m = re.search(r"^\s+stop_grace_period:\s*(\d+)\s*(s|m)?\s*$", ingest, flags=re.MULTILINE)
    if not m:
        return 10.0
    return float(m.group(1)) * (60 if m.group(2) == "m" else 1)


FAULTS: dict[str, type[Fault]] = {
    f.name: f
    for f in (
        IngestKill,
        IngestTerm,
        BrokerRestart,
        BrokerKill,
        InfluxDown,
        DiskFull,
        RegistryLocked,
        SpoolDeleted,
        SpoolCorrupted,
    )
}
