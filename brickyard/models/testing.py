"""Public test doubles: scripted answers (`FakeModel`) and answers from a function (`FunctionModel`)."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from brickyard._errors import InvalidRequestError
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, Usage, estimate_tokens
from brickyard.models.base import Model

Answer = str | dict[str, Any] | BaseException
AnswerFn = Callable[[ChatRequest], "str | dict[str, Any] | ChatResult | Awaitable[Any]"]


def _result(name: str, request: ChatRequest, answer: str | dict[str, Any] | list[Any], started: float) -> ChatResult:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    parsed: Any = None
    if request.json_schema is not None:
        try:
            parsed = answer if not isinstance(answer, str) else json.loads(answer)
        except json.JSONDecodeError as exc:
            from brickyard._errors import MalformedResponseError

            raise MalformedResponseError(f"answer is not valid JSON: {exc}", endpoint=name, retryable=False) from exc
    usage = Usage(estimate_tokens(request.prompt_text()), estimate_tokens(text), estimated=True)
    return ChatResult(
        text=text,
        model=name,
        usage=usage,
        latency_s=time.perf_counter() - started,
        finish_reason="stop",
        json=parsed,
    )


class FakeModel(Model):
    """Answers from a script, in order (cycling when `cycle=True`); an exception in the script is raised.

    Chat calls, streams and embeddings all take their turn from the one script (an embedding call uses a
    scripted exception, or else embeds). `calls` records every chat request and `embed_calls` every list of
    texts, for exact assertions.
    """

    supports_json_schema = True

    def __init__(
        self,
        answers: Iterable[Answer] = ("ok",),
        *,
        name: str = "fake:model",
        cycle: bool = True,
        delay_s: float = 0.0,
        embedding_dim: int = 8,
    ) -> None:
        self.name = name
        self._answers = list(answers)
        if not self._answers:
            raise InvalidRequestError("FakeModel needs at least one answer")
        self._cycle = cycle
        self._delay_s = delay_s
        self._embedding_dim = embedding_dim
        self.calls: list[ChatRequest] = []
        self.embed_calls: list[list[str]] = []
        self.supports_embeddings = True
        self._turn = 0

    async def _next(self) -> str | dict[str, Any]:
        index = self._turn
        self._turn += 1
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        if index >= len(self._answers) and not self._cycle:
            raise InvalidRequestError(f"FakeModel script exhausted after {len(self._answers)} answers")
        answer = self._answers[index % len(self._answers)]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def _complete(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        request.check_not_empty()
        self.calls.append(request)
        answer = await self._next()
        return _result(self.name, request, answer, started)

    async def _embed(self, texts: list[str]) -> EmbeddingResult:
        self.embed_calls.append(list(texts))
        await self._next()
        return EmbeddingResult(
            vectors=[_hash_vector(t, self._embedding_dim) for t in texts],
            model=self.name,
            usage=Usage(sum(estimate_tokens(t) for t in texts), 0, estimated=True),
        )


class FunctionModel(Model):
    """Answers by calling `fn(request)`; it may return text, a dict (JSON), a `ChatResult`, or raise.

    `fn` may be sync or async. `calls` records every request received.
    """

    supports_json_schema = True
    supports_tools = True

    def __init__(
        self,
        fn: AnswerFn,
        *,
        name: str = "function:model",
        embed_fn: Callable[[str], list[float]] | None = None,
        max_concurrency: int = 8,
    ) -> None:
        self.name = name
        self._fn = fn
        self._embed_fn = embed_fn
        self.max_concurrency = max_concurrency
        self.supports_embeddings = embed_fn is not None
        self.calls: list[ChatRequest] = []

    async def _complete(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        request.check_not_empty()
        self.calls.append(request)
        answer = self._fn(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, ChatResult):
            return answer
        return _result(self.name, request, answer, started)

    async def _embed(self, texts: list[str]) -> EmbeddingResult:
        if self._embed_fn is None:
            return await super()._embed(texts)
        return EmbeddingResult(vectors=[self._embed_fn(t) for t in texts], model=self.name)


def _hash_vector(text: str, dim: int) -> list[float]:
    """A deterministic unit vector from the text's character trigrams (stable across runs)."""
    import hashlib
    import math

    vec = [0.0] * dim
    padded = f"  {text.lower()}  "
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest()
        vec[int.from_bytes(digest, "little") % dim] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]
