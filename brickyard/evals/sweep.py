"""A sweep: candidates scored on the test split with successive halving, bootstrap intervals and cost.

Successive halving: every surviving candidate is scored on a growing prefix of the test cases; after each
rung but the last, a candidate whose primary score is significantly below the leader's on the same cases
(paired bootstrap, p < alpha) is dropped. Clearly worse candidates stop early, so the sweep costs a
fraction of scoring every candidate on every case. The rungs are the geometric schedule's (n, n·eta, ...,
all; n at least `min_cases`); with `adaptive`, each after the first is sized from the differences and spread
observed so far (`HalvingPlan.grow`).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brickyard.agents.runner import Agents
from brickyard.agents.spec import AgentSpec
from brickyard.evals._types import Case, CaseScore, Scorer
from brickyard.evals.candidates import Candidate, CaseRun, run_cases
from brickyard.evals.datasets import Dataset
from brickyard.evals.policy import Policy, PolicyKind
from brickyard.evals.stats import (
    bootstrap_ci,
    decided_probability,
    equivalence,
    paired_comparison,
    paired_evidence,
    percentile,
)
from brickyard.models.base import Model
from brickyard.models.budget import CostCap
from brickyard.workspace import Workspace


@dataclass
class HalvingPlan:
    """How the sample grows. The geometric schedule (`rungs`: n, n·eta, ..., all, the first at least
    `min_cases`) gives the first rung and the most rungs there will be; with `adaptive`, each rung after the
    first is sized from what was observed (`grow`), else it is the schedule's."""

    eta: int = 2
    min_cases: int = 30
    alpha: float = 0.05
    enabled: bool = True
    racing: bool = True
    """Stop the whole sweep after a rung when the choice is known (see `Sweep._answer_known`)."""
    adaptive: bool = False
    """Size each rung after the first from what was seen (`grow`). Off by default: measured on the Rotten
    Tomatoes sweep (BENCHMARKS §8's set), it jumped from 30 cases to all 120 and used 100% of the full
    sweep's case runs where the geometric schedule used 90% (it counts only stopping the whole race as a
    saving, not dropping one candidate at an intermediate rung)."""

    def rungs(self, total: int, candidates: int) -> list[int]:
        """The geometric schedule: all, all/eta, ... down to the smallest size of at least `min_cases`. Its
        length follows the test set, not the candidate count (as classic halving's would): a candidate is
        dropped on evidence, not to halve the field, so a larger set gives racing more chances to stop early
        (on BENCHMARKS §8's 160-case CoNLL sweep, 4 rungs from 20 cases instead of 3 from 40)."""
        if not self.enabled or candidates < 2 or total <= self.min_cases:
            return [total]
        steps = int(math.log(total / self.min_cases, self.eta))
        sizes = [math.ceil(total / self.eta**j) for j in range(max(steps, 0), 0, -1)]
        return sorted({*sizes, total})

    def grow(self, done: int, total: int, decided: Callable[[int], float], *, last: bool) -> int:
        """The next rung's size after `done` cases: the size m (at least `min_cases` more, at most `total`) with
        the largest expected saving, `decided(m)` × (total − m): the chance the race is decided on m cases
        times the case runs per candidate it then spares. `total` when it is the `last` rung the schedule
        allows, or when no size is expected to spare a case. So a close race with a large spread goes
        straight to a large rung, and a nearly decided one takes a small step; sizes only grow, never pass
        the test set, and there are never more rungs (looks at the data) than the geometric schedule has."""
        lowest = done + self.min_cases
        if last or lowest >= total:
            return total
        step = max(1, (total - lowest) // 64)
        sizes = [*range(lowest, total, step), total]
        saving = {m: decided(m) * (total - m) for m in sizes}
        best = max(sizes, key=lambda m: (saving[m], -m))
        return best if saving[best] >= 1 else total


@dataclass
class CandidateResult:
    """Everything measured for one candidate."""

    candidate: Candidate
    runs: list[CaseRun] = field(default_factory=list)
    scores: dict[str, list[CaseScore]] = field(default_factory=dict)
    dropped_at: int | None = None

    @property
    def id(self) -> str:
        return self.candidate.id

    @property
    def ran(self) -> list[CaseRun]:
        return [r for r in self.runs if not r.capped]

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.runs)

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.runs if r.error]


