"""Start a real PostgreSQL (Debian's package) on a free loopback port with a temporary cluster,
the way deploy/launcher.py starts mosquitto and influxd (its own module: the launcher is near
the size limit, and other work changes it). Used by the test fixtures (the registry
suite runs on SQLite and on PostgreSQL) and by anyone who wants a throwaway server.

PostgreSQL refuses to run as root, so a root caller runs ``initdb`` and ``postgres`` as an
unprivileged account (``postgres``, which Debian's package creates, else ``nobody``) in a cluster
directory that account owns. The cluster is for tests: ``trust`` authentication on 127.0.0.1
only, ``fsync=off`` and ``full_page_writes=off`` (a crash of the machine may lose the cluster;
a crash of the server loses nothing committed: commits still write the WAL to the kernel).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from deploy.launcher import ServiceError, _Service

__all__ = ["Postgres", "find_pg_binary"]

SUPERUSER = "coldchain"
DATABASE = "coldchain"


def find_pg_binary(name: str) -> str:
    """``initdb``, ``pg_ctl``, ``postgres``: first on PATH, then the newest
    /usr/lib/postgresql/<major>/bin (Debian installs the server binaries there, off PATH).
    Raises ServiceError naming scripts/bootstrap.sh if none is found."""
    found = shutil.which(name)
    if found:
        return found

    def major(path: str) -> int:
        m = re.search(r"/postgresql/(\d+)/bin/", path)
        return int(m.group(1)) if m else -1

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=major, reverse=True)
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    raise ServiceError(
        f"PostgreSQL's {name} is not installed: run scripts/bootstrap.sh (apt-get install "
        "postgresql)"
    )


def _service_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceError("running as root and neither a 'postgres' nor a 'nobody' account exists")


class Postgres(_Service):
    """A PostgreSQL server on ``127.0.0.1:<port>`` with database ``coldchain`` owned by the
    superuser ``coldchain`` (no password: ``trust`` on loopback).

    ``url`` is the SQLAlchemy URL of that database (``postgresql+psycopg://...``);
    ``url_for(name)`` names another database of the cluster; ``create_database(name,
    template=...)`` makes one (a copy of ``template`` if given: how the tests get a fresh
    migrated registry in milliseconds). ``stop()`` is a fast shutdown (SIGINT: open sessions
    are ended, the cluster is consistent); ``kill()`` is a crash (SIGKILL of the whole process
    group, then ``start()`` recovers from WAL).

    As root, the cluster lives in its own temporary directory owned by the service account
    (pytest's directories are mode 0700 and that account could not enter them); ``data_dir``
    then holds only the log. Otherwise the cluster is ``data_dir/cluster``.
    """

    name = "postgres"

    def __init__(
        self, data_dir: Path | None = None, port: int | None = None, *, fsync: bool = False
    ) -> None:
        super().__init__(data_dir, port)
        self.fsync = fsync
        self._account: pwd.struct_passwd | None = None
        self._own_root: Path | None = None
        if os.geteuid() == 0:
            self._account = _service_account()
            self._own_root = Path(tempfile.mkdtemp(prefix="coldchain-postgres-"))
            os.chown(self._own_root, self._account.pw_uid, self._account.pw_gid)
            root = self._own_root
        else:
            root = self.data_dir
        self.cluster_dir = root / "cluster"
        self.socket_dir = root / "socket"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``coldchain`` database."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def _popen_options(self) -> dict[str, Any]:
        if self._account is None:
            return {}
        return {
            "user": self._account.pw_uid,
            "group": self._account.pw_gid,
            "extra_groups": [],
            "cwd": str(self.cluster_dir.parent),
        }

    def _initdb(self) -> None:
        if (self.cluster_dir / "PG_VERSION").exists():
            return
        self.socket_dir.mkdir(exist_ok=True)
        if self._account is not None:
            os.chown(self.socket_dir, self._account.pw_uid, self._account.pw_gid)
        result = subprocess.run(
            [
                find_pg_binary("initdb"),
                "-D",
                str(self.cluster_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            **self._popen_options(),
        )
        if result.returncode != 0:
            raise ServiceError(
                f"initdb failed with {result.returncode}: "
                f"{(result.stdout + result.stderr).decode(errors='replace')[-2000:]}"
            )

    def _command(self) -> list[str]:
        self._initdb()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "200",
            "log_min_messages": "warning",
        }
        cmd = [find_pg_binary("postgres"), "-D", str(self.cluster_dir)]
        for key, value in options.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self._conninfo(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def start(self, timeout_s: float = 60.0) -> None:
        if self.running:
            return
        super().start(timeout_s)
        self.create_database(DATABASE, exist_ok=True)

    def create_database(
        self, name: str, *, template: str | None = None, exist_ok: bool = False
    ) -> str:
        """CREATE DATABASE ``name`` (a copy of ``template`` if given); returns its URL.
        The template must have no open connections (PostgreSQL refuses otherwise)."""
        import psycopg
        from psycopg import sql

        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        with psycopg.connect(self._conninfo(), autocommit=True) as conn:
            try:
                conn.execute(stmt)
            except psycopg.errors.DuplicateDatabase:
                if not exist_ok:
                    raise
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` WITH (FORCE): ends its sessions first."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self, timeout_s: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGTERM is a "smart" shutdown that waits for every client to leave; SIGINT is "fast".
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (one process group): a crash."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            # Backends left over would hold the shared memory and block the restart.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def cleanup(self) -> None:
        super().cleanup()
        if self._own_root is not None:
            shutil.rmtree(self._own_root, ignore_errors=True)
            self._own_root = None
