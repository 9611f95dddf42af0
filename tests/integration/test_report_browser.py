"""The HTML report in a real browser: Debian's headless Chromium loads it from the app served by
uvicorn on loopback (real influxd and registry: test_trace_series.py's data). The DOM has the
chart, the track, the legs table and the verdict; a screenshot is taken; and the page requested
nothing outside the app: the app's request log has only the page, and in Chromium's network log
(NetLog) every request made on the page's behalf (its network isolation key names the page's
site) went to the app.

Chromium still makes some background requests of its own despite the flags (the component
updater, the account check): they are not the page's, they carry another isolation key, and
the host resolver rules make them fail on this machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from PIL import Image
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from api import create_app
from coldchain.rules import load_presets
from coldchain.settings import Settings
from deploy.launcher import free_port
from registry import Registry
from tests.integration.test_trace_series import (
    # The fixtures influx and registry, used by name (hence the F811s below).
    influx,  # noqa: F401
    m,
    registry,  # noqa: F401
)
from tests.integration.test_trace_service import FLEET
from timeseries.client import InfluxClient

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate",
    "--disable-domain-reliability",
    "--no-pings",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    # Nothing but loopback resolves: a stray request fails instead of leaving the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


class _Server:
    """The app under uvicorn on a free loopback port, in a thread, logging request paths."""

    def __init__(self, app: FastAPI) -> None:
        self.requests: list[str] = []

        async def log(request: Request, call_next: RequestResponseEndpoint) -> Response:
            self.requests.append(request.url.path)
            return await call_next(request)

        app.add_middleware(BaseHTTPMiddleware, dispatch=log)
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 60 s"
            assert self.thread.is_alive(), "uvicorn stopped"
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def server(registry: Registry, influx: InfluxClient) -> Iterator[_Server]:  # noqa: F811
    # No API keys: the browser cannot send X-API-Key, and an open API is for loopback only,
    # which this is.
    app = create_app(
        Settings(),
        registry=registry,
        influx=influx,
        fleet=FLEET,
        profiles=load_presets(),
        clock_ms=lambda: m(200),
    )
    with _Server(app) as s:
        yield s


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: run scripts/bootstrap.sh (Debian chromium)"
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    profile.mkdir()
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


def _page_requests(path: Path, site: str) -> list[tuple[str, str]]:
    """(request type, URL) of every request Chromium made on behalf of a page of ``site``
    (``http://127.0.0.1``): the NetLog's URL_REQUEST_START_JOB events whose network isolation
    key's top-frame site is ``site``. A page's image, font, script or frame would be one of
    them, wherever it points."""
    log = json.loads(path.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    out = []
    for event in log["events"]:
        params = event.get("params") or {}
        if names.get(event["type"]) != "URL_REQUEST_START_JOB":
            continue
        top_site = str(params.get("network_isolation_key", "")).split(" ")[0]
        if top_site == site:
            out.append((str(params.get("request_type", "")), str(params["url"])))
    return out


def test_report_in_headless_chromium(server: _Server, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{server.port}/v1/shipments/SHP-S/report.html?tz=Asia/Shanghai"
    shot = tmp_path / "report.png"
    net_log = tmp_path / "net-log.json"
    _chromium(
        tmp_path,
        "--window-size=1200,2200",
        f"--screenshot={shot}",
        f"--log-net-log={net_log}",
        url,
    )
    dom = _chromium(tmp_path, "--dump-dom", url).stdout

    # The browser built the page: verdict, chart, track, legs table.
    assert '<span id="verdict-word">EXCURSION</span>' in dom
    assert '<svg class="chart" id="temperature-chart"' in dom
    assert dom.count('class="mean"') >= 1 and 'class="excursion"' in dom
    assert '<svg class="route" id="route-map"' in dom and 'class="track"' in dom
    assert '<table class="data" id="legs-table">' in dom and '<tr class="leg">' in dom
    assert "Asia/Shanghai" in dom

    # The screenshot is a page, not a blank or error screen.
    with Image.open(shot) as img:
        assert img.size == (1200, 2200)
        dark = sum(img.convert("L").histogram()[:200])  # pixels darker than light grey
    assert dark > 0.01 * 1200 * 2200

    # Nothing but the report itself (and the browser's own favicon probe) was asked of the app,
    # and whatever the page asked for went to the app.
    page = "/v1/shipments/SHP-S/report.html"
    assert set(server.requests) <= {page, "/favicon.ico"} and page in server.requests
    requested = _page_requests(net_log, "http://127.0.0.1")
    assert ("main frame", url) in requested
    app = f"127.0.0.1:{server.port}"
    assert [u for _, u in requested if urlsplit(u).netloc != app] == []
