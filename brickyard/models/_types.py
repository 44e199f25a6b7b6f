"""Requests and results that cross the model interface."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from brickyard._errors import InvalidRequestError

Message = dict[str, Any]
MAX_OUTPUT_TOKENS = 1_048_576
"""The largest `max_tokens` accepted (no model produces more in one answer)."""
ReasoningEffort = Literal["minimal", "low", "medium", "high"]


class ChatRequest(BaseModel):
    """One chat completion request, provider-neutral.

    `tag` is caller metadata (for usage and budgets); it is not part of the cache key.
    `extra` passes provider-specific fields through unchanged (e.g. a llama.cpp `grammar`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[Message]
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0, le=MAX_OUTPUT_TOKENS)
    stop: list[str] | None = None
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    schema_name: str = "response"
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    reasoning_effort: ReasoningEffort | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    tag: str | None = None

    @field_validator("messages")
    @classmethod
    def _messages_not_empty(cls, messages: list[Message]) -> list[Message]:
        if not messages:
            raise ValueError("messages must not be empty")
        for message in messages:
            if "role" not in message:
                raise ValueError("every message needs a `role`")
        return messages

    @classmethod
    def from_prompt(cls, prompt: str, *, system: str | None = None, **options: Any) -> ChatRequest:
        """A request with an optional system message and one user message."""
        messages: list[Message] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return cls(messages=messages, **options)

    def check_not_empty(self) -> None:
        """Refuse a request whose messages carry no text at all."""
        if not any(_text_of(m).strip() for m in self.messages) and not self.tools:
            raise InvalidRequestError("the prompt is empty. Fix: pass some text to the model")

    def prompt_text(self) -> str:
        """All message text joined, for token estimates."""
        return "\n".join(_text_of(m) for m in self.messages)

    def cache_key(self, endpoint: str) -> str:
        """A stable hash of the endpoint and everything that changes the answer."""
        payload = self.model_dump(exclude={"tag"})
        payload["endpoint"] = endpoint
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def dedup_key(self) -> str:
        """A hash of the request alone (no endpoint), used by the batch engine."""
        return self.cache_key("")


def _text_of(message: Message) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


@dataclass(frozen=True)
class Usage:
    """Token counts; `estimated` is True when the provider reported none and we counted."""

    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability and the alternatives."""

    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatResult:
    """What a model answered. `endpoint` and `cost_usd` are filled in by the gateway layers."""

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    finish_reason: str | None = None
    json: Any = None
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    endpoint: str = ""
    cost_usd: float = 0.0
    cached: bool = False
    confidence: float | None = None
    """How sure the model is of this answer, in [0, 1], when it says (a classifier, a cascade's proxy)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form, used by the response cache."""
        return {
            "text": self.text,
            "model": self.model,
            "usage": [self.usage.input_tokens, self.usage.output_tokens, self.usage.estimated],
            "latency_s": self.latency_s,
            "finish_reason": self.finish_reason,
            "json": self.json,
            "logprobs": ([[t.token, t.logprob, t.top] for t in self.logprobs] if self.logprobs else None),
            "tool_calls": self.tool_calls,
            "endpoint": self.endpoint,
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatResult:
        inp, out, est = data["usage"]
        logprobs = data.get("logprobs")
        return cls(
            text=data["text"],
            model=data["model"],
            usage=Usage(inp, out, est),
            latency_s=data.get("latency_s", 0.0),
            finish_reason=data.get("finish_reason"),
            json=data.get("json"),
            logprobs=[TokenLogprob(t, lp, top) for t, lp, top in logprobs] if logprobs else None,
            tool_calls=data.get("tool_calls"),
            endpoint=data.get("endpoint", ""),
            confidence=data.get("confidence"),
        )


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors in input order."""

    vectors: list[list[float]]
    model: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False


def estimate_tokens(text: str) -> int:
    """A provider-neutral token estimate (about four characters a token)."""
    return max(1, (len(text) + 3) // 4) if text else 0
