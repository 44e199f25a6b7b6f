"""Guardrails per endpoint: personal data masked or blocked on input and output, blocked keywords.

Configured by `[endpoints.NAME.guardrails]` (`GuardrailsConfig`). Detection is by pattern with checksums
(see `brickyard.models._pii` for exactly what each kind matches); no NER model. `mask` replaces a finding with
`[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]` or `[NATIONAL_ID]`; `block` raises `GuardrailError` naming the kinds
found (never the values). Blocked keywords (whole words, any case) always block, on input and output.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from brickyard._errors import GuardrailError
from brickyard.config import GuardrailsConfig, PiiAction
from brickyard.models import _pii
from brickyard.models._types import ChatRequest, ChatResult, Message
from brickyard.models.base import Model, WrapperModel
from brickyard.models.calls import Call, ChatStream, EmbedCall, Reply, with_request

Scan = Callable[[str], list[_pii.Finding]]


class Guard:
    """The checks of one endpoint, usable without a model (e.g. to redact a payload log)."""

    def __init__(self, config: GuardrailsConfig, *, endpoint: str) -> None:
        self.config = config
        self.endpoint = endpoint
        self.kinds = [k.value for k in config.pii_kinds]
        self.keywords = _pii.keyword_pattern(config.blocked_keywords)
        self.masks_input = config.input_pii is not PiiAction.none
        self.masks_output = config.output_pii is not PiiAction.none
        self.checks_output = self.masks_output or self.keywords is not None
        longest_keyword = max((len(k) for k in config.blocked_keywords), default=0)
        self.hold = max(_pii.LONGEST_MATCH, longest_keyword) + 8
        """Characters a guarded stream holds back so that nothing is sent before it is checked."""

    def scan(self, text: str, direction: str) -> list[_pii.Finding]:
        action = self.config.input_pii if direction == "input" else self.config.output_pii
        return _pii.find(text, self.kinds if action is not PiiAction.none else [], self.keywords)

    def apply(self, text: str, direction: str) -> str:
        """The text as it may pass (masked), or raise `GuardrailError`."""
        findings = self.scan(text, direction)
        self.enforce(findings, direction)
        return _pii.mask(text, findings) if findings else text

    def enforce(self, findings: list[_pii.Finding], direction: str) -> None:
        """Raise for a blocked keyword, or for personal data when the direction's action is `block`."""
        if any(f.kind == "keyword" for f in findings):
            raise GuardrailError(self.endpoint, direction, ["keyword"])
        action = self.config.input_pii if direction == "input" else self.config.output_pii
        if findings and action is PiiAction.block:
            raise GuardrailError(self.endpoint, direction, sorted({f.kind for f in findings}))

    def redact(self, text: str, direction: str) -> str:
        """Mask (never raise) what this endpoint masks or blocks in `direction`: for logs."""
        action = self.config.input_pii if direction == "input" else self.config.output_pii
        if action is PiiAction.none:
            return text
        return _pii.mask(text, _pii.find(text, self.kinds))

    # -- requests and results -----------------------------------------------------------------------
    def check_request(self, request: ChatRequest) -> ChatRequest:
        messages = [_map_message(m, lambda t: self.apply(t, "input")) for m in request.messages]
        return request if messages == request.messages else request.model_copy(update={"messages": messages})

    def redact_messages(self, messages: list[Message]) -> list[Message]:
        return [_map_message(m, lambda t: self.redact(t, "input")) for m in messages]

    def check_result(self, result: ChatResult) -> ChatResult:
        if not self.checks_output:
            return result
        text = self.apply(result.text, "output")
        tool_calls = _map_tool_calls(result.tool_calls, lambda t: self.apply(t, "output"))
        if text == result.text and tool_calls == result.tool_calls:
            return result
        parsed = result.json
        if parsed is not None:
            parsed = _map_json(parsed, lambda t: self.apply(t, "output"))
            try:
                json.loads(text)
            except ValueError:  # masking a number inside the JSON text: write the masked object instead
                text = json.dumps(parsed, ensure_ascii=False)
        # Token logprobs would spell out what was masked: drop them.
        return dataclasses.replace(result, text=text, json=parsed, tool_calls=tool_calls, logprobs=None)

    def stream_filter(self) -> StreamFilter:
        return StreamFilter(lambda t: self.scan(t, "output"), lambda f: self.enforce(f, "output"), self.hold)


