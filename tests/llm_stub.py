"""A local OpenAI-compatible chat-completions stub on 127.0.0.1 (real HTTP, no network).

    with StubServer() as stub:                 # start(): a free port, returns the base URL
        stub.push("hello", Reply(status=429), Reply(content="{...", finish_reason="length"))
        litellm.completion(model="openai/stub", api_base=stub.base_url, api_key="x", ...)
        stub.requests                          # JSON bodies received, in order

Replies are served from a FIFO queue; a plain string is a 200 answer with that content.
When the queue is empty the stub answers `default` (a 503 unless set).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """One canned answer: a completion (status 200) or an HTTP error (status >= 400)."""

    content: str = ""
    finish_reason: str = "stop"
    status: int = 200
    delay_s: float = 0.0


class StubServer:
    def __init__(self, default: Reply | None = None):
        self.default = default or Reply(status=503)
        self.requests: list[dict] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "call start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def push(self, *replies: str | Reply) -> None:
        with self._lock:
            self._queue.extend(r if isinstance(r, Reply) else Reply(content=r) for r in replies)

    def start(self) -> str:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "StubServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _answer(self, body: dict) -> tuple[int, dict, float]:
        with self._lock:
            self.requests.append(body)
            reply = self._queue.popleft() if self._queue else self.default
            n = len(self.requests)
        if reply.status >= 400:
            return reply.status, {"error": {"message": f"stub error {reply.status}", "type": "stub",
                                            "code": reply.status}}, reply.delay_s
        return 200, {
            "id": f"chatcmpl-stub-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                         "message": {"role": "assistant", "content": reply.content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }, reply.delay_s

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                status, payload, delay = stub._answer(body)
                if delay:
                    time.sleep(delay)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler
