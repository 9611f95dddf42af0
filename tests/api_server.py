"""Serving an app built by ``api.create_app`` on loopback with uvicorn, for the tests that
talk HTTP to it as a client would (one definition for all of them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from deploy.launcher import free_port


@contextmanager
def serving(app: FastAPI, *, start_timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``app`` (its lifespan included) in a uvicorn thread on a free loopback port; yields
    its base URL once it accepts requests, and stops it on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
