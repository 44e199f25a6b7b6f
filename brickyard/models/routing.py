"""Fallbacks to the next endpoint after retries fail, and weighted traffic splits."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from brickyard._errors import ProviderError
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult
from brickyard.models.base import Model

T = TypeVar("T")


def _falls_through(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class FallbackModel(Model):
    """Tries each model in order; moves on only on 429, 5xx or timeouts (after that model's retries)."""

    def __init__(self, models: Sequence[Model], *, name: str | None = None) -> None:
        if not models:
            raise ValueError("FallbackModel needs at least one model")
        self.models = list(models)
        self.name = name or self.models[0].name
        first = self.models[0]
        self.supports_json_schema = first.supports_json_schema
        self.supports_logprobs = first.supports_logprobs
        self.supports_tools = first.supports_tools
        self.supports_embeddings = first.supports_embeddings
        self.max_concurrency = first.max_concurrency
        self.context_window = first.context_window

    async def _first_answer(self, call: Callable[[Model], Awaitable[T]]) -> T:
        last: ProviderError | None = None
        for model in self.models:
            try:
                return await call(model)
            except ProviderError as exc:
                if not _falls_through(exc):
                    raise
                last = exc
        assert last is not None
        raise last

    async def complete(self, request: ChatRequest) -> ChatResult:
        return await self._first_answer(lambda model: model.complete(request))

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        last: BaseException | None = None
        for model in self.models:
            started = False
            try:
                async for piece in model.stream(request):
                    started = True
                    yield piece
                return
            except ProviderError as exc:
                if started or not _falls_through(exc):
                    raise
                last = exc
        assert last is not None
        raise last

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        return await self._first_answer(lambda model: model.embed(texts))

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()


class SplitModel(Model):
    """Sends each request to one of several models, chosen at random by weight."""

    def __init__(self, weighted: Sequence[tuple[float, Model]], *, name: str, seed: int | None = None) -> None:
        if not weighted:
            raise ValueError("SplitModel needs at least one model")
        self.name = name
        self.weights = [w for w, _ in weighted]
        self.models = [m for _, m in weighted]
        self._rng = random.Random(seed)
        self.supports_json_schema = all(m.supports_json_schema for m in self.models)
        self.supports_logprobs = all(m.supports_logprobs for m in self.models)
        self.supports_tools = all(m.supports_tools for m in self.models)
        self.supports_embeddings = all(m.supports_embeddings for m in self.models)
        self.max_concurrency = sum(m.max_concurrency for m in self.models)

    def pick(self) -> Model:
        return self._rng.choices(self.models, weights=self.weights, k=1)[0]

    async def complete(self, request: ChatRequest) -> ChatResult:
        return await self.pick().complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        async for piece in self.pick().stream(request):
            yield piece

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        return await self.pick().embed(texts)

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()
