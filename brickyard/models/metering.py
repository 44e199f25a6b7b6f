"""Metering (a usage record for every call) and USD budgets checked before a call is sent."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from brickyard._errors import BudgetExceededError
from brickyard.config import BudgetConfig, Window
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, Usage, estimate_tokens
from brickyard.models.base import Model, WrapperModel
from brickyard.models.caller import current_caller
from brickyard.store.base import Store, UsageRecord


@dataclasses.dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input_per_1m: float = 0.0
    output_per_1m: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input_per_1m + usage.output_tokens * self.output_per_1m) / 1e6

    def estimate(self, request: ChatRequest) -> float:
        """The cost of a request before it runs (prompt estimate plus `max_tokens` of output)."""
        return self.cost(Usage(estimate_tokens(request.prompt_text()), request.max_tokens or 0))


def window_start(window: Window, now: float | None = None) -> float:
    """The UTC start of the current day or month, as a timestamp."""
    at = datetime.fromtimestamp(now if now is not None else time.time(), tz=UTC)
    start = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if window is Window.month:
        start = start.replace(day=1)
    return start.timestamp()


class BudgetBook:
    """Checks budgets against the ledger plus what this process has in flight, and reserves."""

    def __init__(self, store: Store, budgets: list[BudgetConfig]) -> None:
        self._store = store
        self._budgets = budgets
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._reserved_by_budget: dict[int, dict[int, float]] = {}

    def applicable(self, endpoint: str, tag: str | None) -> list[BudgetConfig]:
        if not self._budgets:
            return []
        return [b for b in self._budgets if b.endpoint == endpoint or (b.tag is not None and b.tag == tag)]

    def reserve(self, endpoint: str, tag: str | None, estimate_usd: float) -> int | None:
        """Refuse (raise) when a budget would be exceeded; else hold `estimate_usd` and return a ticket."""
        budgets = self.applicable(endpoint, tag)
        return self.reserve_for(budgets, estimate_usd) if budgets else None

    def reserve_for(self, budgets: list[BudgetConfig], estimate_usd: float) -> int:
        """`reserve` against budgets already picked with `applicable` (reads the ledger: call off the loop)."""
        with self._lock:
            return self._reserve_locked(budgets, estimate_usd)

    def _reserve_locked(self, budgets: list[BudgetConfig], estimate_usd: float) -> int:
        ticket = next(self._ids)
        for budget in budgets:
            spent = self._store.spent_usd(since=window_start(budget.window), endpoint=budget.endpoint, tag=budget.tag)
            held = sum(self._reserved_by_budget.get(id(budget), {}).values())
            if spent >= budget.limit_usd or spent + held + estimate_usd > budget.limit_usd:
                self._release_locked(ticket)
                raise BudgetExceededError(budget.scope, budget.limit_usd, spent + held, budget.window.value)
            self._reserved_by_budget.setdefault(id(budget), {})[ticket] = estimate_usd
        return ticket

    def release(self, ticket: int | None) -> None:
        if ticket is None:
            return
        with self._lock:
            self._release_locked(ticket)

    def _release_locked(self, ticket: int) -> None:
        for held in self._reserved_by_budget.values():
            held.pop(ticket, None)


class BudgetedModel(WrapperModel):
    """Refuses a call before it is sent when the endpoint's or the tag's budget is spent."""

    def __init__(self, inner: Model, book: BudgetBook, *, endpoint: str, price: Price) -> None:
        super().__init__(inner)
        self._book, self._endpoint, self._price = book, endpoint, price

    async def _reserve(self, request: ChatRequest) -> int | None:
        """Check and hold against the budgets that apply; no thread hop (nor estimate) when none does."""
        budgets = self._book.applicable(self._endpoint, request.tag)
        if not budgets:
            return None
        return await asyncio.to_thread(self._book.reserve_for, budgets, self._price.estimate(request))

    async def complete(self, request: ChatRequest) -> ChatResult:
        ticket = await self._reserve(request)
        try:
            return await self.inner.complete(request)
        finally:
            self._book.release(ticket)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        ticket = await self._reserve(request)
        try:
            async for piece in self.inner.stream(request):
                yield piece
        finally:
            self._book.release(ticket)


class MeteredModel(WrapperModel):
    """Appends one usage record per call, success or failure, and stamps endpoint and cost on results.

    Each record names the API key the call is made for (`current_caller()`), so with fallbacks every
    endpoint that served, or failed, charges its own call to that key.
    """

    def __init__(self, inner: Model, store: Store, *, endpoint: str, price: Price) -> None:
        super().__init__(inner)
        self._store, self._endpoint, self._price = store, endpoint, price

    async def _record(self, record: UsageRecord) -> None:
        if self._store.buffered:  # a queue append: microseconds, no thread hop
            self._store.record_usage(record)
        else:
            await asyncio.to_thread(self._store.record_usage, record)

    async def complete(self, request: ChatRequest) -> ChatResult:
        started = time.time()
        try:
            result = await self.inner.complete(request)
        except Exception as exc:  # every failure is metered, then re-raised
            await self._record_failure(request, started, exc)
            raise
        usage = result.usage
        if usage.input_tokens == 0 and usage.output_tokens == 0 and not result.cached:
            usage = Usage(estimate_tokens(request.prompt_text()), estimate_tokens(result.text), estimated=True)
        cost = 0.0 if result.cached else self._price.cost(usage)
        result = dataclasses.replace(result, usage=usage, cost_usd=cost, endpoint=self._endpoint)
        record = UsageRecord(
            ts=started,
            endpoint=self._endpoint,
            model=result.model,
            tag=request.tag,
            key=current_caller(),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            tokens_estimated=usage.estimated,
            cost_usd=cost,
            latency_s=time.time() - started,
            cache_hit=result.cached,
        )
        await self._record(record)
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        started = time.time()
        caller = current_caller()
        pieces: list[str] = []
        try:
            async for piece in self.inner.stream(request):
                pieces.append(piece)
                yield piece
        except Exception as exc:  # every failure is metered, then re-raised
            await self._record_failure(request, started, exc, caller=caller)
            raise
        except BaseException:  # closed or cancelled mid-stream (the client went away): charge what was produced
            record = self._stream_record(request, started, pieces, caller, status="cancelled")
            self._store.record_usage(record)  # no await while being cancelled; a buffered store only queues
            raise
        await self._record(self._stream_record(request, started, pieces, caller))

    def _stream_record(
        self, request: ChatRequest, started: float, pieces: list[str], caller: str | None, status: str = "ok"
    ) -> UsageRecord:
        usage = Usage(estimate_tokens(request.prompt_text()), estimate_tokens("".join(pieces)), estimated=True)
        return UsageRecord(
            ts=started,
            endpoint=self._endpoint,
            model=self.inner.name,
            status=status,
            tag=request.tag,
            key=caller,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            tokens_estimated=True,
            cost_usd=self._price.cost(usage),
            latency_s=time.time() - started,
        )

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        started = time.time()
        try:
            result = await self.inner.embed(texts)
        except Exception as exc:  # every failure is metered, then re-raised
            await self._record_failure(None, started, exc)
            raise
        usage = result.usage
        if usage.input_tokens == 0:
            usage = Usage(sum(estimate_tokens(t) for t in texts), 0, estimated=True)
        cost = self._price.cost(usage)
        await self._record(
            UsageRecord(
                ts=started,
                endpoint=self._endpoint,
                model=result.model,
                key=current_caller(),
                input_tokens=usage.input_tokens,
                tokens_estimated=usage.estimated,
                cost_usd=cost,
                latency_s=time.time() - started,
            ),
        )
        return dataclasses.replace(result, usage=usage)

    async def _record_failure(
        self, request: ChatRequest | None, started: float, exc: Exception, *, caller: str | None = None
    ) -> None:
        status = "budget_exceeded" if isinstance(exc, BudgetExceededError) else "error"
        await self._record(
            UsageRecord(
                ts=started,
                endpoint=self._endpoint,
                model=self.inner.name,
                status=status,
                tag=request.tag if request else None,
                key=caller if caller is not None else current_caller(),
                latency_s=time.time() - started,
                error=f"{type(exc).__name__}: {exc}"[:500],
            ),
        )
