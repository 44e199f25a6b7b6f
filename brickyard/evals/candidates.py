"""Candidates: an endpoint × a prompt strategy (× an instruction variant), and running one on cases.

A candidate is applied to the agent's spec to give the spec variant it stands for, so what is measured
is exactly what gets deployed when it is chosen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from brickyard._errors import BrickyardError, CostCapError, UserError
from brickyard.agents.runner import Agents
from brickyard.agents.spec import AgentKind, AgentSpec, Example, OptimizationState, Strategy
from brickyard.agents.trace import Trace
from brickyard.evals._types import Case
from brickyard.knowledge.answer import AnswerMode
from brickyard.models.budget import CostCap

MAX_DEMO_POOL = 200
"""At most this many labelled dev cases are kept in a spec as the pool few-shot demonstrations come from."""

SHORT = {Strategy.zero_shot: "zero-shot", Strategy.few_shot: "few-shot", Strategy.chain_of_thought: "cot"}


@dataclass(frozen=True)
class Candidate:
    """One thing to measure: an endpoint, a strategy, and optionally other instructions."""

    endpoint: str
    strategy: Strategy = Strategy.zero_shot
    k: int = 3
    variant: str | None = None
    instructions: str | None = None
    trained: bool = False
    """`ENDPOINT/classifier`: a logistic regression on this embedding endpoint's vectors, trained on the dev
    split for this sweep, answers instead of an LLM."""
    serving: str | None = None
    """The endpoint that answers for the candidate when it is not `endpoint` (the trained classifier's)."""
    answer_mode: AnswerMode | None = None
    """A knowledge agent's answer mode (`ENDPOINT/extractive`, `ENDPOINT/generative`); None keeps the spec's."""

    @property
    def id(self) -> str:
        if self.trained:
            return f"{self.endpoint}/classifier"
        if self.answer_mode is not None:
            return f"{self.endpoint}/{self.answer_mode.value}" + (f"/{self.variant}" if self.variant else "")
        shots = f"-{self.k}" if self.strategy is Strategy.few_shot else ""
        return f"{self.endpoint}/{SHORT[self.strategy]}{shots}" + (f"/{self.variant}" if self.variant else "")

    @property
    def target(self) -> str:
        """The endpoint that answers for this candidate."""
        return self.serving or self.endpoint

    def apply(self, spec: AgentSpec, demo_pool: Sequence[Case] = ()) -> AgentSpec:
        """The spec variant this candidate stands for (demonstrations come from `demo_pool`)."""
        if self.trained and self.serving is None:
            raise UserError(f"{self.id}: the classifier is trained by the evaluator before the sweep")
        update: dict[str, Any] = {"endpoint": self.target, "strategy": self.strategy}
        if self.answer_mode is not None:
            if spec.kind is not AgentKind.knowledge:
                raise UserError(f"{self.id}: an answer mode is for knowledge agents. Fix: ENDPOINT/zero-shot")
            update["answer_mode"] = self.answer_mode.value
        if self.strategy is Strategy.few_shot:
            labelled = [c for c in demo_pool if c.expected is not None][:MAX_DEMO_POOL]
            if not labelled:
                raise UserError(f"{self.id}: few-shot needs labelled dev cases. Fix: add expected outputs")
            update["examples"] = [Example(input=c.input, output=c.expected) for c in labelled]
            update["few_shot_k"] = self.k
        elif spec.kind is AgentKind.transform:
            update["examples"] = []  # zero-shot: no demonstrations at all
        if self.instructions is not None:
            update["instructions"] = self.instructions
        return spec.model_copy(update=update)


def strategies_for(kind: AgentKind, *, labelled_dev: bool) -> list[Strategy]:
    """The strategies a task allows: few-shot needs labelled dev cases; chain of thought fits classification."""
    if kind in (AgentKind.knowledge, AgentKind.supervisor):
        return [Strategy.zero_shot]
    strategies = [Strategy.zero_shot]
    if labelled_dev:
        strategies.append(Strategy.few_shot)
    if kind is AgentKind.classify:
        strategies.append(Strategy.chain_of_thought)
    return strategies


def parse_candidate(text: str) -> Candidate:
    """`ENDPOINT` or `ENDPOINT/STRATEGY` (zero-shot, few-shot, few-shot-5, cot, classifier; for a knowledge agent
    also extractive or generative, its answer mode)."""
    endpoint, _, strategy = text.strip().partition("/")
    if not endpoint:
        raise UserError(f"`{text}` is not a candidate. Fix: ENDPOINT or ENDPOINT/zero-shot|few-shot[-K]|cot|classifier")
    if strategy == "classifier":
        return Candidate(endpoint, trained=True)
    if strategy in (AnswerMode.extractive.value, AnswerMode.generative.value):
        return Candidate(endpoint, answer_mode=AnswerMode(strategy))
    if not strategy or strategy in ("zero-shot", "zero_shot"):
        return Candidate(endpoint)
    if strategy in ("cot", "chain_of_thought", "chain-of-thought"):
        return Candidate(endpoint, Strategy.chain_of_thought)
    if strategy.startswith(("few-shot", "few_shot")):
        k = strategy[len("few-shot") :].lstrip("-_")
        if k and not k.isdigit():
            raise UserError(f"`{text}`: few-shot takes a number of demonstrations, e.g. few-shot-5")
        return Candidate(endpoint, Strategy.few_shot, k=int(k) if k else 3)
    raise UserError(
        f"`{text}`: unknown strategy `{strategy}`. "
        "Fix: zero-shot, few-shot[-K], cot, classifier, extractive or generative"
    )


def expand(
    endpoints: Sequence[str],
    kind: AgentKind,
    *,
    labelled_dev: bool,
    k: int = 3,
    variants: dict[str, str] | None = None,
) -> list[Candidate]:
    """Every endpoint × every strategy the task allows × every instruction variant (or the spec's own)."""
    chosen: list[Candidate] = []
    for endpoint in endpoints:
        if "/" in endpoint:
            bases = [parse_candidate(endpoint)]
        else:
            bases = [Candidate(endpoint, s, k=k) for s in strategies_for(kind, labelled_dev=labelled_dev)]
        for base in bases:
            chosen.append(base)  # the spec's own instructions
            if base.trained:  # a classifier has no instructions to vary
                continue
            for name, text in (variants or {}).items():
                chosen.append(replace(base, variant=name, instructions=text))
    return list(dict.fromkeys(chosen))


@dataclass
class CaseRun:
    """One candidate's run on one case: its output or error, and what the run cost."""

    case_id: str
    output: Any = None
    error: str | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    calls: int = 0
    capped: bool = False
    """True when the case was not run because the sweep's cost cap was reached."""


async def run_cases(
    agents: Agents,
    spec: AgentSpec,
    cases: Sequence[Case],
    *,
    concurrency: int = 8,
    stop: asyncio.Event | None = None,
    cap: CostCap | None = None,
    on_done: Callable[[CaseRun], None] | None = None,
) -> list[CaseRun]:
    """Run a spec variant on every case; a failing case keeps its error. Once the cost `cap` is reached,
    `stop` is set and the cases the cap refused, and those not yet started, are marked capped."""
    semaphore = asyncio.Semaphore(concurrency)
    stop = stop or asyncio.Event()

    async def one(case: Case) -> CaseRun:
        run = await _one(case)
        if on_done is not None:
            on_done(run)
        return run

    async def _one(case: Case) -> CaseRun:
        async with semaphore:
            if stop.is_set():
                return CaseRun(case.id, capped=True)
            trace = Trace(agent=spec.name, version=0, input=case.input)
            started = time.perf_counter()
            run = CaseRun(case.id)
            try:
                run.output = await agents.execute(spec, case.input, trace)
            except CostCapError:
                stop.set()
                return CaseRun(case.id, capped=True)
            except BrickyardError as exc:
                run.error = f"{type(exc).__name__}: {exc}"
            if cap is not None and cap.reached:
                stop.set()
                if run.error is not None:
                    return CaseRun(case.id, capped=True)
            run.latency_s = time.perf_counter() - started
            run.cost_usd, run.input_tokens, run.output_tokens = trace.cost_usd, trace.input_tokens, trace.output_tokens
            run.calls = sum(1 for s in trace.steps if s.kind == "model")
            return run

    return list(await asyncio.gather(*(one(c) for c in cases)))


def chosen_spec(
    spec: AgentSpec, candidate: Candidate, demo_pool: Sequence[Case], evidence: dict[str, Any]
) -> AgentSpec:
    """The spec to deploy: the candidate's variant, marked COMPLETED with the evidence."""
    variant = candidate.apply(spec, demo_pool)
    return variant.model_copy(update={"optimization_state": OptimizationState.COMPLETED, "evidence": evidence})
