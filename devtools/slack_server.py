"""A fake Slack incoming webhook: a real HTTP server on loopback that records what it is sent.

Tell it how to answer with ``mode``: ``"ok"`` (200 ``ok``), ``"error"`` (500) or ``"hang"``
(reads the request, then sends nothing until the server stops or ``hang_s`` passes).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

Mode = Literal["ok", "error", "hang"]
WEBHOOK_PATH = "/services/T000/B000/XXXX"


class FakeSlack:
    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.hang_s = 30.0
        self.posts: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._changed = threading.Condition()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # Hanging handlers must not keep the test process alive.
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-slack", daemon=True
        )

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}{WEBHOOK_PATH}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        # Let go of requests a previous test left hanging, then arm a fresh release.
        self._release.set()
        self._release = threading.Event()
        with self._changed:
            self.posts.clear()
            self.paths.clear()
        self.mode = "ok"

    def wait_for_posts(self, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The posts received, once there are at least ``count`` (or the timeout passes)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.posts) >= count, timeout=timeout_s)
            return list(self.posts)

    def _record(self, path: str, body: dict[str, Any]) -> None:
        with self._changed:
            self.paths.append(path)
            self.posts.append(body)
            self._changed.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                fake._record(self.path, body)
                if fake.mode == "hang":
                    fake._release.wait(timeout=fake.hang_s)
                    self.close_connection = True
                    return
                if fake.mode == "error":
                    self._answer(500, b"internal_error")
                else:
                    self._answer(200, b"ok")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler
