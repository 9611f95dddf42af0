"""Start a real mosquitto and a real influxd on free loopback ports, wait until each answers,
stop them cleanly. Used by ``coldchain demo``, the test fixtures and the benchmarks.

Each service gets its own data directory (temporary unless given) and a config generated from
the project's files in deploy/, so what the tests run is what production runs.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["Influxd", "Mosquitto", "ServiceError", "Services", "free_port"]

DEPLOY_DIR = Path(__file__).resolve().parent


class ServiceError(RuntimeError):
    """A service binary is missing, failed to start, or did not answer in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _ports(self) -> tuple[int, ...]:
        return (self.port,)

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
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
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
        """SIGKILL: for failure tests."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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


class Mosquitto(_Service):
    """mosquitto 2 with deploy/mosquitto/coldchain.conf, anonymous on a loopback port."""

    name = "mosquitto"

    def _command(self) -> list[str]:
        conf = self.data_dir / "mosquitto.conf"
        base = (DEPLOY_DIR / "mosquitto" / "coldchain.conf").read_text()
        conf.write_text(
            base
            + "\nper_listener_settings false\nallow_anonymous true\n"
            + f"persistence true\npersistence_location {self.data_dir}/\n"
            + f"log_dest file {self._log}\nlog_type error\nlog_type warning\n"
            + f"listener {self.port} 127.0.0.1\n"
        )
        return [_find_binary("mosquitto"), "-c", str(conf)]

    def _ready(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
        ):
            return True
        return False


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
