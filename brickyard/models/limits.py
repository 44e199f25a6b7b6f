"""Rate limits (requests and tokens per minute) and a concurrency cap for one endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from brickyard.models._loop import PerLoop
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, estimate_tokens
from brickyard.models.base import Model, WrapperModel


class Pacer:
    """A GCRA pacer: admits `per_minute` units a minute, evenly spaced, with a small burst.

    Not bound to an event loop, so one pacer serves every loop and call site of an endpoint.
    """

    def __init__(self, per_minute: float, burst: float = 1.0) -> None:
        self.interval = 60.0 / per_minute
        self.tolerance = self.interval * max(burst - 1.0, 0.0)
        self._tat = 0.0  # theoretical arrival time of the next unit

    def reserve(self, amount: float = 1.0) -> float:
        """Book `amount` units now; returns how long the caller must wait before going."""
        now = time.monotonic()
        tat = max(self._tat, now)
        wait = max(0.0, tat - now - self.tolerance)
        self._tat = tat + amount * self.interval
        return wait

    async def acquire(self, amount: float = 1.0) -> None:
        wait = self.reserve(amount)
        if wait > 0:
            await asyncio.sleep(wait)


class PacedModel(WrapperModel):
    """Paces requests and estimated tokens per minute; every attempt (retries included) is paced."""

    def __init__(self, inner: Model, *, rpm: int | None = None, tpm: int | None = None) -> None:
        super().__init__(inner)
        self._requests = Pacer(rpm) if rpm else None
        # A token budget may burst up to a second's worth so one long prompt is not delayed alone.
        self._tokens = Pacer(tpm, burst=max(tpm / 60.0, 1.0)) if tpm else None

    async def _admit(self, tokens: int) -> None:
        if self._requests:
            await self._requests.acquire()
        if self._tokens and tokens:
            await self._tokens.acquire(tokens)

    async def complete(self, request: ChatRequest) -> ChatResult:
        await self._admit(_request_tokens(request))
        return await self.inner.complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        await self._admit(_request_tokens(request))
        async for piece in self.inner.stream(request):
            yield piece

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        await self._admit(sum(estimate_tokens(t) for t in texts))
        return await self.inner.embed(texts)


def _request_tokens(request: ChatRequest) -> int:
    return estimate_tokens(request.prompt_text()) + (request.max_tokens or 0)


class LimitedModel(WrapperModel):
    """Caps requests in flight (and, with `rpm`/`tpm`, paces them inside the cap)."""

    def __init__(
        self,
        inner: Model,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(PacedModel(inner, rpm=rpm, tpm=tpm) if rpm or tpm else inner)
        self._cap = max_concurrency or inner.max_concurrency
        self.max_concurrency = self._cap
        self._semaphores = PerLoop(lambda: asyncio.Semaphore(self._cap))

    async def complete(self, request: ChatRequest) -> ChatResult:
        async with self._semaphores.get():
            return await self.inner.complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        async with self._semaphores.get():
            async for piece in self.inner.stream(request):
                yield piece

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        async with self._semaphores.get():
            return await self.inner.embed(texts)
