"""Traces of agent runs: the steps, model calls, retrieved chunks, tokens, cost and latency."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from brickyard.models._types import ChatResult
from brickyard.models.base import Model, WrapperModel
from brickyard.models.calls import Call, EmbedCall, Outcome, Reply, when_done


@dataclass
class Step:
    """One thing an agent did: a model call, a retrieval, a tool call, a routing decision."""

    kind: str
    name: str
    detail: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None


@dataclass
class Trace:
    """Everything one run did, in order. `run_id` names it in `brickyard agent trace RUN_ID`."""

    agent: str
    version: int
    input: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    steps: list[Step] = field(default_factory=list)
    output: Any = None
    error: str | None = None
    latency_s: float = 0.0

    def add(self, kind: str, name: str, **detail: Any) -> Step:
        step = Step(kind=kind, name=name, detail=detail)
        self.steps.append(step)
        return step

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.steps)

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.steps)

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(input_tokens=self.input_tokens, output_tokens=self.output_tokens, cost_usd=self.cost_usd)
        return data


class TracingModel(WrapperModel):
    """Records every call made through it as a `model` step of a trace."""

    def __init__(self, inner: Model, trace: Trace, *, label: str = "") -> None:
        super().__init__(inner)
        self._trace = trace
        self._label = label or inner.name

    async def handle(self, call: Call) -> Reply:
        if isinstance(call, EmbedCall):
            step = self._trace.add("model", self._label, texts=len(call.texts), embedding=True)
        else:
            request = call.request
            step = self._trace.add(
                "model", self._label, messages=len(request.messages), structured=request.json_schema is not None
            )
        started = time.perf_counter()
        try:
            reply = await self.inner.handle(call)
        except Exception as exc:
            step.error = f"{type(exc).__name__}: {exc}"
            step.latency_s = time.perf_counter() - started
            raise

        def record(outcome: Outcome) -> None:
            step.latency_s = time.perf_counter() - started
            if outcome.error is not None:
                step.error = f"{type(outcome.error).__name__}: {outcome.error}"
            result = outcome.result
            if result is None:
                return
            step.input_tokens, step.output_tokens = result.usage.input_tokens, result.usage.output_tokens
            if isinstance(result, ChatResult):
                step.cost_usd = result.cost_usd
                step.detail.update(
                    endpoint=result.endpoint, model=result.model, cached=result.cached, answer=result.text[:500]
                )

        return when_done(reply, record)
