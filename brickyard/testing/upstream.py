"""A fault-injecting fake OpenAI-compatible upstream served over real HTTP on 127.0.0.1.

Used by tests and benchmarks to exercise retries, fallbacks, rate limits and per-row errors::

    with FakeUpstream(latency_s=0.0, rpm_limit=None) as up:
        client = openai.OpenAI(base_url=up.base_url, api_key="sk-test-1234")

Endpoints (the ``/v1`` prefix is optional):

- ``POST /v1/chat/completions``: answers ``"echo: " + <last user message>``; when ``response_format``
  is ``json_schema`` (or ``json_object``) the content is the JSON string ``{"echo": <last user message>}``.
  ``"stream": true`` answers Server-Sent Events in OpenAI's chunk format, ending with ``data: [DONE]``,
  plus a usage chunk (``choices: []``) when ``stream_options.include_usage`` is set. ``n`` is honoured.
  Usage: ``prompt_tokens = len(all message text) // 4`` and ``completion_tokens = len(content) // 4``
  (each at least 1). ``model`` is always the configured model name.
- ``POST /v1/embeddings``: deterministic unit vectors of dimension 8 (or ``dimensions``) from a SHA-256
  of each input; ``encoding_format: "base64"`` gives little-endian float32 like OpenAI.
- ``GET /v1/models`` and ``GET /v1/models/{id}``.
- OpenAI's Files and Batch API and Anthropic's Messages and Message Batches: see ``brickyard.testing.batches``
  (``up.batches`` holds their state, counters and faults).

Fault markers, read from the last user message (for embeddings: from all inputs joined), so one batch
can mix good and bad rows:

- ``[fail:500]``, ``[fail:503]`` (any 5xx): that status with ``{"error": {"message", "type": "server_error",
  "param": null, "code": null}}``.
- ``[fail:400]`` (any other 4xx): ``invalid_request_error``. ``[fail:404]`` gives ``model_not_found``;
  ``[fail:429]`` behaves like a rate limit (``Retry-After``).
- ``[fail:401]``: 401 ``invalid_api_key`` whose message echoes the received bearer token partially, as
  OpenAI does (``Incorrect API key provided: sk-te****1234``) -- callers must scrub it from their errors.
- ``[flaky:N]``: the first N requests carrying that exact message text get 500, later ones succeed.
- ``[429:N]``: the first N requests with that exact text get 429 ``rate_limit_exceeded`` with
  ``Retry-After: <retry_after_s>`` (and ``retry-after-ms``); later ones succeed.
- ``[slow:S]``: sleep S seconds (float) before answering, on top of ``latency_s``.
- ``[badjson]``: 200 with ``Content-Type: application/json`` and a truncated, invalid JSON body.
- ``[ctx]``: 400 ``context_length_exceeded`` ("This model's maximum context length is ...").
- ``[nostream]``: ignore ``"stream": true`` and answer one plain JSON completion (as some servers do).

Precedence when several markers appear: ctx, fail, flaky, 429, badjson; ``slow`` adds to any answer.

``rpm_limit`` admits at most that many requests in any sliding 60 s window (rejected requests do not
count); the next one gets 429 with ``Retry-After`` = seconds until a slot frees (float as string).
It is checked before ``scenario`` and the markers. ``scenario(body)`` may return
``(status, headers, json_body)`` to override any POST request (``json_body`` may also be raw ``bytes``),
or ``None`` for the default behaviour. ``latency_s`` is slept in the handler thread before every answer.

Run standalone: ``python -m brickyard.testing.upstream --port 8099 --latency 0.2 --rpm 1200``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import re
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from brickyard.testing.batches import FakeBatches

__all__ = ["FakeUpstream", "Scenario", "main"]

Scenario = Callable[[dict[str, Any]], "tuple[int, Mapping[str, str], Any] | None"]

EMBEDDING_DIM = 8
CONTEXT_WINDOW = 8192
_WINDOW_S = 60.0

_FAIL = re.compile(r"\[fail:(\d{3})\]")
_FLAKY = re.compile(r"\[flaky:(\d+)\]")
_RATE = re.compile(r"\[429:(\d+)\]")
_SLOW = re.compile(r"\[slow:(\d+(?:\.\d*)?)\]")
_BAD_JSON_BODY = b'{"id": "chatcmpl-x", "choices": ['
_STATUS_MESSAGES = {
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The server is overloaded or not ready yet.",
}


@dataclass
class _Reply:
    """What to send: a JSON body (or raw bytes), or a list of SSE chunks when ``events`` is set."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] | None = None
    delay_s: float = 0.0


