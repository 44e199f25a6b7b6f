"""Choosing on evidence: selection policies, the paired comparison of the top two, the Pareto frontier."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from brickyard.evals._types import CaseScore
from brickyard.evals.policy import Policy, PolicyKind
from brickyard.evals.stats import cases_needed, equivalence, paired_comparison, pareto_frontier
from brickyard.evals.sweep import Row, SweepResult


def _cost_key(row: Row) -> tuple[float, float]:
    latency = row.latency_p50_s if row.latency_p50_s == row.latency_p50_s else math.inf
    return (row.usd_per_1k, latency)


def _finished(rows: list[Row], primary: str) -> list[Row]:
    return [r for r in rows if r.dropped_at is None and r.cases > r.errors and primary in r.metrics]


def _best(rows: list[Row], primary: str) -> Row:
    return max(rows, key=lambda r: (r.score(primary), [-x for x in _cost_key(r)]))


def _against_best(
    result: SweepResult, finished: list[Row]
) -> Iterator[tuple[Row, Row, list[CaseScore], list[CaseScore]]]:
    """(best, other, best's scores, other's scores) for every other finished candidate, on their common cases."""
    best = _best(finished, result.primary)
    by_id = {r.id: r for r in result.results}
    for row in finished:
        if row.id != best.id:
            a, b = by_id[best.id].scores[result.primary], by_id[row.id].scores[result.primary]
            n = min(len(a), len(b))
            yield best, row, a[:n], b[:n]


def equivalent_to_best(result: SweepResult, rows: list[Row], margin: float) -> dict[str, dict[str, Any]]:
    """Each finished candidate's equivalence test against the best on their common cases (TOST, ±margin)."""
    finished = _finished(rows, result.primary)
    if not finished:
        return {}
    scorer = result.scorer(result.primary)
    out: dict[str, dict[str, Any]] = {}
    for best, row, a, b in _against_best(result, finished):
        test = equivalence(a, b, scorer.aggregate, margin=margin)
        out[row.id] = {
            "best": best.id,
            "diff": test.diff,
            "low": test.low,
            "high": test.high,
            "margin": margin,
            "equivalent": test.equivalent,
        }
    return out


def choose(
    rows: list[Row],
    primary: str,
    policy: Policy,
    result: SweepResult | None = None,
    tests: dict[str, dict[str, Any]] | None = None,
) -> Row | None:
    """The candidate the policy picks among those still in the sweep (None when none qualifies).

    `cheapest_equivalent` needs the sweep's per-case scores (`result`), or the equivalence `tests` already
    computed from them: the cheapest, then fastest, of the best and the candidates equivalent to it.
    """
    finished = _finished(rows, primary)
    if not finished:
        return None
    best = _best(finished, primary)
    if policy.kind is PolicyKind.max_quality:
        return best
    if policy.kind is PolicyKind.cheapest_equivalent:
        if tests is None:
            if result is None:
                raise ValueError("cheapest_equivalent needs the sweep result (per-case scores)")
            tests = equivalent_to_best(result, rows, policy.margin)
        pool = [best, *(r for r in finished if tests.get(r.id, {}).get("equivalent"))]
        return min(pool, key=lambda r: (*_cost_key(r), -r.score(primary)))
    if policy.kind is PolicyKind.cheapest_within:
        floor = best.score(primary) - (policy.value or 0.0) / 100
        eligible = [r for r in finished if r.score(primary) >= floor - 1e-12]
        return min(eligible, key=lambda r: (*_cost_key(r), -r.score(primary)))
    eligible = [r for r in finished if r.usd_per_1k <= (policy.value or 0.0) + 1e-12]
    return max(eligible, key=lambda r: (r.score(primary), [-x for x in _cost_key(r)])) if eligible else None


def explain(chosen: Row | None, rows: list[Row], policy: Policy, tests: dict[str, dict[str, Any]], primary: str) -> str:
    """The choice in words: which candidates are indistinguishable from the best, and why this one."""
    if chosen is None:
        return f"no candidate qualified under {policy}"
    if policy.kind is not PolicyKind.cheapest_equivalent:
        return f"{chosen.id} chosen by {policy}"
    best = next((t["best"] for t in tests.values()), chosen.id)
    points = policy.margin * 100
    same = [cid for cid, t in tests.items() if t["equivalent"]]
    unsure = [cid for cid, t in tests.items() if not t["equivalent"]]
    words = [f"the best {primary} is {best}'s."]
    if same:
        words.append(
            f"{', '.join(same)} {'is' if len(same) == 1 else 'are'} equivalent to it within {points:g} points "
            "(the 90% interval of the paired difference lies inside the margin)."
        )
    if unsure:
        words.append(
            f"{', '.join(unsure)} could not be shown equivalent within {points:g} points, so "
            f"{'it is' if len(unsure) == 1 else 'they are'} not eligible."
        )
    if chosen.id == best and same:
        words.append(f"{chosen.id} is chosen: the best, and the cheapest, then fastest, of the equivalent candidates.")
    elif chosen.id == best:
        words.append(f"{chosen.id} is chosen: no cheaper or faster candidate was shown equivalent.")
    else:
        words.append(f"{chosen.id} is chosen as the cheapest, then fastest, of the equivalent candidates.")
    return " ".join(words)


