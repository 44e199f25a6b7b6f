"""Rung sizes that adapt to what the sweep has seen, and the "too small to decide" verdict, on scripted
candidates whose per-case answers are fixed by a seed (exact, repeatable assertions)."""

from __future__ import annotations

import itertools
import math
import random
import re

import numpy as np
import pytest
from conftest import DETERMINISTIC_CONFIG, write_config

from brickyard import FunctionModel, Workspace
from brickyard.agents.runner import Agents
from brickyard.agents.spec import parse_spec
from brickyard.config import EndpointConfig
from brickyard.evals import Case, EvalDatasets, HalvingPlan, evaluate
from brickyard.evals._types import CaseScore
from brickyard.evals.scorers import Accuracy
from brickyard.evals.stats import cases_needed, decided_probability, paired_comparison, paired_evidence
from brickyard.models._types import ChatRequest

LABELS = ["pos", "neg"]
TEST_CASES = 210  # 300 cases, 30% dev
SCHEDULE = [53, 105, 210]  # the geometric schedule for three candidates, min_cases=30


def gold(i: int) -> str:
    return LABELS[i % 2]


def scripted(accuracy: float, seed: int) -> FunctionModel:
    """Right on case i with probability `accuracy`, fixed per case by the seed."""

    def answer(request: ChatRequest) -> dict[str, str]:
        i = int(re.search(r"case (\d+)", str(request.messages[-1]["content"])).group(1))  # type: ignore[union-attr]
        return {"label": gold(i) if random.Random(seed * 100_003 + i).random() < accuracy else gold(i + 1)}

    return FunctionModel(answer, name=f"function:acc{accuracy}")


def register(ws: Workspace, name: str, accuracy: float, seed: int, price: float = 1.0) -> str:
    config = EndpointConfig(model=f"function:{name}", price_input_per_1m=price, price_output_per_1m=price, cache=False)
    ws.registry.register(name, scripted(accuracy, seed), config)
    return f"{name}/zero-shot"


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    ws = write_config(workspace, DETERMINISTIC_CONFIG)
    Agents(ws).create(parse_spec({"name": "sentiment", "kind": "classify", "labels": LABELS, "endpoint": "det"}))
    datasets = EvalDatasets(ws.path)
    cases = [Case(id=str(i), input=f"case {i}: some review text", expected=gold(i)) for i in range(300)]
    datasets.create("reviews", cases, source="test", dev_fraction=0.3, seed=7)
    datasets.create("few", cases[:40], source="test", dev_fraction=0.3, seed=7)
    datasets.close()
    return ws


def consistent(rec: dict) -> list[int]:
    """The record's rung facts agree with each other and with the leaderboard; returns the rungs."""
    rungs = rec["rungs"]
    assert rec["halving"]["rungs"] == rungs
    assert all(a < b for a, b in itertools.pairwise(rungs)) and rungs[-1] <= rec["dataset"]["test"]
    cases = [row["cases"] for row in rec["leaderboard"]]
    assert all(c in rungs for c in cases)  # every candidate stopped at a rung that was run
    assert rec["halving"]["case_runs"] == sum(cases)
    assert max(cases) == rungs[-1]
    return rungs


# -- the rule ----------------------------------------------------------------------------------------


def test_the_geometric_schedule_follows_the_test_set_not_the_candidate_count() -> None:
    plan = HalvingPlan(min_cases=30)
    assert plan.rungs(480, 5) == [30, 60, 120, 240, 480]  # classic halving would stop at 3 rungs for 5
    assert plan.rungs(480, 2) == [30, 60, 120, 240, 480]  # ... and at 1 for 2 candidates
    assert HalvingPlan(min_cases=20).rungs(160, 4) == [20, 40, 80, 160]
    assert plan.rungs(210, 3) == SCHEDULE  # the first rung is under twice min_cases
    assert plan.rungs(59, 5) == [59] and plan.rungs(30, 5) == [30]  # too few for two rungs of min_cases
    assert plan.rungs(480, 1) == [480] and HalvingPlan(enabled=False).rungs(480, 5) == [480]


