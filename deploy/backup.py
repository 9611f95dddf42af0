"""Back up and restore the registry (SQLite) and the InfluxDB database: ``coldchain backup`` and
``coldchain restore`` (docs/operations.md, "Backup and restore").

- Registry: SQLite's online backup API (``sqlite3.Connection.backup``), a consistent copy
  while ingest and the API keep writing (https://www.sqlite.org/backup.html); the copy is
  checked with ``PRAGMA integrity_check``. A PostgreSQL registry is backed up with its own
  tools (pg_dump), which this command names instead of pretending.
- InfluxDB 1.x: ``influxd backup -portable`` / ``influxd restore -portable`` over the RPC
  address (``bind-address``, 8088 by default; InfluxDB >= 1.5), a consistent snapshot of one
  database while it is written.

A backup directory holds ``registry.sqlite3``, ``influx/`` and ``manifest.json`` (what, when,
sha256 of the registry copy). Restore refuses to overwrite: the registry file must not exist
and the database must not (influxd refuses), so a restore never mixes old and new data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from coldchain.exceptions import ColdchainError
from coldchain.settings import Settings

__all__ = ["BackupError", "BackupManifest", "backup", "registry_path", "restore"]

REGISTRY_FILE = "registry.sqlite3"
INFLUX_DIR = "influx"
MANIFEST = "manifest.json"


class BackupError(ColdchainError):
    """The backup or restore cannot be done: a missing tool, a non-empty target, a registry
    that is not SQLite, a failed influxd run (its message is included)."""


@dataclass(frozen=True)
class BackupManifest:
    """What a backup directory holds. Times are ISO 8601 UTC."""

    created_utc: str
    registry_sha256: str | None
    influx_database: str | None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"


def registry_path(url: str) -> Path:
    """The file of a SQLite registry URL; BackupError for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise BackupError(
            f"the registry at {parsed.render_as_string(hide_password=True)} is not a SQLite "
            "file: back it up with the database's own tools (PostgreSQL: pg_dump -Fc)"
        )
    return Path(parsed.database)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sqlite_copy(src: Path, dst: Path) -> None:
    """Online backup of ``src`` into a new ``dst``, then an integrity check of the copy."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
        ok = target.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup of {src} to {dst} failed: {exc}") from exc
    finally:
        source.close()
        target.close()
    if ok is None or ok[0] != "ok":
        raise BackupError(f"the copy {dst} of {src} fails its integrity check: {ok}")


def _influxd(args: list[str]) -> None:
    tool = shutil.which("influxd") or "/usr/bin/influxd"
    if not Path(tool).exists():
        raise BackupError("influxd is not installed here: run the backup on the InfluxDB host")
    done = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise BackupError(f"influxd {args[0]} failed: {detail[-1] if detail else 'no output'}")


def backup(
    settings: Settings, out: Path, *, influx_rpc: str, influx: bool = True
) -> BackupManifest:
    """Back up the registry and (unless ``influx`` is False) the InfluxDB database into
    ``out``, which must not exist or be empty. ``influx_rpc`` is influxd's RPC address
    (host:port). Raises BackupError."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: back up into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    src = registry_path(settings.registry_url)
    if not src.exists():
        raise BackupError(f"no registry at {src} (COLDCHAIN_REGISTRY_URL)")
    _sqlite_copy(src, out / REGISTRY_FILE)
    database = None
    if influx:
        database = settings.influx.database
        _influxd(
            [
                "backup",
                "-portable",
                "-host",
                influx_rpc,
                "-database",
                database,
                str(out / INFLUX_DIR),
            ]
        )
    manifest = BackupManifest(
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        registry_sha256=_sha256(out / REGISTRY_FILE),
        influx_database=database,
    )
    (out / MANIFEST).write_text(manifest.to_json())
    return manifest


def _wait_queryable(settings: Settings, timeout_s: float) -> None:
    """influxd enables restored shards a moment after ``restore`` returns ("shard is
    disabled" meanwhile): wait until a read of every measurement succeeds."""
    params = {"q": "SELECT * FROM /.*/ LIMIT 1", "db": settings.influx.database}
    url = f"{settings.influx.url.rstrip('/')}/query?{urllib.parse.urlencode(params)}"
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = resp.read().decode()
            if '"error"' not in body:
                return
            last = body[:200]
        except OSError as exc:  # URLError is an OSError
            last = str(exc)
        time.sleep(0.1)
    raise BackupError(f"restored database does not answer queries after {timeout_s} s: {last}")


def restore(
    settings: Settings, src: Path, *, influx_rpc: str, influx: bool = True, timeout_s: float = 60
) -> BackupManifest:
    """Restore a backup made by ``backup`` into an empty place: the registry file must not
    exist (stop ingest and the API, move the old one aside) and the InfluxDB database must
    not exist (influxd refuses otherwise). Checks the registry copy's sha256 against the
    manifest first. Raises BackupError."""
    try:
        data = json.loads((src / MANIFEST).read_text())
        manifest = BackupManifest(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise BackupError(f"{src} is not a coldchain backup ({MANIFEST}): {exc}") from exc
    copy = src / REGISTRY_FILE
    if _sha256(copy) != manifest.registry_sha256:
        raise BackupError(f"{copy} does not match its manifest's sha256: damaged backup")
    target = registry_path(settings.registry_url)
    if target.exists() or Path(f"{target}-wal").exists():
        raise BackupError(
            f"a registry exists at {target}: stop ingest and the API and move it aside first"
        )
    if influx and manifest.influx_database is not None:
        _influxd(
            ["restore", "-portable", "-host", influx_rpc, "-db", manifest.influx_database]
            + (
                ["-newdb", settings.influx.database]
                if settings.influx.database != manifest.influx_database
                else []
            )
            + [str(src / INFLUX_DIR)]
        )
        _wait_queryable(settings, timeout_s)
    target.parent.mkdir(parents=True, exist_ok=True)
    _sqlite_copy(copy, target)
    return manifest