def undecided(result: SweepResult, rows: list[Row], margin: float) -> dict[str, Any] | None:
    """When the sweep ran every case and still could not tell the best from another candidate (neither a
    significant difference nor equivalence within `margin`): that candidate, the cases scored and about how
    many would be needed for the variance observed (`stats.cases_needed`, the estimate that sizes the rungs;
    None when no number would do). None when every comparison is decided or racing stopped the sweep."""
    finished = _finished(rows, result.primary)
    if result.stop_reason is not None or len(finished) < 2:
        return None
    scorer = result.scorer(result.primary)
    worst: dict[str, Any] | None = None
    for best, row, a, b in _against_best(result, finished):
        n = len(a)
        needed = cases_needed(a, b, scorer.aggregate, margin=margin)
        if needed > n and (worst is None or needed > worst["_needed"]):
            worst = {"best": best.id, "rival": row.id, "cases": n, "_needed": needed}
    if worst is None:
        return None
    needed = worst.pop("_needed")
    return {**worst, "cases_needed": math.ceil(needed) if math.isfinite(needed) else None}


def too_small(verdict: dict[str, Any]) -> str:
    """`undecided` in words."""
    head = f"The test set is too small to tell {verdict['best']} from {verdict['rival']} on {verdict['cases']} cases"
    if verdict["cases_needed"] is None:
        return head + ": they score the same, and no number of cases would separate them without a margin."
    return head + f": about {verdict['cases_needed']} would be needed for the variance observed."


def frontier(rows: list[Row], primary: str) -> list[str]:
    """Candidate ids on the quality-vs-cost Pareto frontier (cost: USD per 1k rows; when every candidate
    costs the same, e.g. all local, latency p50 stands in for cost)."""
    finished = [r for r in rows if r.dropped_at is None and primary in r.metrics]
    if not finished:
        return []
    flat_usd = len({round(r.usd_per_1k, 12) for r in finished}) == 1
    points = [(r.score(primary), r.latency_p50_s if flat_usd else r.usd_per_1k) for r in finished]
    points = [(q, c if c == c else math.inf) for q, c in points]
    return [finished[i].id for i in pareto_frontier(points)]


def compare_top(result: SweepResult, rows: list[Row]) -> dict[str, Any] | None:
    """Is the best significantly better than the runner-up on the same cases? (paired bootstrap)"""
    finished = [r for r in rows if r.dropped_at is None and result.primary in r.metrics]
    if len(finished) < 2:
        return None
    best, second = finished[0], finished[1]
    by_id = {r.id: r for r in result.results}
    scorer = result.scorer(result.primary)
    a, b = by_id[best.id].scores[result.primary], by_id[second.id].scores[result.primary]
    n = min(len(a), len(b))
    comparison = paired_comparison(a[:n], b[:n], scorer.aggregate)
    return {
        "best": best.id,
        "runner_up": second.id,
        "metric": result.primary,
        "diff": float(comparison.diff),
        "low": float(comparison.low),
        "high": float(comparison.high),
        "p_value": float(comparison.p_value),
        "significant": bool(comparison.significant),
    }


def evidence(result: SweepResult, chosen: Row, policy: Policy, comparison: dict[str, Any] | None) -> dict[str, Any]:
    """What is written into the agent spec with the choice."""
    return {
        "run_id": result.run_id,
        "dataset": result.dataset.name,
        "dataset_version": result.dataset.version,
        "test_cases": len(result.dataset.test),
        "candidate": chosen.id,
        "policy": str(policy),
        "metric": result.primary,
        "score": chosen.metrics[result.primary],
        "usd_per_1k": chosen.usd_per_1k,
        "latency_p50_s": chosen.latency_p50_s,
        "comparison": comparison,
        "candidates": len(result.results),
        "partial": result.partial,
    }