@dataclass
class SweepResult:
    """A finished (or capped) sweep: per-candidate results and what the sweep saved."""

    run_id: str
    agent: str
    agent_version: int
    dataset: Dataset
    scorers: list[Scorer]
    results: list[CandidateResult]
    rungs: list[int]
    """The rung sizes actually used (cases per surviving candidate after each rung)."""
    partial: bool = False
    elapsed_s: float = 0.0
    started: float = field(default_factory=time.time)
    stop_reason: str | None = None
    """Why racing stopped the sweep before the last rung (None when it ran every rung)."""

    @property
    def primary(self) -> str:
        return self.scorers[0].name

    def scorer(self, name: str) -> Scorer:
        return next(s for s in self.scorers if s.name == name)

    def survivors(self) -> list[CandidateResult]:
        return [r for r in self.results if r.dropped_at is None and r.ran and any(x.output is not None for x in r.ran)]


async def score_runs(
    scorers: Sequence[Scorer], cases: Sequence[Case], runs: Sequence[CaseRun]
) -> dict[str, list[CaseScore]]:
    """Every scorer's verdict on the cases that ran (a failed case is passed as None and counts as 0)."""
    pairs = [(c, r) for c, r in zip(cases, runs, strict=True) if not r.capped]
    kept = [c for c, _ in pairs]
    outputs = [r.output if r.error is None else None for _, r in pairs]
    verdicts = await asyncio.gather(*(s.score(kept, outputs) for s in scorers))
    return {s.name: list(v) for s, v in zip(scorers, verdicts, strict=True)}