def test_grow_takes_the_size_with_the_largest_expected_saving_within_its_bounds() -> None:
    plan = HalvingPlan(min_cases=30)
    # decided for certain from 150 cases on: 150 spares 60 cases, the most any size can
    assert plan.grow(53, 210, lambda m: float(m >= 150), last=False) == 150
    # certain at once: the smallest step allowed, min_cases more
    assert plan.grow(53, 210, lambda m: 1.0, last=False) == 83
    # never decided, or the schedule's last look: the whole test set
    assert plan.grow(53, 210, lambda m: 0.0, last=False) == 210
    assert plan.grow(53, 210, lambda m: 1.0, last=True) == 210
    assert plan.grow(190, 210, lambda m: 1.0, last=False) == 210  # not min_cases left
    rng = random.Random(3)
    for _ in range(200):  # any chance curve: sizes grow by at least min_cases and stay within the test set
        done, total = rng.randint(1, 300), rng.randint(1, 400)
        curve = sorted(rng.random() for _ in range(5))
        size = plan.grow(done, total, lambda m, c=curve: c[min(4, m // 80)], last=False)  # type: ignore[misc]
        assert size == total or done + 30 <= size < total


def test_decided_probability_tells_races_that_will_be_decided_from_those_that_will_not() -> None:
    """Simulated races (true differences from -0.1 to 0.1): predicted from the first 50 of 150 cases, the
    races given the better chances are decided on all 150 far more often. The chance is optimistic when
    true differences are small next to the noise (a flat prior): here about 0.5 predicted, 0.34 decided."""
    mean = Accuracy().aggregate
    rng = np.random.default_rng(0)
    predicted, decided = [], []
    for _ in range(200):
        a = rng.random(150) < 0.75
        b = np.where(rng.random(150) < 0.5, a, rng.random(150) < rng.uniform(0.55, 0.95))
        sa, sb = [CaseScore(float(x)) for x in a], [CaseScore(float(x)) for x in b]
        predicted.append(decided_probability(paired_evidence(sa[:50], sb[:50], mean), 150, margin=0.0))
        decided.append(paired_comparison(sa, sb, mean).significant)
    order = np.argsort(predicted)
    low, high = np.array(decided)[order[:100]].mean(), np.array(decided)[order[100:]].mean()
    assert high - low > 0.3, (low, high)
    assert float(np.mean(predicted)) < 0.6


def test_decided_probability_grows_with_the_cases_and_knows_a_settled_race() -> None:
    mean = Accuracy().aggregate
    rng = random.Random(1)
    a = [CaseScore(float(rng.random() < 0.8)) for _ in range(60)]
    b = [CaseScore(s.value if rng.random() < 0.6 else float(rng.random() < 0.7)) for s in a]
    evidence = paired_evidence(a, b, mean)
    chances = [decided_probability(evidence, m, margin=0.02) for m in (60, 120, 240, 480)]
    assert chances == sorted(chances) and chances[-1] > chances[0]
    same = paired_evidence(a, list(a), mean)  # identical answers: equivalent now, whatever comes
    assert decided_probability(same, 60, margin=0.02) == decided_probability(same, 600, margin=0.02) == 1.0
    assert cases_needed(a, list(a), mean, margin=0.02) == 0.0
    assert math.isinf(cases_needed(a, list(a), mean, margin=0.0))  # no margin: nothing can tell them apart


# -- in a sweep --------------------------------------------------------------------------------------


async def test_a_close_race_with_a_wide_spread_gets_a_larger_next_rung_than_the_fixed_schedule(
    ws: Workspace,
) -> None:
    candidates = [register(ws, "a", 0.70, 21), register(ws, "b", 0.70, 22, price=2.0), register(ws, "c", 0.3, 23)]
    fixed = (
        await evaluate(ws, "sentiment", "reviews", candidates=candidates, plan=HalvingPlan(adaptive=False), apply=False)
    ).record
    adaptive = (
        await evaluate(ws, "sentiment", "reviews", candidates=candidates, plan=HalvingPlan(adaptive=True), apply=False)
    ).record
    assert consistent(fixed) == SCHEDULE
    rungs = consistent(adaptive)
    assert rungs[0] == SCHEDULE[0] and len(rungs) <= len(SCHEDULE)
    assert rungs[1] > SCHEDULE[1]  # two 0.7s that disagree on many cases: a small step would decide nothing
    rows = {row["id"]: row for row in adaptive["leaderboard"]}
    assert rows["c/zero-shot"]["dropped_at"] == 53  # the clearly worse one still goes at the first rung


async def test_clear_differences_stop_at_the_first_rung(ws: Workspace) -> None:
    candidates = [register(ws, "ace", 0.97, 31, price=0.5), register(ws, "x", 0.3, 32), register(ws, "y", 0.35, 33)]
    rec = (
        await evaluate(ws, "sentiment", "reviews", candidates=candidates, plan=HalvingPlan(adaptive=True), apply=False)
    ).record
    assert consistent(rec) == [53]
    assert rec["halving"]["case_runs"] == 3 * 53 and rec["chosen"] == "ace/zero-shot"
    assert rec["halving"]["stop_reason"] == "only ace/zero-shot is left"
    assert rec["halving"]["undecided"] is None


async def test_without_racing_a_lone_survivor_goes_straight_to_the_whole_test_set(ws: Workspace) -> None:
    candidates = [register(ws, "ace", 0.97, 31, price=0.5), register(ws, "x", 0.3, 32), register(ws, "y", 0.35, 33)]
    plan = HalvingPlan(racing=False, adaptive=True)
    rec = (await evaluate(ws, "sentiment", "reviews", candidates=candidates, plan=plan, apply=False)).record
    assert consistent(rec) == [53, TEST_CASES]  # nothing left to decide after the drops: no look in between
    assert rec["halving"]["case_runs"] == 3 * 53 + (TEST_CASES - 53)


@pytest.mark.parametrize("seed", range(6))
async def test_rung_sizes_never_shrink_nor_pass_the_test_set(ws: Workspace, seed: int) -> None:
    rng = random.Random(seed)
    accuracies = [rng.uniform(0.55, 0.9) for _ in range(3)]
    candidates = [register(ws, f"m{i}", acc, seed * 10 + i, price=i + 1.0) for i, acc in enumerate(accuracies)]
    rec = (
        await evaluate(ws, "sentiment", "reviews", candidates=candidates, plan=HalvingPlan(adaptive=True), apply=False)
    ).record
    rungs = consistent(rec)
    assert rungs[0] == SCHEDULE[0] and len(rungs) <= len(SCHEDULE) and rungs[-1] <= TEST_CASES
    assert all(b - a >= 30 or b == TEST_CASES for a, b in itertools.pairwise(rungs))


# -- too small to decide -----------------------------------------------------------------------------


async def test_a_set_too_small_to_decide_says_so_and_how_many_cases_would_be_needed(ws: Workspace) -> None:
    candidates = [register(ws, "p", 0.62, 41, price=2.0), register(ws, "q", 0.58, 42)]
    rec = (await evaluate(ws, "sentiment", "few", candidates=candidates, apply=False)).record
    assert rec["dataset"]["test"] == 28 and rec["halving"]["stop_reason"] is None
    verdict = rec["halving"]["undecided"]
    assert verdict is not None and verdict["cases"] == 28
    assert {verdict["best"], verdict["rival"]} == {"p/zero-shot", "q/zero-shot"}
    assert verdict["cases_needed"] > 28
    assert f"about {verdict['cases_needed']} would be needed" in rec["choice_reason"]
    assert "too small" in rec["choice_reason"]
