"""One limiter for requests and tokens per minute (endpoints and API keys), and a concurrency cap.

`RateLimiter` books a scope's allowance in the store (GCRA), so every worker and host sharing the store
shares the limit. An endpoint paces: a call waits its turn (`PacedModel`). An API key refuses: a call over the
key's limit is answered with `CallerRateLimitedError` and the time to wait (`CallerRateModel`).
"""

from __future__ import annotations

import asyncio
import dataclasses

from brickyard._errors import CallerRateLimitedError
from brickyard.models._loop import PerLoop
from brickyard.models.base import Model, WrapperModel
from brickyard.models.budget import effective_usage
from brickyard.models.calls import Call, EmbedCall, Outcome, Reply, when_done
from brickyard.store.base import Store


def call_tokens(call: Call) -> int:
    """Tokens a call may use: its prompt plus `max_tokens` (what a tokens-per-minute limit books up front)."""
    if isinstance(call, EmbedCall):
        return call.prompt_tokens()
    return call.prompt_tokens() + (call.request.max_tokens or 0)


class RateLimiter:
    """Requests and tokens per minute for one scope, booked in the store (shared by every process)."""

    def __init__(self, store: Store, scope: str, *, rpm: int | None, tpm: int | None, burst: bool = False) -> None:
        self.store, self.scope, self.rpm, self.tpm = store, scope, rpm, tpm
        # A key may burst a whole minute's allowance; an endpoint spreads requests evenly (tokens may burst a
        # second's worth, so one long prompt is not delayed alone).
        self._request_burst = float(rpm) if burst and rpm else 1.0
        self._token_burst = float(tpm) if burst and tpm else max((tpm or 0) / 60.0, 1.0)

    def book(self, tokens: int, *, wait: bool) -> float:
        """Book one request and `tokens`; returns the wait before going. `wait=False` books nothing when the
        caller would have to wait, and raises `CallerRateLimitedError` with that wait instead."""
        delay = 0.0
        if self.rpm:
            delay = self.store.take_rate(
                f"{self.scope}:rpm", self.rpm, 1.0, burst=self._request_burst, book_if_waiting=wait
            )
            if delay > 0 and not wait:
                raise CallerRateLimitedError(self.scope.partition(":")[2], "requests", self.rpm, delay)
        if self.tpm and tokens:
            amount = float(min(tokens, self.tpm))
            more = self.store.take_rate(
                f"{self.scope}:tpm", self.tpm, amount, burst=self._token_burst, book_if_waiting=wait
            )
            if more > 0 and not wait:
                raise CallerRateLimitedError(self.scope.partition(":")[2], "tokens", self.tpm, more)
            delay = max(delay, more)
        return delay

    def correct(self, booked: int, used: int) -> None:
        """After a call: book the tokens it used beyond what was booked (a debt the next calls wait for)."""
        if self.tpm and used > booked:
            self.store.take_rate(
                f"{self.scope}:tpm", self.tpm, float(used - booked), burst=self._token_burst, book_if_waiting=True
            )


class PacedModel(WrapperModel):
    """Paces an endpoint's requests and tokens per minute; every attempt (retries included) is paced."""

    def __init__(self, inner: Model, limiter: RateLimiter) -> None:
        super().__init__(inner)
        self.limiter = limiter

    async def handle(self, call: Call) -> Reply:
        delay = await asyncio.to_thread(self.limiter.book, call_tokens(call), wait=True)
        if delay > 0:
            await asyncio.sleep(delay)
        return await self.inner.handle(call)


class CallerRateModel(WrapperModel):
    """Refuses a call over its caller's (API key's) requests or tokens per minute, before anything is sent."""

    def __init__(self, inner: Model, store: Store) -> None:
        super().__init__(inner)
        self._store = store
        self._limiters: dict[tuple[str, int | None, int | None], RateLimiter] = {}

    async def handle(self, call: Call) -> Reply:
        rate = call.caller.rate
        if rate is None or not (rate.rpm or rate.tpm):
            return await self.inner.handle(call)
        key = (rate.scope, rate.rpm, rate.tpm)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = RateLimiter(self._store, rate.scope, rpm=rate.rpm, tpm=rate.tpm, burst=True)
        booked = call_tokens(call)
        await asyncio.to_thread(limiter.book, booked, wait=False)
        reply = await self.inner.handle(call)

        def correct(outcome: Outcome) -> None:
            if outcome.result is not None and limiter.tpm:
                limiter.correct(booked, effective_usage(call, outcome.result).total_tokens)

        return when_done(reply, correct)


class OutputDefaultModel(WrapperModel):
    """Gives a request that sets no `max_tokens` the endpoint's default (so its budget reservation is exact)."""

    def __init__(self, inner: Model, max_tokens: int) -> None:
        super().__init__(inner)
        self.default = max_tokens

    async def handle(self, call: Call) -> Reply:
        if isinstance(call, EmbedCall) or call.request.max_tokens is not None:
            return await self.inner.handle(call)
        request = call.request.model_copy(update={"max_tokens": self.default})
        return await self.inner.handle(dataclasses.replace(call, request=request))


class LimitedModel(WrapperModel):
    """Caps calls in flight in this process; a stream holds its slot until it ends."""

    def __init__(self, inner: Model, *, max_concurrency: int | None = None) -> None:
        super().__init__(inner)
        self._cap = max_concurrency or inner.max_concurrency
        self.max_concurrency = self._cap
        self._semaphores = PerLoop(lambda: asyncio.Semaphore(self._cap))

    async def handle(self, call: Call) -> Reply:
        semaphore = self._semaphores.get()
        await semaphore.acquire()
        try:
            reply = await self.inner.handle(call)
        except BaseException:
            semaphore.release()
            raise

        def release(outcome: Outcome) -> None:
            semaphore.release()

        return when_done(reply, release)
