"""Cascades: a cheap proxy answers first; the rows it is unsure of go to a strong model.

The proxy's confidence in an answer comes from the model's own score (a `classifier:` endpoint), from
the answer's probability among the label alternatives (token log-probabilities), or from the agreement
of sampled answers. A `CascadeModel` is an ordinary `Model`, so it serves as an endpoint, from SQL and
as an agent's endpoint like any other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from brickyard._errors import UserError
from brickyard.config import Confidence
from brickyard.models._types import ChatRequest, ChatResult, TokenLogprob
from brickyard.models.base import Model, WrapperModel
from brickyard.models.calls import ANONYMOUS, Call, Caller, ChatCall, Reply, answer_whole

_GBNF_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_DATA = re.compile(r"<text>\n?(.*?)\n?</text>", re.DOTALL)
_LABEL_KEY = re.compile(r'"label"\s*:\s*"')


# -- reading a classification request ---------------------------------------------------------------
def request_labels(request: ChatRequest) -> list[str] | None:
    """The labels a single-label classification request admits (its grammar or JSON enum), else None."""
    grammar = request.extra.get("grammar")
    if isinstance(grammar, str) and grammar.startswith("root ::= "):
        literals = _GBNF_LITERAL.findall(grammar)
        if (
            len(literals) >= 2
            and _GBNF_LITERAL.sub("", grammar.removeprefix("root ::= ")).replace("|", "").strip() == ""
        ):
            return [json.loads(literal) for literal in literals]
    schema = request.json_schema or {}
    enum = schema.get("properties", {}).get("label", {}).get("enum") if isinstance(schema, dict) else None
    if isinstance(enum, list) and len(enum) >= 2:
        return [str(label) for label in enum]
    return None


def data_text(request: ChatRequest) -> str:
    """The data of the last user message: the text between `<text>` and `</text>`, else the whole message."""
    for message in reversed(request.messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            text = str(content or "")
            found = _DATA.search(text)
            return found.group(1) if found else text
    return ""


def answer_label(result: ChatResult, labels: Sequence[str]) -> str | None:
    """The label an answer names: exactly, as the only label it starts (a cut answer), or the only one it names."""
    raw = result.json.get("label") if isinstance(result.json, dict) and "label" in result.json else result.text
    cleaned = str(raw).strip().strip("\"'`.").strip().lower()
    if not cleaned:
        return None
    for test in (
        lambda label: label.lower() == cleaned,
        lambda label: label.lower().startswith(cleaned),
        lambda label: label.lower() in cleaned,
    ):
        found = [label for label in labels if test(label)]
        if len(found) == 1:
            return found[0]
    return None


# -- confidence -------------------------------------------------------------------------------------
def _labels_of_token(piece: str, labels: Sequence[str]) -> list[str]:
    piece = piece.lower()
    if not piece:
        return []
    return [label for label in labels if label.lower().startswith(piece) or piece.startswith(label.lower())]


def label_confidence(result: ChatResult, labels: Sequence[str]) -> float | None:
    """The answer's probability among the label alternatives at the token where the label starts.

    The probability mass of each alternative token (from `top`) goes to the labels it starts; the answer's
    share of the labels' mass is its confidence. None when the log-probabilities cannot tell: none were
    reported, or they come from before a grammar was applied (llama.cpp reports those) and no other label
    is among the alternatives.
    """
    tokens = result.logprobs
    answer = answer_label(result, labels)
    if not tokens or answer is None:
        return None
    joined = "".join(t.token for t in tokens)
    key = _LABEL_KEY.search(joined)
    start = key.end() if key else len(joined) - len(joined.lstrip(" \n\t\"'`"))
    offset = 0
    for token in tokens:
        if offset + len(token.token) > start:
            return _share(token, joined[offset:start], answer, labels)
        offset += len(token.token)
    return None


def _share(token: TokenLogprob, prefix: str, answer: str, labels: Sequence[str]) -> float | None:
    alternatives = dict(token.top)
    alternatives.setdefault(token.token, token.logprob)
    mass = dict.fromkeys(labels, 0.0)
    for piece, logprob in alternatives.items():
        rest = piece[len(prefix) :] if piece.startswith(prefix) else piece.lstrip(" \n\t\"'`")
        matched = _labels_of_token(rest, labels)
        for label in matched:
            mass[label] += math.exp(logprob) / len(matched)
    total = sum(mass.values())
    if total <= 0.0 or mass[answer] <= 0.0:
        return None
    chosen_is_top = token.logprob >= max(alternatives.values()) - 1e-6
    if not chosen_is_top and all(m == 0.0 for label, m in mass.items() if label != answer):
        return None  # a pre-grammar distribution that shows no other label: it cannot tell
    return mass[answer] / total


def sequence_confidence(result: ChatResult) -> float | None:
    """For a free answer: the probability of the whole answer (product of its token probabilities)."""
    if not result.logprobs:
        return None
    return math.exp(sum(t.logprob for t in result.logprobs))


def _answer_key(result: ChatResult, labels: Sequence[str] | None) -> str:
    if labels is not None:
        return answer_label(result, labels) or f"?{result.text}"
    if result.json is not None:
        return json.dumps(result.json, sort_keys=True)
    return " ".join(result.text.split()).lower()


class ConfidenceModel(WrapperModel):
    """A model whose every answer carries a confidence in [0, 1] (`ChatResult.confidence`), or None.

    `Confidence.auto` uses the model's own score when it gives one, else label log-probabilities, else
    the agreement of `samples` sampled answers. Sampled calls add their cost to the result's `cost_usd`.
    """

    def __init__(self, inner: Model, *, method: Confidence = Confidence.auto, samples: int = 5, top: int = 5) -> None:
        super().__init__(inner)
        if samples < 2:
            raise UserError("a confidence from samples needs at least 2 samples. Fix: samples = 5")
        self.method, self.samples, self.top = Confidence(method), samples, top

    async def handle(self, call: Call) -> Reply:
        if not isinstance(call, ChatCall):
            return await self.inner.handle(call)
        return await self.answer(call.request, call.caller)

    async def answer(self, request: ChatRequest, caller: Caller = ANONYMOUS) -> ChatResult:
        """The inner model's answer with its confidence; sampled calls are made for the same caller."""
        wants_logprobs = self.method in (Confidence.auto, Confidence.logprobs) and self.inner.supports_logprobs
        ask = request
        if wants_logprobs and not (request.logprobs and (request.top_logprobs or 0) >= self.top):
            ask = request.model_copy(update={"logprobs": True, "top_logprobs": self.top})
        result = await self.inner.complete(ask, caller=caller)
        methods: dict[Confidence, Callable[[], Coroutine[Any, Any, tuple[float | None, float]]]] = {
            Confidence.score: lambda: self._score(result),
            Confidence.logprobs: lambda: self._logprobs(request, result),
            Confidence.samples: lambda: self._agreement(request, result, caller),
            Confidence.auto: lambda: self._auto(request, result, caller),
        }
        confidence, extra_cost = await methods[self.method]()
        return dataclasses.replace(result, confidence=confidence, cost_usd=result.cost_usd + extra_cost)

    async def _score(self, result: ChatResult) -> tuple[float | None, float]:
        return result.confidence, 0.0

    async def _logprobs(self, request: ChatRequest, result: ChatResult) -> tuple[float | None, float]:
        labels = request_labels(request)
        return (label_confidence(result, labels) if labels else sequence_confidence(result)), 0.0

    async def _auto(self, request: ChatRequest, result: ChatResult, caller: Caller) -> tuple[float | None, float]:
        if result.confidence is not None:
            return result.confidence, 0.0
        confidence, _ = await self._logprobs(request, result)
        if confidence is not None:
            return confidence, 0.0
        return await self._agreement(request, result, caller)

    async def _agreement(
        self, request: ChatRequest, result: ChatResult, caller: Caller = ANONYMOUS
    ) -> tuple[float | None, float]:
        """The share of sampled answers (temperature 1, seeds 1..n) that agree with `result`; failures disagree."""
        labels = request_labels(request)
        answer = _answer_key(result, labels)
        update = {"temperature": 1.0, "logprobs": False, "top_logprobs": None}
        samples = [request.model_copy(update={**update, "seed": seed}) for seed in range(1, self.samples + 1)]
        answers = await asyncio.gather(
            *(self.inner.complete(s, caller=caller) for s in samples), return_exceptions=True
        )
        done = [a for a in answers if isinstance(a, ChatResult)]
        agree = sum(1 for a in done if _answer_key(a, labels) == answer)
        return agree / len(samples), sum(a.cost_usd for a in done)


