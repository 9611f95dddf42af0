"""Real receivers for alert tests, on loopback: an HTTP server (webhooks and chat robots) and
an SMTP server (aiosmtpd). Each records what it accepted; the HTTP one can refuse the first N
requests (HTTP 503) to prove retries."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from deploy.launcher import free_port

__all__ = ["HttpReceiver", "Request", "SmtpReceiver"]


@dataclass(frozen=True)
class Request:
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """POSTs to ``url``: the first ``fail_first`` get 503, the rest 200 with ``answer`` (JSON)."""

    def __init__(self, *, fail_first: int = 0, answer: dict[str, Any] | None = None) -> None:
        self.accepted: list[Request] = []
        self.refused: list[Request] = []
        self.fail_first = fail_first
        self.answer = json.dumps(answer or {"ok": True}).encode()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                req = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver._lock:
                    refuse = len(receiver.refused) < receiver.fail_first
                    (receiver.refused if refuse else receiver.accepted).append(req)
                self.send_response(503 if refuse else 200)
                out = b"busy" if refuse else receiver.answer
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def requests(self, path_prefix: str = "/") -> list[Request]:
        with self._lock:
            return [r for r in self.accepted if r.path.startswith(path_prefix)]

    def keys(self, path_prefix: str = "/") -> Counter[str]:
        """Idempotency keys of the accepted requests (webhook: the body's ``key``)."""
        return Counter(r.json()["key"] for r in self.requests(path_prefix))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler:
    def __init__(self, owner: SmtpReceiver) -> None:
        self.owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.owner._lock:
            self.owner.messages.append((list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """An SMTP server on loopback (aiosmtpd); ``messages``: (recipients, message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def keys(self) -> Counter[str]:
        """``X-Coldchain-Key`` of every message received."""
        with self._lock:
            return Counter(str(m["X-Coldchain-Key"]) for _, m in self.messages)

    def close(self) -> None:
        self._controller.stop()
