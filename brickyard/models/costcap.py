"""A USD cap shared by every model a job calls (a query's `--max-cost`, an evaluation sweep's `--max-cost`)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from brickyard._errors import BrickyardError
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, Usage, estimate_tokens
from brickyard.models.base import Model, WrapperModel
from brickyard.models.metering import Price


class CostCapError(BrickyardError):
    """A job would cost more than its cap."""


@dataclass
class CostCap:
    """A USD cap for one job, shared by every endpoint it calls."""

    limit_usd: float
    spent_usd: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    reached: bool = False


class CostCapModel(WrapperModel):
    """Refuses a call that would take the job past its cap (the call's cost is held until known)."""

    def __init__(
        self,
        inner: Model,
        cap: CostCap,
        price: Price,
        *,
        error: type[BrickyardError] = CostCapError,
        fix: str = "raise --max-cost",
    ) -> None:
        super().__init__(inner)
        self._cap, self._price, self._error, self._fix = cap, price, error, fix

    def _hold(self, estimate: float) -> None:
        with self._cap.lock:
            if self._cap.spent_usd + estimate > self._cap.limit_usd:
                self._cap.reached = True
                raise self._error(
                    f"the cost cap is reached: {self._cap.spent_usd:.6g} USD spent of {self._cap.limit_usd:.6g} "
                    f"and the next call would add about {estimate:.6g}. Fix: {self._fix}"
                )
            self._cap.spent_usd += estimate  # held until the real cost is known

    def _settle(self, estimate: float, actual: float) -> None:
        with self._cap.lock:
            self._cap.spent_usd += actual - estimate

    async def complete(self, request: ChatRequest) -> ChatResult:
        estimate = self._price.estimate(request)
        self._hold(estimate)
        result = None
        try:
            result = await self.inner.complete(request)
            return result
        finally:
            self._settle(estimate, result.cost_usd if result is not None else 0.0)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        """A stream keeps its estimate (prompt plus `max_tokens`) as its cost: chunks carry no usage."""
        self._hold(self._price.estimate(request))
        async for chunk in self.inner.stream(request):
            yield chunk

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        estimate = self._price.cost(Usage(sum(estimate_tokens(t) for t in texts), 0))
        self._hold(estimate)
        result = None
        try:
            result = await self.inner.embed(texts)
            return result
        finally:
            self._settle(estimate, self._price.cost(result.usage) if result is not None else 0.0)
