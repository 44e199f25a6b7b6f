"""Fallbacks to the next endpoint after retries fail (or a budget refuses), and weighted traffic splits."""

from __future__ import annotations

import random
from collections.abc import Sequence

from brickyard._errors import BudgetExceededError, ProviderError
from brickyard.models.base import Capabilities, Model, copy_capabilities
from brickyard.models.calls import Call, Reply


def falls_through(exc: BaseException) -> bool:
    """429, 5xx, timeouts and malformed answers (after that endpoint's retries), and budget refusals: the next
    endpoint is tried, at its own price and against its own budgets."""
    return (isinstance(exc, ProviderError) and exc.retryable) or isinstance(exc, BudgetExceededError)


class FallbackModel(Model):
    """Tries each model in order. A stream falls through only before its first piece (none was sent yet)."""

    def __init__(self, models: Sequence[Model], *, name: str | None = None) -> None:
        if not models:
            raise ValueError("FallbackModel needs at least one model")
        self.models = list(models)
        self.name = name or self.models[0].name
        copy_capabilities(self, self.models[0])

    async def handle(self, call: Call) -> Reply:
        last: BaseException | None = None
        for model in self.models:
            try:
                return await model.handle(call)
            except Exception as exc:
                if not falls_through(exc):
                    raise
                last = exc
        assert last is not None
        raise last

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()


def joint_capabilities(models: Sequence[Model]) -> Capabilities:
    """What a model that may send a call to any of `models` can promise: what all of them can do."""
    caps = [m.capabilities for m in models]
    return Capabilities(
        chat=all(c.chat for c in caps),
        embeddings=all(c.embeddings for c in caps),
        json_schema=all(c.json_schema for c in caps),
        logprobs=all(c.logprobs for c in caps),
        tools=all(c.tools for c in caps),
        grammar=all(c.grammar for c in caps),
        max_concurrency=sum(c.max_concurrency for c in caps),
        context_window=min((c.context_window for c in caps if c.context_window), default=None),
    )


class SplitModel(Model):
    """Sends each call to one of several models, chosen at random by weight."""

    def __init__(self, weighted: Sequence[tuple[float, Model]], *, name: str, seed: int | None = None) -> None:
        if not weighted:
            raise ValueError("SplitModel needs at least one model")
        self.name = name
        self.weights = [w for w, _ in weighted]
        self.models = [m for _, m in weighted]
        self._rng = random.Random(seed)
        copy_capabilities(self, joint_capabilities(self.models))

    def pick(self) -> Model:
        return self._rng.choices(self.models, weights=self.weights, k=1)[0]

    async def handle(self, call: Call) -> Reply:
        return await self.pick().handle(call)

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()
