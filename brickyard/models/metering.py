"""Metering: one usage record for every call (chat, stream or embedding), success, failure or cancellation.

Each record names the endpoint that served (or failed), the caller's API key, tag and query id (from the
call), tokens (estimated when the provider reported none) and the cost at the endpoint's price.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from brickyard._errors import RefusedError
from brickyard.models._types import ChatResult, EmbeddingResult
from brickyard.models.base import Model, WrapperModel
from brickyard.models.budget import Price, effective_usage, outcome_cost, window_start
from brickyard.models.calls import Call, Outcome, Reply, when_done
from brickyard.store.base import Store, UsageRecord

__all__ = ["MeteredModel", "Price", "window_start"]


class MeteredModel(WrapperModel):
    """Appends one usage record per call and stamps the serving endpoint and cost on results."""

    def __init__(self, inner: Model, store: Store, *, endpoint: str, price: Price) -> None:
        super().__init__(inner)
        self._store, self._endpoint, self._price = store, endpoint, price

    async def handle(self, call: Call) -> Reply:
        started = time.time()
        try:
            reply = await self.inner.handle(call)
        except BaseException as exc:  # every failure is metered, then re-raised
            status = "cancelled" if not isinstance(exc, Exception) else _failure_status(exc)
            self._record(call, started, Outcome("error" if status != "cancelled" else "cancelled", None, exc), status)
            raise

        def finish(outcome: Outcome) -> ChatResult | EmbeddingResult | None:
            status = {"ok": "ok", "cancelled": "cancelled"}.get(outcome.status, "error")
            return self._record(call, started, outcome, status)

        if not isinstance(reply, ChatResult | EmbeddingResult) or self._store.buffered:
            return when_done(reply, finish)
        result = await asyncio.to_thread(finish, Outcome("ok", reply))  # an unbuffered store writes: off the loop
        return result if result is not None else reply

    def _record(self, call: Call, started: float, outcome: Outcome, status: str) -> ChatResult | EmbeddingResult | None:
        result = outcome.result
        usage = effective_usage(call, result) if result is not None else None
        cost = outcome_cost(call, outcome, self._price)
        cached = result is not None and result.cached
        caller = call.caller
        error = outcome.error
        self._store.record_usage(
            UsageRecord(
                ts=started,
                endpoint=self._endpoint,
                model=result.model if result is not None else self.inner.name,
                status=status,
                tag=call.tag,
                requested_endpoint=call.route.endpoint if call.route else None,
                key=caller.key,
                input_tokens=usage.input_tokens if usage else 0,
                output_tokens=usage.output_tokens if usage else 0,
                tokens_estimated=usage.estimated if usage else False,
                cost_usd=cost,
                latency_s=time.time() - started,
                cache_hit=cached,
                error=f"{type(error).__name__}: {error}"[:500] if isinstance(error, Exception) else None,
                extra={
                    "kind": call.kind,
                    **({"query": caller.query} if caller.query else {}),
                    **({"route": {"chose": call.route.chose, "reason": call.route.reason}} if call.route else {}),
                },
            )
        )
        if result is None or usage is None:
            return None
        if isinstance(result, ChatResult):
            return dataclasses.replace(result, usage=usage, cost_usd=cost, endpoint=result.endpoint or self._endpoint)
        return dataclasses.replace(result, usage=usage)


def _failure_status(exc: BaseException) -> str:
    return "budget_exceeded" if isinstance(exc, RefusedError) else "error"
