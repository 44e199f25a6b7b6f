"""Selection is itself measured (issue 12): the evaluator's choice on a small split against the truth of a large one.

For each task, the evaluator runs as a user would (default policy, racing) on a small split; the full sweep
runs on a large split of the same task that shares no case with it. The large split's best candidate and
its 95% interval are the "truth"; the choice is right when its score on the large split lies within that
interval (or within the policy's margin of the best). Cost is the small run's case runs and seconds against
the full sweep's on the large split.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import fresh_workspace, save
from bench.extraction import INSTRUCTIONS, SCHEMA
from brickyard.agents.runner import Agents
from brickyard.agents.spec import parse_spec
from brickyard.datasets import conll_sentences, rotten_tomatoes
from brickyard.evals import Case, EvalDatasets, HalvingPlan, evaluate
from brickyard.evals.policy import DEFAULT_MARGIN_POINTS
from brickyard.workspace import Workspace

RT_LABELS = {"fresh": "a favourable review", "rotten": "an unfavourable review"}


async def _evaluate(
    ws: Workspace, agent: str, dataset: str, candidates: list[str], plan: HalvingPlan
) -> dict[str, Any]:
    started = time.perf_counter()
    record = (await evaluate(ws, agent, dataset, candidates=candidates, plan=plan, apply=False)).record
    primary = record["primary"]
    return {
        "seconds": time.perf_counter() - started,
        "chosen": record["chosen"],
        "case_runs": record["halving"]["case_runs"],
        "case_runs_full": record["halving"]["case_runs_full"],
        "stop_reason": record["halving"].get("stop_reason"),
        "scores": {
            row["id"]: {
                "estimate": row["metrics"][primary]["estimate"],
                "low": row["metrics"][primary]["low"],
                "high": row["metrics"][primary]["high"],
                "cases": row["cases"],
            }
            for row in record["leaderboard"]
        },
    }


def _verdict(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    scores = large["scores"]
    best = max(scores, key=lambda k: scores[k]["estimate"])
    chosen = small["chosen"]
    chosen_score = scores.get(chosen, {}).get("estimate")
    margin = DEFAULT_MARGIN_POINTS / 100
    within = chosen_score is not None and (
        chosen_score >= scores[best]["low"] or scores[best]["estimate"] - chosen_score <= margin
    )
    return {
        "chosen_on_small": chosen,
        "best_on_large": best,
        "best_interval": [scores[best]["low"], scores[best]["high"]],
        "chosen_score_on_large": chosen_score,
        "within_true_best_interval": within,
        "case_runs_share": small["case_runs"] / large["case_runs_full"],
        "seconds_share": small["seconds"] / large["seconds"],
    }


async def _task(
    name: str,
    cases: list[Case],
    spec: dict[str, Any],
    candidates: list[str],
    small: tuple[int, int],
    large: tuple[int, int],
) -> dict[str, Any]:
    """`small`/`large`: (test, dev) sizes; the two splits share no case."""
    ws = fresh_workspace("parallel = 4\n")
    datasets = EvalDatasets(ws.path)
    small_cases = cases[: sum(small)]
    large_cases = cases[sum(small) : sum(small) + sum(large)]
    datasets.create(f"{name}-small", small_cases, source=name, dev_fraction=small[1] / sum(small))
    datasets.create(f"{name}-large", large_cases, source=name, dev_fraction=large[1] / sum(large))
    datasets.close()
    Agents(ws).create(parse_spec(spec))
    ws = Workspace(ws.path, cache=False)  # every case really runs
    try:
        chosen = await _evaluate(ws, spec["name"], f"{name}-small", candidates, HalvingPlan(min_cases=20))
        truth = await _evaluate(ws, spec["name"], f"{name}-large", candidates, HalvingPlan(enabled=False))
    finally:
        await ws.aclose()
    return {
        "small": chosen,
        "large": truth,
        "verdict": _verdict(chosen, truth),
        "sizes": {"small": small, "large": large},
    }


def run(rt_large: int = 300, conll_large: int = 100) -> dict[str, Any]:
    reviews = rotten_tomatoes(120 + rt_large + 60, seed=23)
    rt_cases = [Case(id=str(i), input=r.text, expected=r.label) for i, r in enumerate(reviews)]
    sentences = conll_sentences(install=True)
    conll_cases = [Case(id=str(i), input=s.text, expected=s.entities) for i, s in enumerate(sentences)]
    figures = {
        "classification": asyncio.run(
            _task(
                "rt",
                rt_cases,
                {"name": "rt", "kind": "classify", "labels": RT_LABELS, "endpoint": "smollm2"},
                ["smollm2/zero-shot", "smollm2/few-shot-3", "gemma3/few-shot-3", "e5-small/classifier"],
                small=(60, 60),
                large=(rt_large, 60),
            )
        ),
        "extraction": asyncio.run(
            _task(
                "conll",
                conll_cases,
                {"name": "ner", "kind": "extract", "output_schema": SCHEMA, "instructions": INSTRUCTIONS},
                ["smollm2/zero-shot", "gemma3/zero-shot"],
                small=(30, 10),
                large=(conll_large, 20),
            )
        ),
    }
    save("selection", figures)
    return figures


if __name__ == "__main__":
    print(run())