# -- the cascade ------------------------------------------------------------------------------------
def _label_schema(labels: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }


class CascadeModel(Model):
    """The proxy answers; a row whose confidence is below `threshold` (or unknown, or failed) goes to `strong`.

    The result's `endpoint` names the model that served it and `confidence` is the proxy's. A deferred row's
    `cost_usd` is both calls'. A classification answer that names no label is deferred whatever its
    confidence. Capabilities are those both models share, except that label grammars are accepted when the
    strong model takes grammars and the proxy takes JSON schemas: the proxy then gets the labels as a JSON
    enum, so a grammar-constrained strong model keeps its best request shape.
    """

    def __init__(
        self,
        proxy: Model,
        strong: Model,
        threshold: float,
        *,
        name: str = "cascade",
        confidence: Confidence = Confidence.auto,
        samples: int = 5,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise UserError(f"cascade {name}: threshold {threshold} is not in [0, 1]. Fix: e.g. threshold = 0.8")
        self.name = name
        self.proxy = ConfidenceModel(proxy, method=confidence, samples=samples)
        self.strong = strong
        self.threshold = threshold
        self.supports_chat = proxy.supports_chat and strong.supports_chat
        self.supports_json_schema = proxy.supports_json_schema and strong.supports_json_schema
        self.supports_grammar = strong.supports_grammar and (proxy.supports_grammar or proxy.supports_json_schema)
        self.supports_logprobs = proxy.supports_logprobs and strong.supports_logprobs
        self.supports_tools = proxy.supports_tools and strong.supports_tools
        self.max_concurrency = max(proxy.max_concurrency, 1)
        windows = [w for w in (proxy.context_window, strong.context_window) if w]
        self.context_window = min(windows) if windows else None

    async def ask_proxy(self, request: ChatRequest, caller: Caller = ANONYMOUS) -> ChatResult:
        """The proxy's answer with its confidence (a label grammar sent as a JSON enum if the proxy needs it)."""
        labels = request_labels(request)
        if "grammar" not in request.extra or labels is None or self.proxy.supports_grammar:
            return await self.proxy.answer(request, caller)
        if not self.proxy.supports_json_schema:
            return await self.proxy.answer(request, caller)
        extra = {k: v for k, v in request.extra.items() if k != "grammar"}
        room = max(len(label) for label in labels) + 32
        asked = request.model_copy(
            update={
                "extra": extra,
                "json_schema": _label_schema(labels),
                "schema_name": "classification",
                "max_tokens": max(request.max_tokens or 0, room),
            }
        )
        result = await self.proxy.answer(asked, caller)
        label = answer_label(result, labels)
        if label is None:
            return result
        return dataclasses.replace(result, text=label, json=None, finish_reason="stop")

    async def handle(self, call: Call) -> Reply:
        """Chat calls are cascaded; a stream gets the cascaded answer whole; embeddings are refused."""
        return await answer_whole(call, self.name, self.answer)

    async def answer(self, request: ChatRequest, caller: Caller = ANONYMOUS) -> ChatResult:
        first: ChatResult | None
        try:
            first = await self.ask_proxy(request, caller)
        except Exception:  # a proxy that cannot answer defers the row; the strong model's error is the row's
            first = None
        if first is not None and first.confidence is not None and first.confidence >= self.threshold:
            labels = request_labels(request)
            if labels is None or answer_label(first, labels) is not None:  # a sure answer that names no label defers
                return dataclasses.replace(first, endpoint=first.endpoint or self.proxy.name)
        second = await self.strong.complete(request, caller=caller)
        return dataclasses.replace(
            second,
            endpoint=second.endpoint or self.strong.name,
            confidence=first.confidence if first is not None else None,
            cost_usd=second.cost_usd + (first.cost_usd if first is not None else 0.0),
        )

    async def aclose(self) -> None:
        await self.proxy.aclose()
        await self.strong.aclose()

    def __repr__(self) -> str:
        return f"CascadeModel({self.proxy.inner!r} -> {self.strong!r}, threshold={self.threshold})"
