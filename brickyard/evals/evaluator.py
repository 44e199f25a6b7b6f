"""The evaluator: sweep candidates for an agent on a dataset, choose on evidence, write the choice and report.

`evaluate()` is what `brickyard eval run` calls; `estimate()` is its dry run; `rerun()` re-evaluates
against the stored set with any endpoints added since and says whether the choice would change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from brickyard._errors import BrickyardError, UserError
from brickyard.agents.runner import Agents
from brickyard.agents.spec import AgentKind, AgentSpec
from brickyard.agents.trace import Trace
from brickyard.batch import DEFAULT_OUTPUT_TOKENS
from brickyard.config import EndpointConfig
from brickyard.evals._types import Case, Scorer
from brickyard.evals.candidates import Candidate, chosen_spec, expand
from brickyard.evals.choice import (
    choose,
    compare_top,
    equivalent_to_best,
    evidence,
    explain,
    frontier,
    too_small,
    undecided,
)
from brickyard.evals.datasets import Dataset, EvalDatasets
from brickyard.evals.instructions import Proposal, failures_on_dev, propose
from brickyard.evals.judge_agreement import calibration_cases, measure
from brickyard.evals.judges import Judge
from brickyard.evals.policy import Policy, PolicyKind
from brickyard.evals.report import record, write_cases, write_report
from brickyard.evals.scorers import check_labels, default_scorers
from brickyard.evals.sweep import HalvingPlan, Sweep, halving_saving, leaderboard
from brickyard.models._types import ChatRequest, Usage, estimate_tokens
from brickyard.models.base import Model, WrapperModel
from brickyard.models.budget import CostCap
from brickyard.models.calls import Call, EmbedCall, Reply
from brickyard.models.classifier import BUILTIN_EMBEDDERS, ClassifierModel, ClassifierWeights
from brickyard.workspace import Workspace

EVALS_DIR = "evals"


def usable_chat_endpoints(workspace: Workspace) -> list[str]:
    """Endpoints that can answer chat now (key present, weights pulled), embedding-only ones left out."""
    registry = workspace.registry
    usable = []
    for name in registry.endpoint_names():
        config = registry.config_for(name)
        if config.model is not None and config.model.startswith("local:e5"):
            continue
        if registry.readiness(name) is None:
            usable.append(name)
    return usable


def scorers_for(
    workspace: Workspace, spec: AgentSpec, dataset: Dataset, judge: str | None, cap: CostCap | None = None
) -> list[Scorer]:
    """The task metrics for the agent's kind, plus LLM judges when a judge endpoint is given (their calls
    count against the evaluation's cost `cap`)."""
    from brickyard.evals.judges import default_judges
    from brickyard.evals.scorers import MRR, CitationRecall, RecallAtK

    embedder = workspace.registry.get(workspace.settings.defaults.embedding)
    labelled = dataset.labelled
    scorers: list[Scorer] = default_scorers(spec.kind, embedder=embedder, k=spec.top_k) if labelled else []
    if not all(case.metadata.get("sources") for case in dataset.test):  # retrieval metrics need expected sources
        scorers = [s for s in scorers if not isinstance(s, CitationRecall | RecallAtK | MRR)]
    if judge is not None:
        model = workspace.registry.get(judge)
        if cap is not None:
            model = cap.bind(model, workspace.store)
        scorers += default_judges(spec.kind, model, guidelines=spec.guidelines, labelled=labelled)
    if not scorers:
        raise UserError(
            f"dataset {dataset.name} has no expected outputs, so task metrics cannot be computed. "
            "Fix: add an `expected` column, or pass --judge ENDPOINT for judge-only scoring"
        )
    check_labels(scorers, dataset.test)
    return scorers


@dataclass
class Evaluation:
    """A finished evaluation: the record (plain data), where it was written, and the chosen spec version."""

    record: dict[str, Any]
    report_path: Path
    record_path: Path


def candidates_for(
    workspace: Workspace,
    spec: AgentSpec,
    dataset: Dataset,
    given: Sequence[str] | None,
    *,
    k: int = 3,
    variants: dict[str, str] | None = None,
) -> list[Candidate]:
    """The named candidates (or every usable endpoint) × strategies × instruction variants."""
    labelled_dev = any(c.expected is not None for c in dataset.dev)
    endpoints = list(given) if given else usable_chat_endpoints(workspace)
    if not endpoints:
        raise UserError("no usable endpoint to evaluate. Fix: `brickyard models pull smollm2-135m` or add endpoints")
    if not given and spec.kind is AgentKind.classify and labelled_dev:  # the embedding classifier, built in
        endpoints.append(f"{workspace.settings.defaults.embedding}/classifier")
    return expand(endpoints, spec.kind, labelled_dev=labelled_dev, k=k, variants=variants)


