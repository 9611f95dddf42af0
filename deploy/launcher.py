"""Start a real mosquitto and a real influxd on free loopback ports, wait until each answers,
stop them cleanly. Used by ``coldchain demo``, the test fixtures and the benchmarks.

Each service gets its own data directory (temporary unless given) and a config generated from
the project's files in deploy/, so what the tests run is what production runs.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Influxd", "Mosquitto", "ServiceError", "Services", "TlsFiles", "free_port"]

DEPLOY_DIR = Path(__file__).resolve().parent
MOSQUITTO_CONFIG_DIR = DEPLOY_DIR / "mosquitto"


class ServiceError(RuntimeError):
    """A service binary is missing, failed to start, or did not answer in time."""


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port *below* the kernel's ephemeral range. A service keeps its port
    across a restart (a broker restart test, influxd keeping its data): a port from the
    ephemeral range could be taken meanwhile as the local port of any outgoing connection on
    the machine, and the restart would fail with "address in use"."""
    low = min(_ephemeral_low(), 65536)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10_000, low) if low > 11_000 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise ServiceError(f"no free loopback port between 10000 and {low}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _find_binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise ServiceError(f"{name} is not installed: run scripts/bootstrap.sh (apt-get install)")
    return found


class _Service:
    name = "service"

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"coldchain-{self.name}-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = self.data_dir / f"{self.name}.log"
        self._atexit_registered = False

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _ports(self) -> tuple[int, ...]:
        return (self.port,)

    def _popen_options(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments (e.g. the account to run as)."""
        return {}

    def start(self, timeout_s: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        # Readiness is "the port answers": make sure nobody else answers it.
        for port in self._ports():
            if not _port_free(port):
                raise ServiceError(f"{self.name}: port {port} on 127.0.0.1 is already in use")
        cmd = self._command()
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._popen_options(),
            )
        if not self._atexit_registered:
            # In its own session the service would outlive a caller that dies without
            # cleanup (a failed test, an interrupted demo).
            atexit.register(self.stop, 5.0)
            self._atexit_registered = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"{self.name} did not answer within {timeout_s} s: {self.log_tail()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL, for failure tests: no chance to save anything. ``start()`` runs the service
        again on the same port with the same data directory."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (None otherwise): for CPU accounting."""
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def log_tail(self, n_bytes: int = 2000) -> str:
        try:
            return self._log.read_bytes()[-n_bytes:].decode(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for the broker's TLS listener: the CA devices trust, the server certificate
    (naming 127.0.0.1 for the launcher) and its private key."""

    ca: Path
    cert: Path
    key: Path


class Mosquitto(_Service):
    """mosquitto 2 running production's configuration on a loopback port, with a working store.

    The config is generated from deploy/mosquitto/mosquitto.conf and the coldchain.conf it
    includes; only these lines differ (``config_overrides()`` lists them):

    - ``listener``: ``<port> 127.0.0.1`` instead of 1883 on every interface;
    - ``persistence_location``: ``data_dir`` instead of /mosquitto/data;
    - ``log_dest``: stderr, which the launcher appends to ``data_dir/mosquitto.log``
      (unbuffered, so failures can be read while the broker runs);
    - credentials: anonymous access on loopback, no password file or ACL and client ids as
      sent (``use_username_as_clientid false``), unless ``credentials={"user": "password"}`` is
      given: then production's settings with a password file of those users and
      deploy/mosquitto/acl (or ``acl``, the text of another ACL file); or unless
      ``password_file`` (and ``acl_file``, default deploy/mosquitto/acl) name files written by
      ``coldchain broker users``, which the broker then reads in place;
    - the TLS listener (production's second ``listener``, 8883): left out, unless
      ``tls=TlsFiles(...)`` is given: then ``listener <tls_port> 127.0.0.1`` with those files;
    - ``user``: the account that launched it, which owns ``data_dir``. Production's broker
      starts as root and drops to ``mosquitto``, which owns its data directory (the image's
      entrypoint and Debian's package chown it); a temporary directory here belongs to the
      launching account and sits under directories (pytest's, mode 0700) that another account
      cannot enter, so the broker runs as its owner instead. ``user=`` chooses another account
      (a test of a store the broker cannot write).

    ``start()`` asks the broker to save its store (SIGUSR1) and waits for ``mosquitto.db`` to be
    rewritten: a broker that cannot write its store raises ``ServiceError`` naming the
    directory instead of running without persistence. ``restart()`` is a graceful restart
    (SIGTERM, which saves the store; same port, same data); ``kill()`` then ``start()`` is a
    crash (SIGKILL: whatever changed since the last autosave is lost).
    """

    name = "mosquitto"
    store_name = "mosquitto.db"

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        *,
        credentials: Mapping[str, str] | None = None,
        acl: str | None = None,
        user: str | None = None,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        tls: TlsFiles | None = None,
        tls_port: int | None = None,
    ) -> None:
        super().__init__(data_dir, port)
        if password_file is not None and credentials is not None:
            raise ValueError("give credentials or password_file, not both")
        self.credentials = dict(credentials) if credentials is not None else None
        self.acl = acl
        self.password_file = password_file
        self.acl_file = acl_file
        self.tls = tls
        self.tls_port = (tls_port or free_port()) if tls is not None else None
        self.user = user or pwd.getpwuid(os.geteuid()).pw_name

    @property
    def store_path(self) -> Path:
        """The broker's persistence file (written at each autosave, SIGUSR1 and shutdown)."""
        return self.data_dir / self.store_name

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    def _ports(self) -> tuple[int, ...]:
        return (self.port,) if self.tls_port is None else (self.port, self.tls_port)

    def config_overrides(self) -> dict[str, str | None]:
        """Production setting -> the line the launcher runs instead (None: left out).
        ``listener`` is the first (plain) listener; the second (TLS) one is ``tls_listener``."""
        d = self.data_dir
        overrides: dict[str, str | None] = {
            "listener": f"listener {self.port} 127.0.0.1",
            "persistence_location": f"persistence_location {d}/",
            "log_dest": "log_dest stderr",
            "include_dir": f"include_dir {d / 'conf.d'}",
            "user": f"user {self.user}",
        }
        if self.password_file is not None:
            acl_file = self.acl_file or MOSQUITTO_CONFIG_DIR / "acl"
            overrides |= {
                "password_file": f"password_file {self.password_file}",
                "acl_file": f"acl_file {acl_file}",
            }
        elif self.credentials is None:
            overrides |= {
                "allow_anonymous": "allow_anonymous true",
                "password_file": None,
                "acl_file": None,
                # Anonymous clients have no username to take as their client id.
                "use_username_as_clientid": "use_username_as_clientid false",
            }
        else:
            overrides |= {
                "password_file": f"password_file {d / 'passwd'}",
                "acl_file": f"acl_file {d / 'acl'}",
            }
        tls = self.tls
        overrides |= {
            "tls_listener": f"listener {self.tls_port} 127.0.0.1" if tls else None,
            "cafile": f"cafile {tls.ca}" if tls else None,
            "certfile": f"certfile {tls.cert}" if tls else None,
            "keyfile": f"keyfile {tls.key}" if tls else None,
        }
        if tls is None:
            overrides["tls_version"] = None
        return overrides

    def _write_config(self) -> Path:
        d = self.data_dir
        conf_d = d / "conf.d"
        conf_d.mkdir(exist_ok=True)
        shutil.copyfile(MOSQUITTO_CONFIG_DIR / "coldchain.conf", conf_d / "coldchain.conf")
        overrides = self.config_overrides()
        lines = []
        used: set[str] = set()
        listeners = 0
        for line in (MOSQUITTO_CONFIG_DIR / "mosquitto.conf").read_text().splitlines():
            key = line.split(maxsplit=1)[0] if line.strip() else ""
            if key == "listener":
                listeners += 1
                key = "listener" if listeners == 1 else "tls_listener"
            if key in overrides:
                # Every occurrence: a listener setting such as use_username_as_clientid is
                # repeated after each listener.
                replacement = overrides[key]
                used.add(key)
                lines.append(f"# launcher override of: {line}")
                if replacement is not None:
                    lines.append(replacement)
            else:
                lines.append(line)
        for key, value in overrides.items():
            if key not in used and value is not None:
                lines += ["# launcher override (not set in production)", value]
        if self.credentials is not None:
            self._write_passwd(d / "passwd", self.credentials)
            acl = self.acl if self.acl is not None else (MOSQUITTO_CONFIG_DIR / "acl").read_text()
            (d / "acl").write_text(acl)
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path

    @staticmethod
    def _write_passwd(path: Path, credentials: Mapping[str, str]) -> None:
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        tool = _find_binary("mosquitto_passwd")
        for username, password in credentials.items():
            subprocess.run(
                [tool, "-b", str(path), username, password], check=True, capture_output=True
            )

    def _command(self) -> list[str]:
        return [_find_binary("mosquitto"), "-c", str(self._write_config())]

    def _ready(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
        ):
            return True
        return False

    def start(self, timeout_s: float = 30.0) -> None:
        if self.running:
            return
        super().start(timeout_s)
        try:
            self.save_store(timeout_s)
        except ServiceError:
            self.stop()
            raise

    def _store_version(self) -> tuple[int, int] | None:
        try:
            st = self.store_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _store_error(self, log_from: int) -> ServiceError:
        return ServiceError(
            f"mosquitto (running as user {self.user!r}) cannot write its store in "
            f"{self.data_dir}: persistence would be silently off. Log: "
            f"{self._log_since(log_from).strip() or self.log_tail()}"
        )

    def save_store(self, timeout_s: float = 30.0) -> None:
        """Make the broker write its store now (SIGUSR1) and wait until it is rewritten.

        Raises ServiceError naming the data directory when the broker cannot write it (its log
        says why, e.g. "Permission denied")."""
        if self.proc is None or not self.running:
            raise ServiceError("mosquitto is not running")
        log_from = self._log_size()
        before = self._store_version()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # mosquitto writes mosquitto.db.new, fsyncs and renames it: a new inode.
            if self._store_version() not in (None, before):
                return
            if ": Error: " in self._log_since(log_from):
                break
            time.sleep(0.02)
        raise self._store_error(log_from)

    def restart(self, timeout_s: float = 30.0) -> None:
        """Graceful restart: SIGTERM (mosquitto saves its store on the way out), then start on
        the same port with the same data directory. Raises ServiceError if the store was not
        saved or the broker does not come back."""
        log_from = self._log_size()
        before = self._store_version()
        self.stop(timeout_s)
        if self._store_version() in (None, before):
            raise self._store_error(log_from)
        self.start(timeout_s)

    def _log_size(self) -> int:
        try:
            return self._log.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with open(self._log, "rb") as f:
                f.seek(offset)
                return f.read(4000).decode(errors="replace")
        except OSError:
            return ""


class Influxd(_Service):
    """InfluxDB 1.x from Debian's package, config from deploy/influxdb/influxdb.conf."""

    name = "influxd"

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.rpc_port = free_port()

    def _ports(self) -> tuple[int, ...]:
        return (self.port, self.rpc_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        template = (DEPLOY_DIR / "influxdb" / "influxdb.conf").read_text()
        conf = self.data_dir / "influxdb.conf"
        conf.write_text(
            template.replace("{data_dir}", str(self.data_dir))
            .replace("{http_port}", str(self.port))
            .replace("{rpc_port}", str(self.rpc_port))
        )
        return [_find_binary("influxd"), "-config", str(conf)]

    def _ready(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
            conn.request("GET", "/ping")
            ok = conn.getresponse().status == 204
            conn.close()
            return ok
        except OSError:
            return False

    def query(self, q: str, database: str | None = None) -> dict[str, object]:
        """Run InfluxQL (POST /query) and return the decoded JSON; for setup and checks."""
        import json
        import urllib.parse

        params = {"q": q, "epoch": "ms"}
        if database:
            params["db"] = database
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(
            "POST",
            "/query",
            body=urllib.parse.urlencode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        if resp.status != 200:
            raise ServiceError(f"influxd query failed with {resp.status}: {body[:300]!r}")
        result: dict[str, object] = json.loads(body)
        return result


class Services:
    """Both services for a demo or test session: ``with Services() as s: s.mqtt_port``."""

    def __init__(self, root: Path | None = None) -> None:
        self.mosquitto = Mosquitto(root / "mosquitto" if root else None)
        self.influxd = Influxd(root / "influxd" if root else None)

    def start(self) -> Services:
        self.mosquitto.start()
        self.influxd.start()
        return self

    def stop(self) -> None:
        self.mosquitto.cleanup()
        self.influxd.cleanup()

    def __enter__(self) -> Services:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