# ---------------------------------------------------------------- pure helpers


def _text_of(content: Any) -> str:
    """Text of a message ``content``: a string or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (p.get("text") for p in content if isinstance(p, dict))
        return "".join(t for t in texts if isinstance(t, str))
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> _Reply:
    """An OpenAI-shaped error reply."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return _Reply(status, body)


def _seconds(value: float) -> str:
    """A ``Retry-After`` value: seconds as a short float string ("0.2", "59.873")."""
    return f"{round(max(value, 0.0), 3):g}"


def _rate_limited(model: str, wait_s: float, limit: int | None) -> _Reply:
    used = f"Limit {limit}, Used {limit}, Requested 1. " if limit is not None else ""
    message = (
        f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): {used}"
        f"Please try again in {int(wait_s * 1000)}ms. Visit https://platform.openai.com/account/rate-limits"
        " to learn more."
    )
    reply = _error(429, message, "requests", "rate_limit_exceeded")
    reply.headers = {"Retry-After": _seconds(wait_s), "retry-after-ms": str(int(wait_s * 1000))}
    if limit is not None:
        reply.headers |= {
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{_seconds(wait_s)}s",
        }
    return reply


def _bad_key(headers: Mapping[str, str]) -> _Reply:
    auth = headers.get("authorization") or headers.get("api-key") or ""
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else auth.strip()
    if not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header"
            " using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return _error(401, message, "invalid_request_error")
    masked = f"{key[:5]}****{key[-4:]}" if len(key) > 9 else "****"
    message = (
        f"Incorrect API key provided: {masked}. You can find your API key at"
        " https://platform.openai.com/account/api-keys."
    )
    return _error(401, message, "invalid_request_error", "invalid_api_key")


def _status_error(status: int, model: str, headers: Mapping[str, str], retry_after_s: float) -> _Reply:
    """The OpenAI-shaped error for ``[fail:<status>]``."""
    if status == 401:
        return _bad_key(headers)
    if status == 429:
        return _rate_limited(model, retry_after_s, None)
    if status == 404:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return _error(404, message, "invalid_request_error", "model_not_found")
    if status >= 500:
        message = _STATUS_MESSAGES.get(status, f"Injected upstream error {status}.")
        return _error(status, message, "server_error")
    return _error(status, f"Invalid request (injected [fail:{status}]).", "invalid_request_error")


def _context_exceeded(prompt_tokens: int) -> _Reply:
    message = (
        f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your messages resulted"
        f" in {max(prompt_tokens, CONTEXT_WINDOW + 1)} tokens. Please reduce the length of the messages."
    )
    return _error(400, message, "invalid_request_error", "context_length_exceeded", "messages")


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _completion(model: str, content: str, usage: dict[str, Any], n: int) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
        for i in range(n)
    ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
        "system_fingerprint": "fp_fake",
    }


def _chunks(model: str, content: str, usage: dict[str, Any], n: int, include_usage: bool) -> list[dict[str, Any]]:
    """OpenAI ``chat.completion.chunk`` objects that reassemble to ``content`` for each of ``n`` choices."""
    head: dict[str, Any] = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk"}
    head |= {"created": int(time.time()), "model": model, "system_fingerprint": "fp_fake"}
    if include_usage:
        head["usage"] = None

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return head | {"choices": [choice]}

    pieces = re.findall(r"\S+\s*|\s+", content) or [content]
    events: list[dict[str, Any]] = []
    for i in range(n):
        events.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
        events.extend(chunk(i, {"content": piece}) for piece in pieces)
        events.append(chunk(i, {}, "stop"))
    if include_usage:
        events.append(head | {"choices": [], "usage": usage})
    return events