class StreamFilter:
    """Masks or blocks streamed text across chunk boundaries.

    It holds back the last `hold` characters (longer than any match) and never cuts inside a finding, so
    a value split over chunks is still found; what is sent has always been checked.
    """

    def __init__(self, scan: Scan, enforce: Callable[[list[_pii.Finding]], None], hold: int) -> None:
        self._scan, self._enforce, self._hold = scan, enforce, hold
        self._buffer = ""
        self._context = ""  # the last characters sent, so patterns see what precedes the buffer

    def feed(self, piece: str) -> str:
        """Take a chunk; return the text that may be sent now (possibly empty)."""
        self._buffer += piece
        cut = len(self._buffer) - self._hold
        if cut <= 0:
            return ""
        findings = self._findings()
        for f in findings:
            if f.start < cut < f.end:
                cut = f.start
        return self._emit(cut, [f for f in findings if f.end <= cut])

    def end(self) -> str:
        """The rest, once the stream is over."""
        return self._emit(len(self._buffer), self._findings())

    def _findings(self) -> list[_pii.Finding]:
        offset = len(self._context)
        found = self._scan(self._context + self._buffer)
        return [_pii.Finding(f.kind, max(f.start - offset, 0), f.end - offset) for f in found if f.end - offset > 0]

    def _emit(self, cut: int, findings: list[_pii.Finding]) -> str:
        self._enforce(findings)
        sent, self._buffer = self._buffer[:cut], self._buffer[cut:]
        self._context = (self._context + sent)[-16:]
        return _pii.mask(sent, findings) if findings else sent


class GuardrailModel(WrapperModel):
    """Applies an endpoint's guardrails to what goes in (messages, texts to embed) and what comes out."""

    def __init__(self, inner: Model, config: GuardrailsConfig, *, endpoint: str) -> None:
        super().__init__(inner)
        self.guard = Guard(config, endpoint=endpoint)

    async def handle(self, call: Call) -> Reply:
        if isinstance(call, EmbedCall):
            texts = tuple(self.guard.apply(t, "input") for t in call.texts)
            return await self.inner.handle(dataclasses.replace(call, texts=texts))
        reply = await self.inner.handle(with_request(call, self.guard.check_request(call.request)))
        if isinstance(reply, ChatStream):
            if self.guard.checks_output:
                flt = self.guard.stream_filter()
                reply.map_pieces(flt.feed, flt.end)
            return reply
        if isinstance(reply, ChatResult):
            return self.guard.check_result(reply)
        return reply


def _map_message(message: Message, fn: Callable[[str], str]) -> Message:
    """The message with `fn` applied to its text: content (string or text parts) and tool-call arguments."""
    out = dict(message)
    content = message.get("content")
    if isinstance(content, str):
        out["content"] = fn(content)
    elif isinstance(content, list):
        out["content"] = [
            {**part, "text": fn(part["text"])} if isinstance(part, dict) and isinstance(part.get("text"), str) else part
            for part in content
        ]
    if message.get("tool_calls"):
        out["tool_calls"] = _map_tool_calls(message["tool_calls"], fn)
    return out


def _map_tool_calls(calls: list[dict[str, Any]] | None, fn: Callable[[str], str]) -> list[dict[str, Any]] | None:
    if not calls:
        return calls
    out = []
    for call in calls:
        function = call.get("function")
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            call = {**call, "function": {**function, "arguments": fn(function["arguments"])}}
        out.append(call)
    return out


def _map_json(value: Any, fn: Callable[[str], str]) -> Any:
    """`fn` over every string (and every integer written as digits) inside a parsed JSON value."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        masked = fn(str(value))
        return value if masked == str(value) else masked
    if isinstance(value, list):
        return [_map_json(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map_json(v, fn) for k, v in value.items()}
    return value
