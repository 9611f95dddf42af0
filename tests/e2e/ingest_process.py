"""A real ``coldchain ingest`` subprocess for the durability tests: start it, read its
``/healthz`` and ``/metrics``, stop it with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from coldchain.settings import Settings
from deploy.launcher import free_port
from tests.harness import settings_env, wait_for

ROOT = Path(__file__).resolve().parents[2]


def unlabelled(text: str) -> dict[str, float]:
    """``coldchain_ingest_*`` unlabelled samples of a scrape, by family name without the
    prefix (counters without ``_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("coldchain_ingest_"):
            for sample in family.samples:
                if not sample.labels and not sample.name.endswith("_created"):
                    out[family.name.removeprefix("coldchain_ingest_")] = sample.value
    return out


class IngestProcess:
    """``coldchain ingest`` with ``settings`` (plus ``extra_env``), logging to ``log``."""

    def __init__(self, settings: Settings, log: Path, **extra_env: str) -> None:
        self.metrics_port = free_port()
        self.env = settings_env(settings) | {"COLDCHAIN_METRICS_PORT": str(self.metrics_port)}
        self.env |= extra_env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestProcess:
        started = self.log.read_text().count("coldchain ingest:") if self.log.exists() else 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "ingest"],
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            cwd=ROOT,
        )
        ready = wait_for(lambda: self.log.read_text().count("coldchain ingest:") > started, 30)
        assert ready, self.log.read_text()[-3000:]
        return self

    def healthz(self) -> tuple[int, str]:
        """(HTTP status, body); (0, error) while the server does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz") as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def metrics(self) -> dict[str, float]:
        """Unlabelled Prometheus samples by family name (``coldchain_ingest_`` stripped; a
        counter's family name has no ``_total``), parsed by prometheus_client."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url) as r:
            return unlabelled(r.read().decode())

    def sigterm(self, timeout_s: float) -> int:
        """SIGTERM and wait up to ``timeout_s`` for the exit status (TimeoutExpired if not)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