async def train_classifiers(
    workspace: Workspace, spec: AgentSpec, dataset: Dataset, candidates: Sequence[Candidate]
) -> list[Candidate]:
    """Train each `ENDPOINT/classifier` candidate on the dev split and register the endpoint that serves it."""
    from brickyard.evals.cascade_deploy import save_proxy_classifier

    out = []
    for candidate in candidates:
        if not candidate.trained:
            out.append(candidate)
            continue
        labelled = [c for c in dataset.dev if c.expected is not None]
        if spec.kind is not AgentKind.classify or not spec.labels or not labelled:
            raise UserError(
                f"{candidate.id}: a classifier is trained for a classify agent on labelled dev cases. "
                "Fix: drop this candidate, or add expected labels to the dev split"
            )
        path = await save_proxy_classifier(
            workspace, f"{spec.name}-{candidate.endpoint}", labelled, spec.labels, embedder=candidate.endpoint
        )
        name = f"{spec.name}-classifier-{path.stem.rsplit('-', 1)[-1]}"
        model = ClassifierModel(ClassifierWeights.load(path), workspace.registry.get(candidate.endpoint), name=name)
        workspace.registry.register(name, model, EndpointConfig(model=f"classifier:{path}"))
        out.append(replace(candidate, serving=name))
    return out


async def judge_agreement(scorers: Sequence[Scorer], cases: Sequence[Case]) -> dict[str, dict[str, Any]]:
    """Each LLM judge's agreement with the people's verdicts the set carries; `unknown` when it carries none."""
    judges = [s for s in scorers if isinstance(s, Judge)]
    sample = calibration_cases(cases)
    if not sample:
        return {s.name: {"judge": s.name, "cases": 0, "unknown": True} for s in judges}
    return {s.name: (await measure(s, sample)).to_dict() for s in judges}


def persistable(workspace: Workspace, candidate: Candidate) -> bool:
    """Whether a trained classifier can be served from brickyard.toml (the `classifier:` provider embeds
    with the bundled e5-small only)."""
    return not candidate.trained or candidate.endpoint in BUILTIN_EMBEDDERS


def persist_endpoint(workspace: Workspace, name: str) -> None:
    """Write a runtime-registered endpoint (a trained classifier) into brickyard.toml, so a chosen spec that
    names it keeps working after this process."""
    config = workspace.registry.config_for(name)
    text = workspace.config_path.read_text(encoding="utf-8") if workspace.config_path.exists() else ""
    if f"[endpoints.{name}]" in text:
        return
    block = f'\n[endpoints.{name}]  # trained by `brickyard eval run`\nmodel = "{config.model}"\n'
    workspace.config_path.write_text(text + block, encoding="utf-8")


