"""Payload (inference) logging: request and response of every call, as the client sent and got them.

The wrapper sits outside the endpoint's guardrails: the response it logs is the masked one the client got,
and the request is redacted with the same guardrail (so a masking or blocking endpoint never logs personal
data, even for a request it refused). API keys are scrubbed from every string, and parameters named like a
credential (`authorization`, `api_key`, ...) are dropped. Long payloads are cut to `max_chars`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from brickyard.models._scrub import scrub
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult
from brickyard.models.base import Model, WrapperModel
from brickyard.models.calls import Call, EmbedCall, Outcome, Reply, when_done
from brickyard.models.guardrails import Guard
from brickyard.store.payloads import PayloadLog

_SECRET_NAMES = re.compile(r"authorization|api[-_]?key|secret|password|token|cookie", re.IGNORECASE)
_NOT_SECRET = {"max_tokens", "top_logprobs", "logprobs"}
REDACTED = "<redacted>"


class PayloadLogModel(WrapperModel):
    """Writes one payload record per call (chat, stream or embedding), success or failure."""

    def __init__(
        self,
        inner: Model,
        log: PayloadLog,
        *,
        endpoint: str,
        guard: Guard | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        super().__init__(inner)
        self._log, self._endpoint, self._guard = log, endpoint, guard
        self._secrets = [s for s in secrets if s]
        self._max = log.config.max_chars

    async def handle(self, call: Call) -> Reply:
        started = time.time()
        try:
            reply = await self.inner.handle(call)
        except BaseException as exc:
            self._write(started, call, exc=exc)
            raise

        def write(outcome: Outcome) -> None:
            self._write(started, call, outcome=outcome)

        return when_done(reply, write)

    # -- the record -------------------------------------------------------------------------------
    def _write(
        self, started: float, call: Call, *, outcome: Outcome | None = None, exc: BaseException | None = None
    ) -> None:
        record: dict[str, Any] = {
            "id": secrets.token_hex(16),  # uuid4 costs more and means no more here
            "ts": started,
            "endpoint": self._endpoint,
            "key": call.caller.key,
            "kind": call.kind,
            "latency_s": round(time.time() - started, 6),
            "status": "ok",
        }
        if call.caller.query:
            record["query"] = call.caller.query
        request = None if isinstance(call, EmbedCall) else call.request
        if request is not None:
            messages = self._guard.redact_messages(request.messages) if self._guard else request.messages
            record["request"] = messages
            record["params"] = _params(request)
            record["tag"] = call.tag
        else:
            texts = list(call.texts)  # type: ignore[union-attr]
            record["request"] = [self._guard.redact(t, "input") for t in texts] if self._guard else texts
        result = outcome.result if outcome is not None else None
        if outcome is not None and outcome.status != "ok":
            exc = outcome.error if outcome.error is not None else asyncio.CancelledError()
        if exc is not None:
            cancelled = not isinstance(exc, Exception)
            record["status"] = "cancelled" if cancelled else "error"
            record["error_type"] = type(exc).__name__
            error = "" if cancelled else str(exc)[:1000]
            if self._guard is not None:  # an upstream error may quote the prompt or the answer
                error = self._guard.redact(self._guard.redact(error, "input"), "output")
            record["error"] = error
        if isinstance(result, ChatResult):
            record.update(
                served_by=result.endpoint or None,
                model=result.model,
                response_text=result.text,
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
                cost_usd=result.cost_usd,
                cached=result.cached,
                finish_reason=result.finish_reason,
            )
            if result.json is not None or result.tool_calls:
                record["response"] = {"json": result.json, "tool_calls": result.tool_calls}
        if isinstance(result, EmbeddingResult):
            record.update(model=result.model, input_tokens=result.usage.input_tokens)
            dims = len(result.vectors[0]) if result.vectors else 0
            record["response"] = {"vectors": len(result.vectors), "dimensions": dims}
        self._log.write_line(record["ts"], self._finish(record))

    def _finish(self, record: dict[str, Any]) -> str:
        """The record as one JSON line: secrets scrubbed from every string, long fields cut to `max_chars`."""
        record = _scrub_all(record, self._secrets)
        record["truncated"] = False
        line = _dumps(record)
        if len(line) <= self._max:  # each field is part of the record: when the whole fits, every field does
            return line
        for field in ("request", "params", "response"):
            if field in record:
                record[field], cut = _fit(record[field], self._max)
                record["truncated"] |= cut
        for field in ("response_text", "error"):
            value = record.get(field)
            if isinstance(value, str) and len(value) > self._max:
                record[field] = _cap(value, self._max)
                record["truncated"] = True
        return _dumps(record)


def _params(request: ChatRequest) -> dict[str, Any]:
    """The request's parameters other than messages; entries named like a credential are replaced."""
    return _drop_credentials(request.model_dump(exclude={"messages", "tag"}, exclude_defaults=True))


def _drop_credentials(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_NAMES.search(str(k)) and k not in _NOT_SECRET else _drop_credentials(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_drop_credentials(v) for v in value]
    return value


def _scrub_all(value: Any, secrets: list[str]) -> Any:
    """Every string inside `value` scrubbed of the secrets and of anything shaped like a key."""
    if isinstance(value, str):
        return scrub(value, *secrets)
    if isinstance(value, dict):
        return {k: _scrub_all(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_all(v, secrets) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _size(value: Any) -> int:
    return len(_dumps(value))


def _fit(value: Any, max_chars: int) -> tuple[Any, bool]:
    """`value` with every string cut to one length, the longest that fits `max_chars` (still valid JSON)."""
    if _size(value) <= max_chars:
        return value, False
    low, high = 32, max_chars  # find the largest per-string cap that fits
    if _size(_cap(value, low)) > max_chars:
        return {"truncated": True, "chars": _size(value)}, True
    while low < high:
        mid = (low + high + 1) // 2
        if _size(_cap(value, mid)) <= max_chars:
            low = mid
        else:
            high = mid - 1
    return _cap(value, low), True


def _cap(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"…[{len(value) - limit} more characters]"
    if isinstance(value, dict):
        return {k: _cap(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_cap(v, limit) for v in value]
    return value
