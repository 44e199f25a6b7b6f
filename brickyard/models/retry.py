"""Retries with exponential backoff and jitter on 429, 5xx and timeouts, honouring Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from brickyard._errors import ProviderError
from brickyard.models.base import Model, WrapperModel
from brickyard.models.calls import Call, Reply


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class RetryModel(WrapperModel):
    """Retries a bounded number of times; waits `Retry-After` when the upstream gives one."""

    def __init__(
        self,
        inner: Model,
        *,
        max_retries: int = 4,
        initial_s: float = 0.5,
        max_wait_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(inner)
        self.max_retries = max_retries
        self._backoff = wait_exponential_jitter(multiplier=initial_s, max=max_wait_s, jitter=initial_s)
        self._max_wait_s = max_wait_s
        self._sleep = sleep

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self._max_wait_s)
        return float(self._backoff(state))

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            sleep=self._sleep,
            reraise=True,
        )

    async def handle(self, call: Call) -> Reply:
        """Every kind is retried alike; a stream only until its first piece (after that, text was sent)."""
        async for attempt in self._retrying():
            with attempt:
                return await self.inner.handle(call)
        raise AssertionError("unreachable: tenacity reraises the last error")
