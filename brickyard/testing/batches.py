"""The batch APIs of the fake upstream: OpenAI's Files + Batch API and Anthropic's Message Batches.

Served by `FakeUpstream` (``brickyard.testing.upstream``) on the same port:

- OpenAI: ``POST /v1/files`` (multipart, ``purpose=batch``), ``GET /v1/files/{id}/content``,
  ``POST /v1/batches``, ``GET /v1/batches`` (newest first, ``limit``/``after``), ``GET /v1/batches/{id}``,
  ``POST /v1/batches/{id}/cancel``. Output and error files are JSONL in OpenAI's shape.
- Anthropic: ``POST /v1/messages`` (a direct call: answers ``"echo: " + last user text``),
  ``POST /v1/messages/batches``, ``GET /v1/messages/batches`` (newest first), ``GET /v1/messages/batches/{id}``,
  ``POST /v1/messages/batches/{id}/cancel``, ``GET /v1/messages/batches/{id}/results`` (JSONL).

Rows are processed lazily: each status read of a batch answers up to ``rows_per_poll`` more rows (all, when
None), through the same fault markers as direct calls (``[fail:400]`` in a row's text makes that row an error).
Faults for whole batches, settable while running:

- ``expire_after``: a batch expires once it has answered this many rows; the rest are ``batch_expired``
  (OpenAI error file) or ``expired`` results (Anthropic).
- ``fail_validation``: OpenAI batches are created ``failed`` (no output), Anthropic batches answer 400.
- ``fail_reads``: the next N status reads of a batch answer 503 (a transient provider error).
- ``hostile_output``: OpenAI output files drop their first row, repeat a row (with another answer's text), carry
  a line for a custom_id that was never sent, and end with a torn line and a line that is not an object.
- ``garble_output``: OpenAI output files hold no JSON at all.

``sent`` counts every ``custom_id`` received in a batch (to prove no row was sent twice); ``created`` lists the
batch ids in creation order.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brickyard.testing.upstream import FakeUpstream, _Reply

_OPENAI_TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass
class _Batch:
    """One batch of either API: the rows still to answer and the lines answered so far."""

    id: str
    api: str  # "openai" or "anthropic"
    rows: list[dict[str, Any]]  # {"custom_id", "body"}
    created: float
    metadata: dict[str, str] = field(default_factory=dict)
    input_file_id: str | None = None
    endpoint: str = "/v1/chat/completions"
    status: str = "in_progress"
    done: list[dict[str, Any]] = field(default_factory=list)  # {"custom_id", "ok", "status", "body"}
    output_file_id: str | None = None
    error_file_id: str | None = None
    ended: float | None = None


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z") if ts is not None else None


def _error_body(message: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}


class FakeBatches:
    """State and routes of both batch APIs; thread-safe (the handler threads share it)."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self._up = upstream
        self._lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self.created: list[str] = []
        self.sent: Counter[str] = Counter()
        self.rows_per_poll: int | None = None
        self.expire_after: int | None = None
        self.fail_validation = False
        self.fail_reads = 0
        self.hostile_output = False
        self.garble_output = False
        self.direct_messages: list[str] = []
        """The last user text of every direct `POST /v1/messages` (Anthropic's interactive calls)."""

    # -- routing ------------------------------------------------------------------------------------
    def handles(self, route: str) -> bool:
        return route.startswith(("/files", "/batches", "/messages"))

    def dispatch(self, method: str, route: str, headers: dict[str, str], raw: bytes) -> _Reply:
        from brickyard.testing.upstream import _error, _Reply

        parts = [p for p in route.split("/") if p]
        if method == "GET" and self._failing_read(parts):
            return _error(503, "The server is overloaded or not ready yet.", "server_error")
        try:
            if parts[0] == "files":
                return self._files(method, parts, headers, raw)
            if parts[0] == "batches":
                return self._openai(method, parts, raw)
            if parts == ["messages"] and method == "POST":
                return self._direct_message(raw, headers)
            if parts[:2] == ["messages", "batches"]:
                return self._anthropic(method, parts[2:], headers, raw)
        except (ValueError, KeyError, TypeError) as exc:
            return _Reply(400, _error_body(f"bad request: {exc}"))
        return _error(404, f"Unknown request URL: {method} {route}.", "invalid_request_error", "unknown_url")

    def _failing_read(self, parts: list[str]) -> bool:
        """A status read of one batch that `fail_reads` turns into a 503."""
        one_batch = (len(parts) == 2 and parts[0] == "batches") or (
            len(parts) == 3 and parts[:2] == ["messages", "batches"]
        )
        with self._lock:
            if one_batch and self.fail_reads > 0:
                self.fail_reads -= 1
                return True
        return False

    # -- OpenAI files -------------------------------------------------------------------------------
    def _files(self, method: str, parts: list[str], headers: dict[str, str], raw: bytes) -> _Reply:
        from brickyard.testing.upstream import _Reply

        if method == "POST" and len(parts) == 1:
            fields = _multipart(headers.get("content-type", ""), raw)
            if fields.get("purpose") != b"batch":
                return _Reply(400, _error_body("purpose must be 'batch' for this fake"))
            content = fields.get("file")
            if content is None:
                return _Reply(400, _error_body("missing file"))
            file_id = f"file-{uuid.uuid4().hex[:24]}"
            with self._lock:
                self.files[file_id] = content
            return _Reply(200, self._file_object(file_id, content, "batch"))
        if method == "GET" and len(parts) == 3 and parts[2] == "content":
            with self._lock:
                data = self.files.get(parts[1])
            if data is None:
                return _Reply(404, _error_body(f"No such File object: {parts[1]}"))
            return _Reply(200, data, {"Content-Type": "application/octet-stream"})
        if method == "GET" and len(parts) == 2:
            with self._lock:
                data = self.files.get(parts[1])
            if data is None:
                return _Reply(404, _error_body(f"No such File object: {parts[1]}"))
            return _Reply(200, self._file_object(parts[1], data, "batch"))
        return _Reply(404, _error_body("unknown files route"))

    @staticmethod
    def _file_object(file_id: str, data: bytes, purpose: str) -> dict[str, Any]:
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl",
            "purpose": purpose,
            "status": "processed",
        }

    # -- OpenAI batches -----------------------------------------------------------------------------
    def _openai(self, method: str, parts: list[str], raw: bytes) -> _Reply:
        from brickyard.testing.upstream import _Reply

        if method == "POST" and len(parts) == 1:
            body = json.loads(raw)
            if body.get("completion_window") != "24h" or body.get("endpoint") != "/v1/chat/completions":
                return _Reply(400, _error_body("completion_window must be 24h and endpoint /v1/chat/completions"))
            with self._lock:
                data = self.files.get(body["input_file_id"])
            if data is None:
                return _Reply(400, _error_body(f"No such File object: {body['input_file_id']}"))
            rows = []
            for line in data.decode().splitlines():
                if line.strip():
                    item = json.loads(line)
                    rows.append({"custom_id": item["custom_id"], "body": item["body"]})
            batch = _Batch(
                id=f"batch_{uuid.uuid4().hex[:24]}",
                api="openai",
                rows=rows,
                created=time.time(),
                metadata=dict(body.get("metadata") or {}),
                input_file_id=body["input_file_id"],
            )
            if self.fail_validation:
                batch.status, batch.ended = "failed", time.time()
            self._register(batch)
            return _Reply(200, self._openai_object(batch))
        if method == "GET" and len(parts) == 1:
            with self._lock:
                listed = [b for b in reversed([self.batches[i] for i in self.created]) if b.api == "openai"]
            return _Reply(200, {"object": "list", "data": [self._openai_object(b) for b in listed], "has_more": False})
        found = self.batches.get(parts[1]) if len(parts) >= 2 else None
        if found is None or found.api != "openai":
            return _Reply(404, _error_body(f"No batch found with id '{parts[1] if len(parts) > 1 else ''}'."))
        batch = found
        if method == "POST" and parts[2:] == ["cancel"]:
            self._end(batch, "cancelled")
        elif method == "GET" and len(parts) == 2:
            self._advance(batch)
        else:
            return _Reply(404, _error_body("unknown batches route"))
        return _Reply(200, self._openai_object(batch))

    def _openai_object(self, batch: _Batch) -> dict[str, Any]:
        with self._lock:
            ok = sum(1 for d in batch.done if d["ok"])
            failed = len(batch.done) - ok
            return {
                "id": batch.id,
                "object": "batch",
                "endpoint": batch.endpoint,
                "input_file_id": batch.input_file_id,
                "completion_window": "24h",
                "status": batch.status,
                "created_at": int(batch.created),
                "expires_at": int(batch.created + 86400),
                "output_file_id": batch.output_file_id,
                "error_file_id": batch.error_file_id,
                "metadata": batch.metadata,
                "request_counts": {"total": len(batch.rows), "completed": ok, "failed": failed},
                "errors": {"object": "list", "data": [{"code": "invalid_request", "message": "validation failed"}]}
                if batch.status == "failed"
                else None,
            }

    # -- Anthropic ----------------------------------------------------------------------------------
    def _anthropic(self, method: str, parts: list[str], headers: dict[str, str], raw: bytes) -> _Reply:
        from brickyard.testing.upstream import _Reply

        if not (headers.get("x-api-key") or headers.get("authorization")):
            return _Reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "no key"}})
        if method == "POST" and not parts:
            if self.fail_validation:
                return _Reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
            body = json.loads(raw)
            rows = [{"custom_id": r["custom_id"], "body": r["params"]} for r in body["requests"]]
            batch = _Batch(id=f"msgbatch_{uuid.uuid4().hex[:24]}", api="anthropic", rows=rows, created=time.time())
            self._register(batch)
            return _Reply(200, self._anthropic_object(batch, headers))
        if method == "GET" and not parts:
            with self._lock:
                listed = [b for b in reversed([self.batches[i] for i in self.created]) if b.api == "anthropic"]
            data = [self._anthropic_object(b, headers) for b in listed]
            first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
            return _Reply(200, {"data": data, "has_more": False, "first_id": first, "last_id": last})
        found = self.batches.get(parts[0])
        if found is None or found.api != "anthropic":
            message = f"no message batch {parts[0]}"
            return _Reply(404, {"type": "error", "error": {"type": "not_found_error", "message": message}})
        batch = found
        if method == "POST" and parts[1:] == ["cancel"]:
            self._end(batch, "canceled")
        elif method == "GET" and len(parts) == 1:
            self._advance(batch)
        elif method == "GET" and parts[1:] == ["results"]:
            if batch.ended is None:
                return _Reply(
                    400, {"type": "error", "error": {"type": "invalid_request_error", "message": "not ended"}}
                )
            with self._lock:
                lines = [self._anthropic_line(d) for d in batch.done]
            jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
            return _Reply(200, jsonl, {"Content-Type": "application/binary"})
        else:
            return _Reply(404, {"type": "error", "error": {"type": "not_found_error", "message": "unknown route"}})
        return _Reply(200, self._anthropic_object(batch, headers))

    def _anthropic_object(self, batch: _Batch, headers: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            counts = Counter(d["status"] for d in batch.done)
            ended = batch.ended is not None
            host = headers.get("host", f"127.0.0.1:{self._up.port}")
            return {
                "id": batch.id,
                "type": "message_batch",
                "processing_status": "ended"
                if ended
                else ("canceling" if batch.status == "canceling" else "in_progress"),
                "request_counts": {
                    "processing": len(batch.rows) - len(batch.done),
                    "succeeded": counts["succeeded"],
                    "errored": counts["errored"],
                    "canceled": counts["canceled"],
                    "expired": counts["expired"],
                },
                "created_at": _iso(batch.created),
                "expires_at": _iso(batch.created + 86400),
                "ended_at": _iso(batch.ended),
                "cancel_initiated_at": None,
                "archived_at": None,
                "results_url": f"http://{host}/v1/messages/batches/{batch.id}/results" if ended else None,
            }

    @staticmethod
    def _anthropic_line(done: dict[str, Any]) -> dict[str, Any]:
        status = done["status"]
        if status == "succeeded":
            result: dict[str, Any] = {"type": "succeeded", "message": done["body"]}
        elif status == "errored":
            result = {"type": "errored", "error": {"type": "error", "error": done["body"]}}
        else:
            result = {"type": status}
        return {"custom_id": done["custom_id"], "result": result}

    def _direct_message(self, raw: bytes, headers: dict[str, str]) -> _Reply:
        from brickyard.testing.upstream import _Reply

        if not (headers.get("x-api-key") or headers.get("authorization")):
            return _Reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "no key"}})
        params = json.loads(raw)
        from brickyard.testing.upstream import _last_user_text

        with self._lock:
            self.direct_messages.append(_last_user_text(params.get("messages") or []))
        ok, body = self._message(params)
        if ok:
            return _Reply(200, body)
        return _Reply(400, {"type": "error", "error": body})

    def _message(self, params: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """(ok, a Messages API message or an error object) for one request's params."""
        from brickyard.testing.upstream import _FAIL, _last_user_text, _text_of, _tokens

        text = _last_user_text(params.get("messages") or [])
        if match := _FAIL.search(text):
            return False, {"type": "invalid_request_error", "message": f"injected [fail:{match.group(1)}]"}
        content = "echo: " + text
        prompt = "".join(_text_of(m.get("content")) for m in params.get("messages") or [] if isinstance(m, dict))
        message = {
            "id": f"msg_{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": params.get("model", "claude-fake"),
            "content": [{"type": "text", "text": content}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": _tokens(prompt), "output_tokens": _tokens(content)},
        }
        return True, message

    # -- processing ---------------------------------------------------------------------------------
    def _register(self, batch: _Batch) -> None:
        with self._lock:
            self.batches[batch.id] = batch
            self.created.append(batch.id)
            self.sent.update(r["custom_id"] for r in batch.rows)

    def _advance(self, batch: _Batch) -> None:
        """Answer up to `rows_per_poll` more rows; end the batch when all are answered or it expires."""
        with self._lock:
            if batch.ended is not None or batch.status in _OPENAI_TERMINAL:
                return
            todo = batch.rows[len(batch.done) :]
            take = todo if self.rows_per_poll is None else todo[: self.rows_per_poll]
            limit = self.expire_after
        for row in take:
            if limit is not None and len(batch.done) >= limit:
                break
            with self._lock:
                batch.done.append(self._answer(batch, row))
        with self._lock:
            finished = len(batch.done) == len(batch.rows)
            expired = limit is not None and len(batch.done) >= limit and not finished
        if finished:
            self._end(batch, "completed" if batch.api == "openai" else "ended")
        elif expired:
            self._end(batch, "expired")

    def _answer(self, batch: _Batch, row: dict[str, Any]) -> dict[str, Any]:
        if batch.api == "anthropic":
            ok, body = self._message(row["body"])
            return {"custom_id": row["custom_id"], "ok": ok, "status": "succeeded" if ok else "errored", "body": body}
        reply = self._up._chat(dict(row["body"]), {})
        ok = 200 <= reply.status < 300
        return {"custom_id": row["custom_id"], "ok": ok, "status": reply.status, "body": reply.body}

    def _end(self, batch: _Batch, how: str) -> None:
        """End a batch (`completed`, `expired`, `cancelled`/`canceled`): unanswered rows get that outcome."""
        with self._lock:
            if batch.ended is not None:
                return
            answered = {d["custom_id"] for d in batch.done}
            rest = [r for r in batch.rows if r["custom_id"] not in answered]
            batch.ended = time.time()
            if batch.api == "anthropic":
                outcome = "canceled" if how == "canceled" else "expired"
                batch.done.extend({"custom_id": r["custom_id"], "ok": False, "status": outcome} for r in rest)
                batch.status = "ended"
                return
            batch.status = how
            outputs = [d for d in batch.done if d["ok"]]
            errors = [d for d in batch.done if not d["ok"]]
            code = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(how)
            lines_out = [self._openai_line(d) for d in outputs]
            lines_err = [self._openai_line(d) for d in errors]
            if code:
                message = f"This request could not be executed before the batch was {how}."
                lines_err += [
                    {"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": r["custom_id"], "response": None,
                     "error": {"code": code, "message": message}}
                    for r in rest
                ]  # fmt: skip
            if self.hostile_output and lines_out:  # a repeated line, a foreign custom_id, a torn line; one row lost
                tampered = json.loads(json.dumps(lines_out[1]))
                tampered["response"]["body"]["choices"][0]["message"]["content"] = "tampered"
                lines_out = [*lines_out[1:], tampered, {**lines_out[2], "custom_id": "someone-else"}]
            if lines_out:
                batch.output_file_id = self._store_file(lines_out)
                if self.garble_output:
                    self.files[batch.output_file_id] = b"<html>502 Bad Gateway</html>\n"
                if self.hostile_output:
                    self.files[batch.output_file_id] += b'{"custom_id": "torn'
                    self.files[batch.output_file_id] += b"\n[1, 2]\n"
            if lines_err:
                batch.error_file_id = self._store_file(lines_err)

    @staticmethod
    def _openai_line(done: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"batch_req_{uuid.uuid4().hex[:16]}",
            "custom_id": done["custom_id"],
            "response": {"status_code": done["status"], "request_id": uuid.uuid4().hex, "body": done["body"]},
            "error": None,
        }

    def _store_file(self, lines: list[dict[str, Any]]) -> str:
        """(holding the lock) A JSONL file of `lines`; its id."""
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        self.files[file_id] = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return file_id


def _multipart(content_type: str, raw: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, by name."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    return fields