async def evaluate(
    workspace: Workspace,
    agent: str,
    dataset_name: str,
    *,
    candidates: Sequence[str] | None = None,
    judge: str | None = None,
    policy: Policy | None = None,
    max_cost_usd: float | None = None,
    plan: HalvingPlan | None = None,
    apply: bool = True,
    report_path: Path | None = None,
    console: Console | None = None,
    k: int = 3,
    dataset_version: int | None = None,
    variants: dict[str, str] | None = None,
    teacher: str | None = None,
    proposals: int = 3,
) -> Evaluation:
    """Sweep, score, compare and choose; write the record, the per-case file and the HTML report.

    With a `teacher` endpoint, the teacher first proposes `proposals` revised instructions from the agent's
    failures on the dev split; each is a candidate variant, chosen (or not) on the test split like any other.
    """
    policy = policy or Policy()
    agents = Agents(workspace)
    spec, version = agents.store.get(agent)
    datasets = EvalDatasets(workspace)
    try:
        dataset = datasets.get(dataset_name, dataset_version)
        cap = CostCap(max_cost_usd, kind="sweep") if max_cost_usd is not None else None
        scorers = scorers_for(workspace, spec, dataset, judge, cap)
        proposed: list[Proposal] = []
        if teacher is not None:
            teacher_model = workspace.registry.get(teacher)  # a missing key fails here, before the dev run spends
            failures = await failures_on_dev(agents, spec, dataset.dev, scorers[0])
            proposed = await propose(teacher_model, spec, failures, n=proposals)
            variants = {**(variants or {}), **{p.name: p.instructions for p in proposed}}
        chosen_candidates = await train_classifiers(
            workspace, spec, dataset, candidates_for(workspace, spec, dataset, candidates, k=k, variants=variants)
        )
        sweep = Sweep(
            workspace,
            spec,
            version,
            dataset,
            chosen_candidates,
            scorers,
            plan=plan,
            policy=policy,
            cap=cap,
            console=console,
        )
        result = await sweep.run()
        rows = leaderboard(result)
        tests = equivalent_to_best(result, rows, policy.margin) if policy.kind is PolicyKind.cheapest_equivalent else {}
        chosen_row = choose(rows, result.primary, policy, result, tests)
        comparison = compare_top(result, rows)
        applied = None
        candidate = next((r.candidate for r in result.results if chosen_row and r.id == chosen_row.id), None)
        reason = explain(chosen_row, rows, policy, tests, result.primary)
        unsure = undecided(result, rows, policy.margin)
        if unsure is not None:
            reason += " " + too_small(unsure)
        if candidate is not None and not persistable(workspace, candidate):
            apply = False
            reason += (
                f" Not applied: a classifier on `{candidate.endpoint}` embeddings cannot be served from brickyard.toml"
                " (the classifier provider embeds with e5-small)."
            )
        if chosen_row is not None and candidate is not None and apply and not result.partial:
            if candidate.trained:
                persist_endpoint(workspace, candidate.target)
            proof = evidence(result, chosen_row, policy, comparison)
            applied = agents.create(chosen_spec(spec, candidate, dataset.dev, proof))
        rec = record(
            result,
            rows,
            policy=str(policy),
            chosen=chosen_row.id if chosen_row else None,
            comparison=comparison,
            pareto=frontier(rows, result.primary),
            saving={**halving_saving(result), "undecided": unsure},
            applied_version=applied,
            equivalence=tests,
            reason=reason,
        )
        rec["judge_agreement"] = await judge_agreement(scorers, [*dataset.dev, *dataset.test])
        rec["proposals"] = [
            {"name": p.name, "instructions": p.instructions, "from_failures": p.from_failures} for p in proposed
        ]
        folder = workspace.path / EVALS_DIR / "runs"
        folder.mkdir(parents=True, exist_ok=True)
        record_path = folder / f"{result.run_id}.json"
        record_path.write_text(json.dumps(rec, indent=1, default=str), encoding="utf-8")
        write_cases(result, folder)
        report = write_report(rec, report_path or folder / f"{result.run_id}.html")
        datasets.save_run(result.run_id, agent, dataset.name, dataset.version, rec)
        return Evaluation(rec, report, record_path)
    finally:
        datasets.close()
        agents.close()


# -- estimate ---------------------------------------------------------------------------------------


class _DryRun(BrickyardError):
    """Raised by the recording model: the request is counted, nothing is sent."""


class _Recorder(WrapperModel):
    def __init__(self, inner: Model, endpoint: str, sink: list[tuple[str, ChatRequest]]) -> None:
        super().__init__(inner)
        self._endpoint, self._sink = endpoint, sink

    async def handle(self, call: Call) -> Reply:
        if isinstance(call, EmbedCall):  # picking demonstrations: embeddings are looked up for real
            return await self.inner.handle(call)
        self._sink.append((self._endpoint, call.request))
        raise _DryRun("dry run")