class Sweep:
    """Runs candidates for one agent on one dataset; `run()` returns a `SweepResult`."""

    def __init__(
        self,
        workspace: Workspace,
        spec: AgentSpec,
        agent_version: int,
        dataset: Dataset,
        candidates: Sequence[Candidate],
        scorers: Sequence[Scorer],
        *,
        plan: HalvingPlan | None = None,
        policy: Policy | None = None,
        max_cost_usd: float | None = None,
        cap: CostCap | None = None,
        concurrency: int = 8,
        console: Console | None = None,
    ) -> None:
        if not candidates:
            raise ValueError("a sweep needs at least one candidate")
        if not dataset.test:
            raise ValueError(f"dataset {dataset.name} has no test cases")
        self.workspace, self.spec, self.agent_version, self.dataset = workspace, spec, agent_version, dataset
        self.candidates = list(dict.fromkeys(candidates))
        self.scorers = list(scorers)
        self.plan = plan or HalvingPlan()
        self.policy = policy or Policy()
        self.cap = cap or (CostCap(max_cost_usd, kind="sweep") if max_cost_usd is not None else None)
        """Shared with the judges when given, so `--max-cost` covers the whole evaluation."""
        self.concurrency = concurrency
        self.console = console

    def _wrap(self) -> Callable[[str, Model], Model] | None:
        cap = self.cap
        if cap is None:
            return None
        registry = self.workspace.registry
        return lambda name, model: cap.bind(model, registry.store)

    async def run(self) -> SweepResult:
        started = time.perf_counter()
        agents = Agents(self.workspace, wrap_model=self._wrap())
        schedule = self.plan.rungs(len(self.dataset.test), len(self.candidates))
        results = [CandidateResult(c) for c in self.candidates]
        stop = asyncio.Event()
        variants = {c: c.apply(self.spec, self.dataset.dev) for c in self.candidates}
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=self.console is None,
            transient=True,
        )
        bar.start()
        self.stop_reason: str | None = None
        try:
            rungs = await self._rungs(agents, schedule, results, variants, stop, bar)
        finally:
            bar.stop()
            agents.close()
        elapsed = time.perf_counter() - started
        return SweepResult(
            run_id=uuid.uuid4().hex[:12],
            agent=self.spec.name,
            agent_version=self.agent_version,
            dataset=self.dataset,
            scorers=self.scorers,
            results=results,
            rungs=rungs,
            partial=stop.is_set(),
            elapsed_s=elapsed,
            stop_reason=self.stop_reason,
        )

    async def _rungs(
        self,
        agents: Agents,
        schedule: list[int],
        results: list[CandidateResult],
        variants: dict[Candidate, AgentSpec],
        stop: asyncio.Event,
        bar: Progress,
    ) -> list[int]:
        """Run the rungs; returns the sizes actually used (the schedule's when not `adaptive`)."""
        total = len(self.dataset.test)
        used: list[int] = []
        size = schedule[0]
        while True:
            alive = [r for r in results if r.dropped_at is None]
            done = used[-1] if used else 0
            label = f"rung {len(used) + 1} (of at most {len(schedule)})"
            for result in alive:
                await self._run_rung(agents, result, variants[result.candidate], done, size, stop, bar, label)
            used.append(size)
            if stop.is_set() or size >= total:
                return used
            self._drop_clearly_worse(alive, size)
            alive = [r for r in alive if r.dropped_at is None]
            self.stop_reason = self._answer_known(alive)
            if self.stop_reason is not None:
                self._say(f"  racing stops after {size} cases: {self.stop_reason}")
                return used
            size = self._next_size(alive, size, schedule, len(used))

    def _next_size(self, alive: list[CandidateResult], done: int, schedule: list[int], rungs_done: int) -> int:
        """The schedule's next size, or with `adaptive` the one the differences and spread seen ask for."""
        if not self.plan.adaptive:
            return schedule[rungs_done]
        if len(alive) < 2:  # nothing left to decide: the rest of the test set
            return len(self.dataset.test)
        decided = self._decided(alive)
        size = self.plan.grow(done, len(self.dataset.test), decided, last=rungs_done + 1 >= len(schedule))
        self._say(f"  next rung: {size} cases (decided there with probability {decided(size):.2f})")
        return size

    def _decided(self, alive: list[CandidateResult]) -> Callable[[int], float]:
        """The chance, as a function of the rung size, that every comparison racing waits on is decided
        (`stats.decided_probability`, taken as independent): each other candidate against the leader; under
        `cheapest_equivalent`, when the candidate it would choose now is the cheapest left, against that one,
        where "not better than it by more than the margin" also decides (as in `_answer_known`)."""
        primary = self.scorers[0]
        means = {r.id: primary.aggregate(r.scores[primary.name]) for r in alive}
        anchor = max(alive, key=lambda r: means[r.id])
        one_sided = False
        if self.policy.kind is PolicyKind.cheapest_equivalent:
            current, _ = self._current(anchor, [r for r in alive if r is not anchor])
            if _cheapest(current, alive):
                anchor, one_sided = current, True
        evidence = [
            paired_evidence(anchor.scores[primary.name], r.scores[primary.name], primary.aggregate)
            for r in alive
            if r is not anchor
        ]
        margin, alpha = self.policy.margin, self.plan.alpha

        def decided(m: int) -> float:
            return math.prod(
                decided_probability(e, m, margin=margin, alpha=alpha, one_sided=one_sided) for e in evidence
            )

        return decided

    async def _run_rung(
        self,
        agents: Agents,
        result: CandidateResult,
        variant: AgentSpec,
        done: int,
        size: int,
        stop: asyncio.Event,
        bar: Progress,
        label: str,
    ) -> None:
        """One candidate on test cases `done`..`size`: run, score, and keep the runs and scores."""
        new_cases = self.dataset.test[done:size]
        task = bar.add_task(f"{label} {result.id}", total=len(new_cases), stats="")
        errors = 0

        def advance(run: CaseRun) -> None:
            nonlocal errors
            errors += run.error is not None
            bar.update(task, advance=1, stats=f"{errors} errors")

        # no more in flight than the endpoint serves at once, so latencies are not queueing time
        slots = self.workspace.registry.get(result.candidate.target).max_concurrency or self.concurrency
        runs = await run_cases(
            agents,
            variant,
            new_cases,
            concurrency=min(self.concurrency, slots),
            stop=stop,
            cap=self.cap,
            on_done=advance,
        )
        bar.remove_task(task)
        self._say(f"{label}: {result.id} on cases {done + 1}–{size}, {errors} errors")
        verdicts = await score_runs(self.scorers, new_cases, runs)
        if self.cap is not None and self.cap.reached:  # a judge met the cap: stop, results are partial
            stop.set()
        result.runs.extend(runs)
        for name, scores in verdicts.items():
            result.scores.setdefault(name, []).extend(scores)

    def _answer_known(self, alive: list[CandidateResult]) -> str | None:
        """Why the choice is already known after this rung (None to go on): one candidate left; under
        `cheapest_equivalent`, every candidate left equivalent to the leader within the margin (then cost
        decides), or the candidate it would choose now is the cheapest, then fastest, of those left and none is
        better than it by more than the margin; or a leader significantly better than every other (the
        policies that choose by quality)."""
        if not self.plan.racing:
            return None
        if len(alive) == 1:
            return f"only {alive[0].id} is left"
        if self.policy.kind not in (PolicyKind.cheapest_equivalent, PolicyKind.max_quality):
            return None
        primary = self.scorers[0]
        metric = primary.aggregate
        means = {r.id: metric(r.scores[primary.name]) for r in alive}
        leader = max(alive, key=lambda r: means[r.id])
        lead = leader.scores[primary.name]
        others = [r for r in alive if r is not leader]
        if self.policy.kind is PolicyKind.cheapest_equivalent:
            margin = self.policy.margin
            current, every = self._current(leader, others)
            if every:
                return (
                    f"{', '.join(r.id for r in alive)} are equivalent within {margin * 100:g} points; "
                    "the cheapest is chosen"
                )
            # when nothing left is cheaper or faster than the candidate chosen now, only a candidate better than
            # it by more than the margin could change the choice: stop when every other is shown not to be
            if _cheapest(current, alive):
                mine = current.scores[primary.name]
                bounds = [
                    paired_comparison(r.scores[primary.name], mine, metric, alpha=2 * self.plan.alpha).high
                    for r in alive
                    if r is not current
                ]
                if all(bound < margin for bound in bounds):
                    return (
                        f"{current.id} is the cheapest, then fastest, and no other candidate is better than it by "
                        f"more than {margin * 100:g} points (one-sided 95% bound)"
                    )
        comparisons = [paired_comparison(lead, r.scores[primary.name], metric, alpha=self.plan.alpha) for r in others]
        if all(c.significant and c.low > 0 for c in comparisons):
            return f"{leader.id} is significantly better than every other candidate"
        return None

    def _current(self, leader: CandidateResult, others: list[CandidateResult]) -> tuple[CandidateResult, bool]:
        """The candidate `cheapest_equivalent` would choose now (the cheapest, then fastest, of the leader and
        those equivalent to it within the margin), and whether every other is equivalent to the leader."""
        primary = self.scorers[0]
        lead = leader.scores[primary.name]
        tests = [
            equivalence(lead, r.scores[primary.name], primary.aggregate, margin=self.policy.margin) for r in others
        ]
        pool = [leader, *(r for r, t in zip(others, tests, strict=True) if t.equivalent)]
        return min(pool, key=_spend), all(t.equivalent for t in tests)

    def _drop_clearly_worse(self, alive: list[CandidateResult], size: int) -> None:
        """Drop candidates the policy can no longer choose: over its cost limit, or significantly more than
        its margin below the leader on the same cases (the 95% interval of the paired difference clears it)."""
        primary = self.scorers[0]
        if self.policy.kind is PolicyKind.best_under:
            limit = self.policy.value or 0.0
            for result in alive:
                ran = result.ran
                if ran and 1000 * sum(x.cost_usd for x in ran) / len(ran) > limit:
                    result.dropped_at = size
                    self._say(f"  dropped {result.id}: over {limit:g} USD per 1k rows")
            alive = [r for r in alive if r.dropped_at is None]
        if len(alive) < 2:
            return
        means = {r.id: primary.aggregate(r.scores[primary.name]) for r in alive}
        leader = max(alive, key=lambda r: means[r.id])
        for result in alive:
            if result is leader:
                continue
            comparison = paired_comparison(
                leader.scores[primary.name], result.scores[primary.name], primary.aggregate, alpha=self.plan.alpha
            )
            if comparison.low > self.policy.margin and comparison.p_value < self.plan.alpha:
                result.dropped_at = size
                self._say(
                    f"  dropped {result.id}: {means[result.id]:.3f} vs {means[leader.id]:.3f} "
                    f"(p={comparison.p_value:.3f})"
                )

    def _say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, markup=False, highlight=False)


