"""A scripted OpenAI-compatible chat server on 127.0.0.1 (a free port) for tests and benchmarks.

    with FakeLLM([Reply.json(PATTERN), Status(500), ...], default=Reply.json(PATTERN)) as fake:
        client = LLMClient(LLMConfig(base_url=fake.base_url, model="fake"))
        ...
        assert fake.count == 2

Each POST to `/v1/chat/completions` takes the next behaviour from the queue (then `default`), or asks
`handler(body, index)` when one is given. Behaviours: `Reply` (a chat completion whose content is the
given text; helpers for bare/fenced/prose JSON and invalid text), `Status` (any HTTP status, body and
headers, e.g. 500 or 429 with `Retry-After`), each with an optional `delay` before answering, and
`Drop` (close the connection without an answer). `delay` (constructor) is added to every request.

The server records, thread-safely: `count`, `bodies` (parsed JSON), `times` (monotonic arrival),
`headers`, and `max_in_flight` (the most requests being handled at the same moment). Delays wait on
an event that `close()` sets, so shutting down never waits for a sleeping handler.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

PATTERN = {
    "name": "nixos_gnome_keyring_fix",
    "description": "Fix GNOME keyring authentication errors in NixOS",
    "prerequisites": ["NixOS system", "GNOME desktop environment", "gnome-keyring package installed"],
    "steps": [
        "Enable gnome-keyring service in configuration.nix",
        "Add PAM configuration for automatic unlock",
        "Restart display-manager service",
        "Verify keyring is running with 'gnome-keyring-daemon --status'",
    ],
    "tags": ["nixos", "gnome", "authentication", "keyring", "fix"],
    "example": "services.gnome.gnome-keyring.enable = true;",
}


@dataclass
class Reply:
    content: str
    delay: float = 0.0

    @classmethod
    def json(cls, obj: Any = None, delay: float = 0.0) -> Reply:
        return cls(json.dumps(PATTERN if obj is None else obj), delay)

    @classmethod
    def fenced(cls, obj: Any = None, lang: str = "json") -> Reply:
        return cls(f"```{lang}\n{json.dumps(PATTERN if obj is None else obj, indent=2)}\n```")

    @classmethod
    def prose(cls, obj: Any = None) -> Reply:
        body = json.dumps(PATTERN if obj is None else obj, indent=2)
        return cls(f"Sure! Here is the pattern {{as requested}}:\n\n{body}\n\nLet me know if you need more.")

    @classmethod
    def invalid(cls) -> Reply:
        return cls('{"name": "broken", "description": "missing the rest", "steps": [')


@dataclass
class Status:
    code: int
    body: str = '{"error": {"message": "scripted failure"}}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def rate_limited(cls, retry_after: float = 1) -> Status:
        return cls(429, '{"error": {"message": "slow down"}}', {"Retry-After": f"{retry_after:g}"})


@dataclass
class Drop:
    """Close the connection without sending anything."""

    delay: float = 0.0


Behaviour = Reply | Status | Drop


class FakeLLM:
    def __init__(
        self,
        script: list[Behaviour] | None = None,
        default: Behaviour | None = None,
        handler: Callable[[dict[str, Any], int], Behaviour] | None = None,
        delay: float = 0.0,
        reject_response_format: bool = False,
    ):
        self._queue: deque[Behaviour] = deque(script or [])
        self.default = default if default is not None else Reply.json()
        self.handler = handler
        self.delay = delay
        self.reject_response_format = reject_response_format
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.bodies: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- recorded state ---------------------------------------------------------------------------
    @property
    def count(self) -> int:
        with self._lock:
            return len(self.bodies)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def push(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 65536  # headers and body in one send: no Nagle / delayed-ACK stall (40 ms)
            timeout = 30

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, wake sleeping handlers, cut idle keep-alive connections, join every thread."""
        self._stop.set()
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()  # joins the handler threads (block_on_close)
        self._server = None

    # -- request handling -------------------------------------------------------------------------
    def _next(self, body: dict[str, Any], index: int) -> Behaviour:
        if self.handler is not None:
            return self.handler(body, index)
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparseable": raw.decode("utf-8", "replace")}
        with self._lock:
            index = len(self.bodies)
            self.bodies.append(body)
            self.times.append(arrived)
            self.headers.append({k.lower(): v for k, v in req.headers.items()})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if req.path.rstrip("/") != "/v1/chat/completions":
                self._send(req, 404, '{"error": {"message": "not found"}}', {})
                return
            if self.reject_response_format and "response_format" in body:
                self._send(req, 400, '{"error": {"message": "response_format is not supported"}}', {})
                return
            behaviour = self._next(body, index)
            wait = self.delay + behaviour.delay
            if wait > 0 and self._stop.wait(wait):
                return  # shutting down
            if isinstance(behaviour, Drop):
                req.close_connection = True
                try:
                    req.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if isinstance(behaviour, Status):
                self._send(req, behaviour.code, behaviour.body, behaviour.headers)
                return
            completion = {
                "id": f"chatcmpl-fake-{index}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": behaviour.content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            }
            self._send(req, 200, json.dumps(completion), {})
        finally:
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, body: str, headers: dict[str, str]) -> None:
        data = body.encode()
        try:
            req.send_response(code)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                req.send_header(k, v)
            req.end_headers()
            req.wfile.write(data)
            req.wfile.flush()
        except OSError:  # the client gave up (timeout) and closed the connection
            req.close_connection = True


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (a port that was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