async def estimate(
    workspace: Workspace,
    agent: str,
    dataset_name: str,
    *,
    candidates: Sequence[str] | None = None,
    judge: str | None = None,
    k: int = 3,
) -> dict[str, Any]:
    """Expected calls, tokens and USD of a full sweep (every candidate on every test case), sending nothing
    but local embedding calls for few-shot demonstrations. Successive halving can only spend less."""
    sink: list[tuple[str, ChatRequest]] = []
    agents = Agents(workspace, wrap_model=lambda name, model: _Recorder(model, name, sink))
    spec, _ = agents.store.get(agent)
    datasets = EvalDatasets(workspace)
    try:
        dataset = datasets.get(dataset_name)
        chosen = candidates_for(workspace, spec, dataset, candidates, k=k)
        per_candidate: list[dict[str, Any]] = []
        for candidate in chosen:
            if candidate.trained:  # trained on the dev split at run time; answers from embeddings, no LLM call
                per_candidate.append(
                    {"candidate": candidate.id, "calls": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0}
                )
                continue
            variant = candidate.apply(spec, dataset.dev)
            start = len(sink)
            for case in dataset.test:
                before = len(sink)
                try:
                    await agents.execute(variant, case.input, Trace(agent=agent, version=0, input=case.input))
                except BrickyardError as exc:  # the recorder stops every run at its first request
                    if len(sink) == before:
                        raise UserError(f"{candidate.id} cannot run: {exc}") from None
            requests = sink[start:]
            price = workspace.registry.price(candidate.target)
            tokens_in = sum(estimate_tokens(r.prompt_text()) for _, r in requests)
            tokens_out = sum(r.max_tokens or DEFAULT_OUTPUT_TOKENS for _, r in requests)
            per_candidate.append(
                {
                    "candidate": candidate.id,
                    "calls": len(requests),
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "usd": price.cost(Usage(tokens_in, tokens_out)),
                }
            )
        judges_calls, judge_usd = _judge_estimate(workspace, spec, dataset, judge, len(chosen))
        return {
            "agent": agent,
            "dataset": dataset.name,
            "test_cases": len(dataset.test),
            "candidates": per_candidate,
            "calls": sum(int(c["calls"]) for c in per_candidate) + judges_calls,
            "input_tokens": sum(int(c["input_tokens"]) for c in per_candidate),
            "output_tokens": sum(int(c["output_tokens"]) for c in per_candidate),
            "judge_calls": judges_calls,
            "usd": sum(float(c["usd"]) for c in per_candidate) + judge_usd,
        }
    finally:
        datasets.close()
        agents.close()


JUDGE_INSTRUCTION_TOKENS = 300
"""About what a judge's instructions add to the judged case and answer, for estimates."""


def _judge_estimate(
    workspace: Workspace, spec: AgentSpec, dataset: Dataset, judge: str | None, candidates: int
) -> tuple[int, float]:
    """Calls and USD of the LLM judges: each judge once per test case per candidate, at most `max_tokens` out."""
    if judge is None:
        return 0, 0.0
    from brickyard.evals.judges import Judge

    judges = [s for s in scorers_for(workspace, spec, dataset, judge) if isinstance(s, Judge)]
    price = workspace.registry.price(judge)
    usd = 0.0
    for case in dataset.test:
        prompt = JUDGE_INSTRUCTION_TOKENS + estimate_tokens(case.input) + 2 * estimate_tokens(json.dumps(case.expected))
        usd += sum(price.cost(Usage(prompt, j.max_tokens)) for j in judges)
    return len(dataset.test) * candidates * len(judges), usd * candidates


# -- rerun ------------------------------------------------------------------------------------------


async def rerun(
    workspace: Workspace, agent: str, *, console: Console | None = None, apply: bool = False, **options: Any
) -> tuple[Evaluation, dict[str, Any]]:
    """Evaluate again on the stored set with the last run's candidates plus endpoints added since.

    Answers already seen come from the response cache, so only new candidates cost calls. Returns the
    new evaluation and `{"previous": id, "now": id, "changed": bool, "new_candidates": [...]}`.
    """
    datasets = EvalDatasets(workspace)
    try:
        runs = datasets.runs(agent)
    finally:
        datasets.close()
    if not runs:
        raise UserError(f"agent {agent} has no evaluation to rerun. Fix: `brickyard eval run {agent} --dataset NAME`")
    last = runs[0]
    previous = [c["id"] for c in last["candidates"]]
    old_endpoints = {c["endpoint"] for c in last["candidates"]}
    added = [e for e in usable_chat_endpoints(workspace) if e not in old_endpoints]
    agents, datasets = Agents(workspace), EvalDatasets(workspace)
    try:
        spec, _ = agents.store.get(agent)
        dataset = datasets.get(last["dataset"]["name"], last["dataset"]["version"])
    finally:
        agents.close()
        datasets.close()
    labelled_dev = any(c.expected is not None for c in dataset.dev)
    new = [c.id for c in expand(added, spec.kind, labelled_dev=labelled_dev)]
    evaluation = await evaluate(
        workspace,
        agent,
        last["dataset"]["name"],
        candidates=[*previous, *new],
        policy=Policy.parse(last["policy"]),
        dataset_version=last["dataset"]["version"],
        apply=apply,
        console=console,
        **options,
    )
    now = evaluation.record["chosen"]
    return evaluation, {"previous": last["chosen"], "now": now, "changed": now != last["chosen"], "new_candidates": new}
