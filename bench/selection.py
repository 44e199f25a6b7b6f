"""Selection is itself measured (issue 12): the evaluator's choice on a small split against the truth of a large one.

For each task, the evaluator runs as a user would (default policy, racing) on a small split; the full sweep
runs on a large split of the same task that shares no case with it. The large split's best candidate and
its 95% interval are the "truth"; the choice is right when its score on the large split lies within that
interval (or within the policy's margin of the best). Cost is the small run's case runs and seconds against
the full sweep's on the large split.

Run all tasks (`python -m bench.selection`) or some (`python -m bench.selection knowledge`); the figures
are merged into `bench/results/selection.json`, so one task can be measured again alone.

Knowledge QA: a knowledge agent over a base of BoolQ dev passages (one document each); the cases are
questions whose own passage is in the base (`sources`), the expected answer is that passage. Retrieval is
the same for every candidate, so the primary metric is `citation_recall` (does the answer cite its own
passage); the candidates are the extractive answer and generative answers from SmolLM2 and Gemma 3.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import RESULTS, fresh_workspace, machine, save
from bench.extraction import INSTRUCTIONS, SCHEMA
from brickyard.agents.runner import Agents
from brickyard.agents.spec import parse_spec
from brickyard.datasets import conll_sentences, rotten_tomatoes
from brickyard.datasets.boolq import boolq
from brickyard.evals import Case, EvalDatasets, HalvingPlan, evaluate
from brickyard.evals.policy import DEFAULT_MARGIN_POINTS
from brickyard.knowledge import KnowledgeBase
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
        "metric": primary,
        "rungs": record["halving"].get("rungs", record["rungs"]),
        "chosen": record["chosen"],
        "case_runs": record["halving"]["case_runs"],
        "case_runs_full": record["halving"]["case_runs_full"],
        "stop_reason": record["halving"].get("stop_reason"),
        "undecided": record["halving"].get("undecided"),
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
    setup: Callable[[Workspace], None] | None = None,
) -> dict[str, Any]:
    """`small`/`large`: (test, dev) sizes; the two splits share no case. `setup` prepares the workspace
    (e.g. ingests a knowledge base) before the agent is created."""
    ws = fresh_workspace("parallel = 4\n")
    if setup is not None:
        setup(ws)
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


def classification(rt_large: int = 300) -> dict[str, Any]:
    reviews = rotten_tomatoes(120 + rt_large + 60, seed=23)
    cases = [Case(id=str(i), input=r.text, expected=r.label) for i, r in enumerate(reviews)]
    return asyncio.run(
        _task(
            "rt",
            cases,
            {"name": "rt", "kind": "classify", "labels": RT_LABELS, "endpoint": "smollm2"},
            ["smollm2/zero-shot", "smollm2/few-shot-3", "gemma3/few-shot-3", "e5-small/classifier"],
            small=(60, 60),
            large=(rt_large, 60),
        )
    )


def extraction(conll_large: int = 100) -> dict[str, Any]:
    sentences = conll_sentences(install=True)
    cases = [Case(id=str(i), input=s.text, expected=s.entities) for i, s in enumerate(sentences)]
    return asyncio.run(
        _task(
            "conll",
            cases,
            {"name": "ner", "kind": "extract", "output_schema": SCHEMA, "instructions": INSTRUCTIONS},
            ["smollm2/zero-shot", "gemma3/zero-shot"],
            small=(30, 10),
            large=(conll_large, 20),
        )
    )


KB_PASSAGES = 300


def _ingest(passages: list[str]) -> Callable[[Workspace], None]:
    """Writes each passage as its own document `pNNNN.txt` and ingests them into the base `boolq`."""

    def setup(ws: Workspace) -> None:
        folder = Path(tempfile.mkdtemp(prefix="brickyard-selection-kb-"))
        try:
            for i, passage in enumerate(passages):
                (folder / f"p{i:04d}.txt").write_text(passage, encoding="utf-8")
            with KnowledgeBase(ws, "boolq") as kb:
                report = kb.ingest(folder)
                if report.errors:
                    raise RuntimeError(f"ingest failed: {report.errors[:3]}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return setup


def knowledge(large: int = 60, small: int = 40) -> dict[str, Any]:
    pairs = boolq(KB_PASSAGES, seed=5, split="dev", install=True)
    cases = [
        Case(id=str(i), input=p.question, expected=p.passage, metadata={"sources": [f"p{i:04d}.txt"]})
        for i, p in enumerate(pairs)
    ]
    return asyncio.run(
        _task(
            "kqa",
            cases,
            {"name": "kqa", "kind": "knowledge", "knowledge_base": "boolq", "top_k": 3},
            ["smollm2/extractive", "smollm2/generative", "gemma3/generative"],
            small=(small, 2),
            large=(large, 2),
            setup=_ingest([p.passage for p in pairs]),
        )
    )


TASKS: dict[str, Callable[[], dict[str, Any]]] = {
    "classification": classification,
    "extraction": extraction,
    "knowledge": knowledge,
}


def _previous() -> dict[str, Any]:
    """The task figures already measured (each with its machine), to keep when other tasks are re-run."""
    path = RESULTS / "selection.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    shared = data.get("machine")
    tasks = {k: v for k, v in data.items() if isinstance(v, dict) and "verdict" in v}
    return {k: {"machine": shared, **v} if "machine" not in v else v for k, v in tasks.items()}


def run(tasks: list[str] | None = None) -> dict[str, Any]:
    """Measure the named tasks (all by default) and merge them into the stored figures."""
    names = tasks or list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    figures = _previous()
    for name in names:
        figures[name] = {**TASKS[name](), "machine": machine()}
    save("selection", figures)
    return figures


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:]), indent=1)[:4000])
