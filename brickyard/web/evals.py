"""The figures of the evaluation pages: runs, the leaderboard's plot, the comparison in words, per-case outputs,
and people's labels exported as a new version of the evaluation set."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from brickyard.store.evals import CaseRow, EvalStore, Label
from brickyard.workspace import Workspace

RUNS_DIR = ("evals", "runs")
_RUN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,120}$")
FILTERS = ("all", "disagreements", "failures", "labelled")


def summaries(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per run, newest first: agent, set, candidates, chosen, best score."""
    out = []
    for rec in records:
        board = rec.get("leaderboard") or []
        primary = rec.get("primary")
        best = board[0]["metrics"].get(primary) if board and primary else None
        out.append(
            {
                "run_id": rec.get("run_id"),
                "agent": rec.get("agent"),
                "dataset": rec.get("dataset", {}),
                "started": rec.get("started"),
                "candidates": len(rec.get("candidates") or []),
                "chosen": rec.get("chosen"),
                "primary": primary,
                "best": best,
                "partial": rec.get("partial"),
            }
        )
    return out


def plot(rec: dict[str, Any]) -> dict[str, Any]:
    """Quality (primary metric with its 95% interval) against USD per 1k rows, or latency when costs are equal."""
    primary = rec["primary"]
    rows = [r for r in rec.get("leaderboard", []) if primary in r["metrics"]]
    flat = len({round(r["usd_per_1k"], 12) for r in rows}) <= 1
    axis = "latency_p50_s" if flat else "usd_per_1k"
    points = [
        {
            "id": r["id"],
            "x": r[axis],
            "y": r["metrics"][primary]["estimate"],
            "low": r["metrics"][primary]["low"],
            "high": r["metrics"][primary]["high"],
            "front": r["id"] in rec.get("pareto", []),
            "chosen": r["id"] == rec.get("chosen"),
        }
        for r in rows
    ]
    return {
        "metric": primary,
        "x_label": "latency p50 (s); every candidate costs the same" if flat else "USD per 1,000 rows",
        "points": points,
        "front": sorted(({"x": p["x"], "y": p["y"]} for p in points if p["front"]), key=lambda p: p["x"]),
    }


def comparison_words(rec: dict[str, Any]) -> str:
    """The paired comparison of the best two candidates, in a sentence."""
    c = rec.get("comparison")
    if not c:
        return "Fewer than two candidates finished, so there is nothing to compare."
    interval = f"{c['diff']:+.3f} (95% interval {c['low']:+.3f} to {c['high']:+.3f}, p = {c['p_value']:.3f})"
    if c.get("significant"):
        return (
            f"{c['best']} is better than {c['runner_up']} on {c['metric']} by {interval}: "
            "the difference is larger than chance explains."
        )
    return (
        f"{c['best']} and {c['runner_up']} are not distinguishable on {c['metric']}: the difference is {interval}, "
        "and the interval includes zero."
    )


def cases_path(workspace: Workspace, run_id: str) -> Path | None:
    if not _RUN_ID.match(run_id):
        return None
    return workspace.path.joinpath(*RUNS_DIR, f"{run_id}.cases.jsonl")


def case_table(
    workspace: Workspace, rec: dict[str, Any], labels: dict[str, Label]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The candidates, and per case its input, expected output and each candidate's output, score and verdict."""
    primary = f"score_{rec['primary']}"
    path = cases_path(workspace, str(rec["run_id"]))
    candidates = [c["id"] for c in rec.get("candidates", [])]
    cases: dict[str, dict[str, Any]] = {}
    if path is not None and path.exists():
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                row = json.loads(line)
                case = cases.setdefault(
                    row["case_id"],
                    {
                        "id": row["case_id"],
                        "input": row.get("input"),
                        "expected": _loads(row.get("expected")),
                        "outputs": {},
                    },
                )
                score = row.get(primary)
                case["outputs"][row["candidate"]] = {
                    "output": _loads(row.get("output")),
                    "error": row.get("error"),
                    "score": score,
                    "passed": row.get("error") is None and score is not None and score >= 0.5,
                }
    for case in cases.values():
        outputs = case["outputs"].values()
        case["disagree"] = len({json.dumps(o["output"], sort_keys=True, default=str) for o in outputs}) > 1
        case["failed"] = any(not o["passed"] for o in outputs)
        case["label"] = labels.get(case["id"])
    return candidates, list(cases.values())


def keep(case: dict[str, Any], which: str) -> bool:
    if which == "disagreements":
        return bool(case["disagree"])
    if which == "failures":
        return bool(case["failed"])
    if which == "labelled":
        return case["label"] is not None
    return True


def parse_corrected(text: str) -> Any:
    """A corrected expected output: JSON when it parses (a label, a list, an object), else the text itself."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def export(store: EvalStore, name: str, version: int, *, author: str) -> tuple[int, int]:
    """Save the set's cases with their labels as its next version; returns (new version, labelled cases)."""
    found = store.version(name, version)
    if found is None:
        raise LookupError(f"evaluation set {name} v{version} is not stored")
    labels = store.labels(name, version)
    cases = []
    for case in store.cases(name, version):
        label = labels.get(case.id)
        if label is None:
            cases.append(case)
            continue
        metadata = dict(case.metadata)
        if label.verdict:
            metadata["human_verdict"] = label.verdict
            if label.judged_output is not None:
                metadata["judged_output"] = label.judged_output
        if label.comment:
            metadata["human_comment"] = label.comment
        metadata["labelled_by"] = author
        expected = label.corrected if label.corrected is not None else case.expected
        cases.append(CaseRow(case.id, case.split, case.input, expected, metadata))
    new = store.add_version(
        name,
        cases,
        created=time.time(),
        source=f"{found.source} + console labels (v{version})",
        description=f"v{version} with {len(labels)} labelled case(s) from the console",
        seed=found.seed,
        dev_fraction=found.dev_fraction,
        synthetic=found.synthetic,
    )
    return new, len(labels)


def _loads(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