def _cheapest(result: CandidateResult, alive: list[CandidateResult]) -> bool:
    """Whether no other candidate left costs less, then runs faster, per case."""
    return not any(_spend(r) < _spend(result) for r in alive if r is not result)


def _spend(result: CandidateResult) -> tuple[float, float]:
    """What a candidate costs per case so far: mean USD, then median latency (the policy's order)."""
    ran = result.ran
    if not ran:
        return (math.inf, math.inf)
    latencies = sorted(x.latency_s for x in ran)
    return (sum(x.cost_usd for x in ran) / len(ran), latencies[len(latencies) // 2])


# -- summaries ---------------------------------------------------------------------------------------


@dataclass
class Row:
    """A leaderboard row."""

    id: str
    metrics: dict[str, dict[str, float]]
    cases: int
    errors: int
    cost_usd: float
    usd_per_1k: float
    latency_p50_s: float
    latency_p95_s: float
    input_tokens: int
    output_tokens: int
    dropped_at: int | None
    sample_errors: list[str]

    def score(self, metric: str) -> float:
        return self.metrics[metric]["estimate"]


def leaderboard(result: SweepResult, *, seed: int = 0) -> list[Row]:
    """One row per candidate, best primary score first (dropped candidates after survivors)."""
    rows = []
    for r in result.results:
        ran = r.ran
        metrics = {}
        for name, scores in r.scores.items():
            interval = bootstrap_ci(scores, result.scorer(name).aggregate, seed=seed)
            metrics[name] = {"estimate": interval.estimate, "low": interval.low, "high": interval.high}
        latencies = [x.latency_s for x in ran if x.error is None]
        cost = sum(x.cost_usd for x in ran)
        rows.append(
            Row(
                id=r.id,
                metrics=metrics,
                cases=len(ran),
                errors=sum(1 for x in ran if x.error),
                cost_usd=cost,
                usd_per_1k=1000 * cost / len(ran) if ran else 0.0,
                latency_p50_s=percentile(latencies, 50) if latencies else float("nan"),
                latency_p95_s=percentile(latencies, 95) if latencies else float("nan"),
                input_tokens=sum(x.input_tokens for x in ran),
                output_tokens=sum(x.output_tokens for x in ran),
                dropped_at=r.dropped_at,
                sample_errors=list(dict.fromkeys(r.errors))[:3],
            )
        )

    def key(row: Row) -> tuple[int, float]:
        score = row.metrics.get(result.primary, {}).get("estimate", float("nan"))
        return (row.dropped_at is not None, -(score if score == score else -1.0))

    return sorted(rows, key=key)


def halving_saving(result: SweepResult) -> dict[str, Any]:
    """What successive halving saved against scoring every candidate on every test case."""
    total = len(result.dataset.test)
    full_cases = total * len(result.results)
    ran_cases = sum(len(r.ran) for r in result.results)
    full_usd = 0.0
    full_calls = 0.0
    for r in result.results:
        ran = r.ran
        if ran:
            full_usd += total * sum(x.cost_usd for x in ran) / len(ran)
            full_calls += total * sum(x.calls for x in ran) / len(ran)
    spent = sum(r.cost_usd for r in result.results)
    calls = sum(sum(x.calls for x in r.ran) for r in result.results)
    return {
        "stop_reason": result.stop_reason,
        "rungs": result.rungs,
        "seconds": round(result.elapsed_s, 2),
        "seconds_full_estimate": round(result.elapsed_s * full_cases / ran_cases, 2) if ran_cases else 0.0,
        "case_runs": ran_cases,
        "case_runs_full": full_cases,
        "case_runs_saved": 1 - ran_cases / full_cases if full_cases else 0.0,
        "calls": calls,
        "calls_full_estimate": round(full_calls),
        "usd": spent,
        "usd_full_estimate": full_usd,
        "usd_saved": 1 - spent / full_usd if full_usd else 0.0,
    }
