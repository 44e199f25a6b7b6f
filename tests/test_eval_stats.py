"""Bootstrap intervals, paired comparisons, the Pareto frontier and percentiles, on known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brickyard._errors import UserError
from brickyard.evals._types import Case, CaseScore
from brickyard.evals.scorers import Accuracy, FieldF1, MacroF1
from brickyard.evals.stats import bootstrap_ci, paired_comparison, pareto_frontier, percentile


def _bernoulli(p: float, n: int, seed: int) -> list[CaseScore]:
    rng = np.random.default_rng(seed)
    return [CaseScore(float(x)) for x in rng.random(n) < p]


def test_mean_interval_matches_the_normal_approximation() -> None:
    scores = _bernoulli(0.7, 2000, seed=1)
    interval = bootstrap_ci(scores, Accuracy().aggregate)
    mean = sum(s.value or 0 for s in scores) / len(scores)
    assert interval.estimate == pytest.approx(mean)
    assert abs(mean - 0.7) < 0.03
    expected_half = 1.96 * math.sqrt(mean * (1 - mean) / len(scores))  # ≈ 0.020
    assert interval.half_width == pytest.approx(expected_half, rel=0.1)
    assert interval.low < interval.estimate < interval.high
    assert abs((interval.low + interval.high) / 2 - mean) < 0.004


def test_vectorised_mean_equals_the_generic_path_and_failures_count_as_zero() -> None:
    scores = [*_bernoulli(0.6, 300, seed=2), CaseScore(None), CaseScore(None)]
    scorer = Accuracy()
    fast = bootstrap_ci(scores, scorer.aggregate, n_resamples=400, seed=7)
    slow = bootstrap_ci(scores, lambda s: scorer.aggregate(s), n_resamples=400, seed=7)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high))
    assert fast.estimate == pytest.approx(sum(s.value or 0 for s in scores) / 302)


def test_interval_is_reproducible_and_depends_on_the_seed() -> None:
    scores = [CaseScore(float(v)) for v in np.random.default_rng(3).random(200)]  # continuous values
    first = bootstrap_ci(scores, Accuracy().aggregate, seed=11)
    assert bootstrap_ci(scores, Accuracy().aggregate, seed=11) == first
    assert bootstrap_ci(scores, Accuracy().aggregate, seed=12) != first


def test_narrower_confidence_gives_a_narrower_interval() -> None:
    scores = _bernoulli(0.7, 500, seed=4)
    wide = bootstrap_ci(scores, Accuracy().aggregate, confidence=0.99)
    narrow = bootstrap_ci(scores, Accuracy().aggregate, confidence=0.8)
    assert narrow.half_width < wide.half_width
    with pytest.raises(UserError, match="confidence"):
        bootstrap_ci(scores, Accuracy().aggregate, confidence=95)


def test_no_cases_give_nan() -> None:
    interval = bootstrap_ci([], Accuracy().aggregate)
    assert math.isnan(interval.estimate) and math.isnan(interval.low) and math.isnan(interval.high)


async def test_macro_f1_interval_recomputes_the_metric_on_resamples() -> None:
    rng = np.random.default_rng(5)
    gold = list(rng.choice(["a", "b", "c"], size=150, p=[0.6, 0.3, 0.1]))
    predicted = [g if rng.random() < 0.8 else "a" for g in gold]
    cases = [Case(str(i), "x", g) for i, g in enumerate(gold)]
    scorer = MacroF1()
    scores = await scorer.score(cases, predicted)
    interval = bootstrap_ci(scores, scorer.aggregate, n_resamples=300)
    from sklearn.metrics import f1_score

    assert interval.estimate == pytest.approx(f1_score(gold, predicted, average="macro"))
    assert interval.low < interval.estimate < interval.high
    accuracy = sum(s.value or 0 for s in scores) / len(scores)
    assert interval.estimate < accuracy  # the rare label pulls macro-F1 below accuracy


async def test_count_based_metrics_resample_exactly_like_the_generic_path() -> None:
    rng = np.random.default_rng(6)
    gold = [str(x) for x in rng.choice(["a", "b", "c", "d"], size=120)]
    predicted: list[str | None] = [g if rng.random() < 0.7 else str(rng.choice(["a", "e"])) for g in gold]
    predicted[5] = None
    macro = MacroF1()
    scores = await macro.score([Case(str(i), "x", g) for i, g in enumerate(gold)], predicted)
    fast = bootstrap_ci(scores, macro.aggregate, n_resamples=200, seed=9)
    slow = bootstrap_ci(scores, lambda s: macro.aggregate(s), n_resamples=200, seed=9)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high))

    fields = FieldF1()
    expected = [{"a": "x", "b": [1, 2], "c": str(i % 3)} for i in range(80)]
    outputs = [{"a": "x" if i % 4 else "y", "b": [2], "c": str(i % 2)} for i in range(80)]
    field_scores = await fields.score([Case(str(i), "x", e) for i, e in enumerate(expected)], outputs)
    fast = bootstrap_ci(field_scores, fields.aggregate, n_resamples=200, seed=9)
    slow = bootstrap_ci(field_scores, lambda s: fields.aggregate(s), n_resamples=200, seed=9)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high))
    assert fast.low < fast.estimate < fast.high


def _from_correct(correct: set[int], n: int) -> list[CaseScore]:
    return [CaseScore(float(i in correct)) for i in range(n)]


def test_a_clearly_better_candidate_is_significant() -> None:
    a = _from_correct(set(range(180)), 200)  # 0.90
    b = _from_correct(set(range(120)), 200)  # 0.60, right only where A is right too
    result = paired_comparison(a, b, Accuracy().aggregate)
    assert result.diff == pytest.approx(0.3)
    assert result.significant and result.p_value < 0.01
    assert 0 < result.low < 0.3 < result.high


def test_identical_candidates_are_not_significant() -> None:
    a = _from_correct(set(range(140)), 200)
    result = paired_comparison(a, list(a), Accuracy().aggregate)
    assert result.diff == 0 and result.p_value == 1.0 and not result.significant
    assert result.low == result.high == 0


def test_equal_accuracy_on_different_cases_is_not_significant() -> None:
    a = _from_correct(set(range(140)), 200)  # 0.70
    b = _from_correct(set(range(60, 200)), 200)  # 0.70, disagreeing with A on 120 cases
    result = paired_comparison(a, b, Accuracy().aggregate)
    assert result.diff == 0
    assert not result.significant and result.p_value > 0.5
    assert result.low < 0 < result.high


def test_a_small_gain_on_few_cases_is_not_significant() -> None:
    a = _from_correct({0, 1, 2, 3, 4, 5, 6}, 10)
    b = _from_correct({0, 1, 2, 3, 4, 5}, 10)
    result = paired_comparison(a, b, Accuracy().aggregate)
    assert result.diff == pytest.approx(0.1) and not result.significant


async def test_paired_comparison_with_a_corpus_metric() -> None:
    gold = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    good = list(gold)
    bad = ["a"] * 100
    cases = [Case(str(i), "x", g) for i, g in enumerate(gold)]
    scorer = MacroF1()
    result = paired_comparison(
        await scorer.score(cases, good), await scorer.score(cases, bad), scorer.aggregate, n_resamples=500
    )
    assert result.diff == pytest.approx(1 - (2 * 60 / (2 * 60 + 40)) / 3)
    assert result.significant


def test_paired_comparison_needs_the_same_cases() -> None:
    with pytest.raises(UserError, match="same cases"):
        paired_comparison([CaseScore(1.0)], [CaseScore(1.0), CaseScore(0.0)], Accuracy().aggregate)


def test_pareto_frontier_on_hand_made_points() -> None:
    points = [
        (0.9, 10.0),  # 0: best quality at its cost
        (0.8, 1.0),  # 1: cheapest
        (0.85, 5.0),  # 2: in between
        (0.7, 2.0),  # 3: dominated by 1
        (0.9, 12.0),  # 4: same quality as 0, dearer: dominated
        (0.8, 1.0),  # 5: a duplicate of 1: both stay
        (math.nan, 0.0),  # 6: failed everywhere: left out
        (0.85, 6.0),  # 7: dominated by 2
    ]
    assert pareto_frontier(points) == [1, 5, 2, 0]
    assert pareto_frontier([]) == []
    assert pareto_frontier([(0.5, 0.0)]) == [0]


def test_percentiles_for_latency() -> None:
    values: list[float | None] = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile([*values, None, math.nan], 50) == pytest.approx(50.5)
    assert math.isnan(percentile([], 50))
    with pytest.raises(UserError):
        percentile(values, 101)