def _embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector from SHA-256 blocks of ``text``."""
    raw = b""
    block = 0
    while len(raw) < 4 * dim:
        raw += hashlib.sha256(f"{block}:{text}".encode()).digest()
        block += 1
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dim}I", raw[: 4 * dim])]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def _embedding_inputs(value: Any) -> list[str] | None:
    """Inputs as texts: a string, a list of strings, one token list, or a list of token lists."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, int) for v in value):
        return [json.dumps(value)]
    return [v if isinstance(v, str) else json.dumps(v) for v in value]


# ---------------------------------------------------------------- HTTP layer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "brickyard-fake-upstream/1"
    sys_version = ""
    timeout = 60.0

    @property
    def _upstream(self) -> FakeUpstream:
        return cast(_Server, self.server).upstream

    def setup(self) -> None:
        super().setup()
        self._upstream._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._upstream._track(self.connection, False)

    def handle(self) -> None:
        """Serve keep-alive requests; a client that resets or drops the connection is not an error."""
        try:
            super().handle()
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        up = self._upstream
        up._enter()
        try:
            raw = self._read_body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                reply = up._dispatch(method, self.path, headers, raw)
            except Exception as exc:  # a bug here must still answer, not reset the connection
                reply = _error(500, f"fake upstream failed: {exc!r}", "server_error")
            up._pause(up.latency_s + reply.delay_s)
            up._count(reply.status)
            if reply.events is not None:
                self._write_stream(reply)
            else:
                self._write(reply)
        except OSError:
            self.close_connection = True
        finally:
            up._leave()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_head(self, reply: _Reply, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(reply.status)
        headers = {"Content-Type": content_type, "x-request-id": f"req_{uuid.uuid4().hex}"}
        for key, value in reply.headers.items():
            if key.lower() in ("content-length", "transfer-encoding"):
                continue
            headers = {k: v for k, v in headers.items() if k.lower() != key.lower()} | {key: str(value)}
        for key, value in (headers | extra).items():
            self.send_header(key, value)
        self.end_headers()

    def _write(self, reply: _Reply) -> None:
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self._send_head(reply, "application/json", {"Content-Length": str(len(data))})
        self.wfile.write(data)

    def _write_stream(self, reply: _Reply) -> None:
        extra = {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"}
        self._send_head(reply, "text/event-stream; charset=utf-8", extra)
        for event in [*(json.dumps(e) for e in reply.events or []), "[DONE]"]:
            data = f"data: {event}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], upstream: FakeUpstream) -> None:
        self.upstream = upstream
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s reverse DNS lookup (``getfqdn``)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


# ---------------------------------------------------------------- the fake


class FakeUpstream:
    """A fake OpenAI-compatible server on 127.0.0.1 with fault markers (see the module docstring).

    Counters (``requests``, ``completed``, ``rejected_429``, ``received_bodies``, ``received_headers``,
    ``max_in_flight``, ``in_flight``) are thread-safe snapshots. ``latency_s``, ``rpm_limit``,
    ``scenario``, ``retry_after_s`` and ``model`` may be changed while it runs.
    """

    def __init__(
        self,
        latency_s: float = 0.0,
        rpm_limit: int | None = None,
        scenario: Scenario | None = None,
        model: str = "fake-gpt",
        *,
        retry_after_s: float = 0.2,
        port: int = 0,
        record_limit: int = 10_000,
    ) -> None:
        self.latency_s = latency_s
        self.rpm_limit = rpm_limit
        self.scenario = scenario
        self.model = model
        self.retry_after_s = retry_after_s
        self._wanted_port = port
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._in_flight = 0
        self._bodies: deque[dict[str, Any]] = deque(maxlen=record_limit)
        self._headers: deque[dict[str, str]] = deque(maxlen=record_limit)
        self._seen: dict[tuple[str, str], int] = {}
        self._window: deque[float] = deque()
        self._requests = self._completed = self._rejected_429 = self._max_in_flight = 0
        self.batches = FakeBatches(self)
        """The batch APIs (see `brickyard.testing.batches`): their state, counters and faults."""

    # -- lifecycle

    def start(self) -> FakeUpstream:
        """Bind an ephemeral (or the given) port and serve in a daemon thread; idempotent."""
        if self._server is None:
            self._stop.clear()
            server = _Server(("127.0.0.1", self._wanted_port), self)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-upstream", daemon=True
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def close(self) -> None:
        """Stop accepting, cut open connections, wake sleeping handlers and release the port."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._stop.set()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeUpstream is not running: use `with FakeUpstream() as up` or call start()")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the ``base_url`` for an OpenAI client."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- counters

    @property
    def requests(self) -> int:
        """Requests received (any endpoint, any outcome)."""
        return self._requests

    @property
    def completed(self) -> int:
        """Requests answered with a 2xx status."""
        return self._completed

    @property
    def rejected_429(self) -> int:
        """Requests answered with 429 (``rpm_limit``, ``[429:N]``, ``[fail:429]`` or a scenario)."""
        return self._rejected_429

    @property
    def max_in_flight(self) -> int:
        """Peak number of requests being handled at the same time."""
        return self._max_in_flight

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def received_bodies(self) -> list[dict[str, Any]]:
        """Parsed JSON bodies of POST requests, oldest first (the last ``record_limit``)."""
        with self._lock:
            return list(self._bodies)

    @property
    def received_headers(self) -> list[dict[str, str]]:
        """Headers of every request (lowercase keys), oldest first (the last ``record_limit``)."""
        with self._lock:
            return list(self._headers)

    def reset(self) -> None:
        """Clear counters, recorded requests, ``[flaky:N]``/``[429:N]`` counts and the rpm window."""
        with self._lock:
            self._requests = self._completed = self._rejected_429 = 0
            self._max_in_flight = self._in_flight
            self._bodies.clear()
            self._headers.clear()
            self._seen.clear()
            self._window.clear()

    # -- used by the handler threads

    def _track(self, conn: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _enter(self) -> None:
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _count(self, status: int) -> None:
        with self._lock:
            if 200 <= status < 300:
                self._completed += 1
            elif status == 429:
                self._rejected_429 += 1

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _bump(self, kind: str, text: str) -> int:
        """How many requests (including this one) carried ``text`` with a counted marker ``kind``."""
        with self._lock:
            count = self._seen.get((kind, text), 0) + 1
            self._seen[(kind, text)] = count
            return count

    def _admit(self) -> _Reply | None:
        """Sliding-window ``rpm_limit``: ``None`` when admitted, else the 429 to send."""
        limit = self.rpm_limit
        if limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._window and self._window[0] <= now - _WINDOW_S:
                self._window.popleft()
            if len(self._window) < limit:
                self._window.append(now)
                return None
            wait = self._window[0] + _WINDOW_S - now if self._window else _WINDOW_S
        return _rate_limited(self.model, max(wait, 0.001), limit)

    def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> _Reply:
        """Decide the answer to one request."""
        route = path.split("?", 1)[0].rstrip("/")
        route = route[3:] if route.startswith("/v1/") else route
        with self._lock:
            self._headers.append(headers)
        if self.batches.handles(route):  # OpenAI files and batches, Anthropic messages and message batches
            return self.batches.dispatch(method, route, headers, raw)
        if method == "GET":
            return self._get(route)
        if route not in ("/chat/completions", "/embeddings"):
            return _error(404, f"Unknown request URL: POST {path}.", "invalid_request_error", "unknown_url")
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request. Send a JSON object."
            return _error(400, message, "invalid_request_error")
        with self._lock:
            self._bodies.append(body)
        limited = self._admit()
        if limited is not None:
            return limited
        scenario = self.scenario
        if scenario is not None:
            try:
                override = scenario(body)
            except Exception as exc:  # surfaced to the client so the test sees it
                return _error(500, f"scenario raised {exc!r}", "server_error")
            if override is not None:
                status, extra, payload = override
                return _Reply(status, payload, dict(extra))
        if not body.get("model"):
            return _error(400, "you must provide a model parameter", "invalid_request_error")
        if route == "/embeddings":
            return self._embeddings(body, headers)
        return self._chat(body, headers)

    def _get(self, route: str) -> _Reply:
        card = {"id": self.model, "object": "model", "created": 1700000000, "owned_by": "brickyard-fake"}
        if route == "/models":
            return _Reply(200, {"object": "list", "data": [card]})
        if route == f"/models/{self.model}":
            return _Reply(200, card)
        if route.startswith("/models/"):
            return _status_error(404, route.removeprefix("/models/"), {}, self.retry_after_s)
        return _error(404, f"Unknown request URL: GET {route}.", "invalid_request_error", "unknown_url")

    def _fault(self, text: str, headers: Mapping[str, str], prompt_tokens: int) -> _Reply | None:
        """The injected error for the markers in ``text``, or ``None``."""
        if "[ctx]" in text:
            return _context_exceeded(prompt_tokens)
        if match := _FAIL.search(text):
            return _status_error(int(match.group(1)), self.model, headers, self.retry_after_s)
        if (match := _FLAKY.search(text)) and self._bump("flaky", text) <= int(match.group(1)):
            return _status_error(500, self.model, headers, self.retry_after_s)
        if (match := _RATE.search(text)) and self._bump("429", text) <= int(match.group(1)):
            return _rate_limited(self.model, self.retry_after_s, None)
        if "[badjson]" in text:
            return _Reply(200, _BAD_JSON_BODY)
        return None

    def _chat(self, body: dict[str, Any], headers: Mapping[str, str]) -> _Reply:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            message = "'messages' must be a non-empty array of messages."
            return _error(400, message, "invalid_request_error", None, "messages")
        text = _last_user_text(messages)
        prompt_tokens = _tokens("".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict)))
        slow = _SLOW.search(text)
        reply = self._fault(text, headers, prompt_tokens) or self._answer(body, text, prompt_tokens)
        reply.delay_s = float(slow.group(1)) if slow else 0.0
        return reply

    def _answer(self, body: dict[str, Any], text: str, prompt_tokens: int) -> _Reply:
        response_format = body.get("response_format")
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        content = json.dumps({"echo": text}) if kind in ("json_schema", "json_object") else "echo: " + text
        n = body.get("n")
        n = n if isinstance(n, int) and n > 0 else 1
        usage = _usage(prompt_tokens, _tokens(content) * n)
        if body.get("stream") and "[nostream]" not in text:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return _Reply(200, events=_chunks(self.model, content, usage, n, include_usage))
        return _Reply(200, _completion(self.model, content, usage, n))

    def _embeddings(self, body: dict[str, Any], headers: Mapping[str, str]) -> _Reply:
        texts = _embedding_inputs(body.get("input"))
        if texts is None:
            message = "'input' must be a non-empty string or array."
            return _error(400, message, "invalid_request_error", None, "input")
        joined = "\n".join(texts)
        slow = _SLOW.search(joined)
        prompt_tokens = _tokens("".join(texts))
        reply = self._fault(joined, headers, prompt_tokens)
        if reply is None:
            dims = body.get("dimensions")
            dim = dims if isinstance(dims, int) and dims > 0 else EMBEDDING_DIM
            as_base64 = body.get("encoding_format") == "base64"
            data = []
            for index, text in enumerate(texts):
                vector: Any = _embedding(text, dim)
                if as_base64:
                    vector = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
                data.append({"object": "embedding", "index": index, "embedding": vector})
            usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
            reply = _Reply(200, {"object": "list", "data": data, "model": self.model, "usage": usage})
        reply.delay_s = float(slow.group(1)) if slow else 0.0
        return reply


def main(argv: list[str] | None = None) -> int:
    """Run a fake upstream until Ctrl-C, then print its counters."""
    parser = argparse.ArgumentParser(
        prog="python -m brickyard.testing.upstream",
        description="Fault-injecting fake OpenAI-compatible server on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8099, help="port on 127.0.0.1 (0 = ephemeral)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute before 429")
    parser.add_argument("--model", default="fake-gpt", help="model name reported in answers")
    parser.add_argument("--retry-after", type=float, default=0.2, help="Retry-After seconds for [429:N]")
    args = parser.parse_args(argv)
    upstream = FakeUpstream(
        latency_s=args.latency,
        rpm_limit=args.rpm,
        model=args.model,
        retry_after_s=args.retry_after,
        port=args.port,
    )
    with upstream as up:
        print(f"fake upstream listening on {up.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        print(
            f"requests={up.requests} completed={up.completed} rejected_429={up.rejected_429}"
            f" max_in_flight={up.max_in_flight}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
