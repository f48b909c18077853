"""A small client for an OpenAI-compatible chat endpoint (llama.cpp server, vLLM, Ollama, OpenAI).

`LLMClient.complete_many(list_of_message_lists)` sends up to `max_concurrency` requests at once (a thread
pool over one pooled `httpx.Client`, so it works from plain synchronous code such as a Dagster op)
and returns one `LLMResult` or `LLMError` per input, in input order. It never raises for what a
server or network does; it raises only for programming errors.

Per request (`POST {base_url}/chat/completions`, content read from `choices[0].message.content`):

| outcome | what happens |
|---|---|
| 200 with a chat completion | `LLMResult` |
| 200 with anything else | `LLMError(kind="malformed_response")`, no retry |
| timeout (connect/read/write/pool, each `timeout_seconds`) | retry; finally `kind="timeout"` |
| connection refused/reset, protocol error | retry; finally `kind="connection"` |
| 429 | retry after `Retry-After` (seconds or HTTP date, capped at `max_retry_after_seconds`), else backoff |
| 5xx | retry with backoff; finally `kind="http_status"` |
| 400 mentioning `response_format` while `json_mode` | resend once without it, and stop sending it for the client's lifetime |
| other 4xx | `kind="http_status"` at once (a bad request does not get better by repeating it) |

Backoff before retry n (1-based) is `backoff_seconds * 2**(n-1)`, capped at `backoff_cap_seconds`
(no jitter: a local server, a handful of workers). At most `max_retries` retries per request, so
`max_retries + 1` attempts (+1 for the one-time `response_format` downgrade). Every attempt counts in
`LLMClient.calls` (thread-safe). The API key is a `SecretStr`: not in reprs, not in logs; user:password
in `base_url` is sent as basic auth and kept out of request URLs (so out of httpx's own log lines).

Proxies: for a loopback `base_url` (127.0.0.1, localhost, ::1) proxy environment variables are
ignored (a proxy can never reach the machine's own loopback); otherwise httpx honours them.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

log = logging.getLogger(__name__)

Messages = list[dict[str, Any]]
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class LLMConfig(BaseModel):
    """Where the chat endpoint is and how hard to try. Frozen; unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "http://127.0.0.1:8080/v1"
    model: str = "qwen2.5-coder-7b-instruct"
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_concurrency: int = Field(default=4, ge=1, le=64)
    max_retries: int = Field(default=3, ge=0, le=10)
    backoff_seconds: float = Field(default=0.5, ge=0)
    backoff_cap_seconds: float = Field(default=8.0, ge=0)
    max_retry_after_seconds: float = Field(default=30.0, ge=0)
    json_mode: bool = True
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_tokens: int = Field(default=800, ge=1)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL such as http://127.0.0.1:8080/v1, got {value!r}")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        return min(self.backoff_cap_seconds, self.backoff_seconds * 2 ** (retry - 1))

    @property
    def endpoint_for_logs(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


@dataclass(frozen=True)
class LLMResult:
    content: str
    model: str  # as the server named it (falls back to the configured model)
    attempts: int
    elapsed_seconds: float
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


class LLMError(Exception):
    """A request that did not produce a completion. `kind`: timeout, http_status, connection, malformed_response."""

    KINDS = ("timeout", "http_status", "connection", "malformed_response")

    def __init__(self, kind: str, message: str, attempts: int, status_code: int | None = None):
        if kind not in self.KINDS:
            raise ValueError(f"unknown LLMError kind {kind!r}")
        super().__init__(f"{kind}: {message} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.kind = kind
        self.message = message
        self.attempts = attempts
        self.status_code = status_code

    @property
    def transient(self) -> bool:
        """Could a later run succeed? True for all but a 4xx other than 408/429."""
        if self.kind == "http_status" and self.status_code is not None:
            return self.status_code >= 500 or self.status_code in (408, 429)
        return True


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class LLMClient:
    """Thread-safe; reuse one per run. `close()` (or `with`) releases the connection pool."""

    def __init__(self, config: LLMConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self._lock = threading.Lock()
        self._calls = 0
        self._json_mode = config.json_mode
        headers = {"Content-Type": "application/json"}
        if config.api_key is not None and config.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        parts = urlsplit(config.base_url)
        host = parts.hostname or ""
        auth = None
        if (
            parts.username is not None
        ):  # credentials in the URL: send them, but keep them out of URLs (and logs)
            if "Authorization" not in headers:
                auth = httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
            netloc = parts.netloc.rsplit("@", 1)[1]
            base_url = parts._replace(netloc=netloc).geturl()
        else:
            base_url = config.base_url
        self._http = httpx.Client(
            transport=transport,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(config.timeout_seconds),
            limits=httpx.Limits(
                max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency
            ),
            trust_env=host not in _LOOPBACK_HOSTS,
        )
        self._url = f"{base_url}/chat/completions"

    def __repr__(self) -> str:
        return f"LLMClient(endpoint={self.config.endpoint_for_logs!r}, model={self.config.model!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def calls(self) -> int:
        """HTTP attempts made so far (every retry counts)."""
        with self._lock:
            return self._calls

    @property
    def json_mode(self) -> bool:
        """Still sending `response_format`? False once the server refused it."""
        with self._lock:
            return self._json_mode

    def _count_call(self) -> None:
        with self._lock:
            self._calls += 1

    def _payload(self, messages: Messages, json_mode: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            "stream": False,
        }
        if json_mode:
            payload["response_format"] = {"type": "json_object"}
        return payload

    def _disable_json_mode(self) -> None:
        with self._lock:
            if self._json_mode:
                log.warning(
                    "LLM endpoint %s refused response_format; sending requests without it from now on",
                    self.config.endpoint_for_logs,
                )
            self._json_mode = False

    def complete(self, messages: Messages) -> LLMResult:
        """One chat completion, with retries; raises `LLMError` when it cannot get one."""
        cfg = self.config
        attempts = 0
        retries = 0
        downgraded = False
        started = time.monotonic()
        while True:
            attempts += 1
            self._count_call()
            json_mode = self.json_mode
            delay: float | None = None
            try:
                resp = self._http.post(self._url, json=self._payload(messages, json_mode))
            except httpx.TimeoutException as exc:
                error = LLMError("timeout", f"{type(exc).__name__} after {cfg.timeout_seconds:g}s", attempts)
            except httpx.TransportError as exc:
                error = LLMError("connection", f"{type(exc).__name__}: {_short(str(exc), 120)}", attempts)
            else:
                status = resp.status_code
                if status == 200:
                    return self._result(resp, attempts, started)
                body = _short(resp.text)
                error = LLMError("http_status", f"HTTP {status}: {body}", attempts, status_code=status)
                if status == 400 and json_mode and "response_format" in resp.text and not downgraded:
                    self._disable_json_mode()
                    downgraded = True
                    continue  # the downgrade is not a retry: it does not use up the retry budget
                if status == 429:
                    after = _retry_after_seconds(resp.headers.get("retry-after"))
                    if after is not None:
                        delay = min(after, cfg.max_retry_after_seconds)
                elif status < 500:
                    raise error
            if retries >= cfg.max_retries:
                raise error
            retries += 1
            if delay is None:
                delay = cfg.backoff(retries)
            log.warning(
                "LLM request to %s failed (%s); retry %d/%d in %.2fs",
                cfg.endpoint_for_logs,
                error.message[:160],
                retries,
                cfg.max_retries,
                delay,
            )
            if delay > 0:
                time.sleep(delay)

    def _result(self, resp: httpx.Response, attempts: int, started: float) -> LLMResult:
        try:
            data = resp.json()
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(
                "malformed_response", f"not a chat completion: {_short(resp.text, 200)}", attempts
            ) from None
        if not isinstance(content, str):
            raise LLMError("malformed_response", "choices[0].message.content is not text", attempts)
        return LLMResult(
            content=content,
            model=str(data.get("model") or self.config.model),
            attempts=attempts,
            elapsed_seconds=time.monotonic() - started,
            finish_reason=choice.get("finish_reason"),
            usage=data.get("usage") or {},
        )

    def _complete_or_error(self, messages: Messages) -> LLMResult | LLMError:
        try:
            return self.complete(messages)
        except LLMError as exc:
            return exc

    def complete_many(self, message_lists: list[Messages]) -> list[LLMResult | LLMError]:
        """One result or error per message list, in input order; up to `max_concurrency` in flight."""
        if not message_lists:
            return []
        workers = min(self.config.max_concurrency, len(message_lists))
        if workers == 1:
            return [self._complete_or_error(m) for m in message_lists]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
            return list(pool.map(self._complete_or_error, message_lists))
