"""Statistics for the leaderboard: bootstrap confidence intervals, paired comparisons, the Pareto
frontier of quality against cost, and latency percentiles.

The bootstrap resamples *cases* with replacement and calls the scorer's `aggregate` on each resample,
so corpus-level metrics (macro-F1, micro-F1 over fields) get honest intervals too. Two kinds of
aggregate are computed with numpy for all resamples at once: the plain mean (`Scorer.aggregate`, not
overridden), and the `aggregate` of a scorer that is `Additive` (its metric is a function of per-case
counts summed over cases, as macro-F1 and micro-F1 are). Any other aggregate is called per resample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol, runtime_checkable

import numpy as np

from brickyard._errors import UserError
from brickyard.evals._types import CaseScore, Scorer

Aggregate = Callable[[Sequence[CaseScore]], float]
_BLOCK_ELEMENTS = 2_000_000  # resample indices drawn per block, to bound memory on large sets


@runtime_checkable
class Additive(Protocol):
    """A scorer whose metric is a function of per-case counts summed over the cases.

    `aggregate(scores)` must equal `from_statistics(statistics(scores).sum(axis=0))`; the bootstrap
    then sums the counts of every resample with one matrix product instead of calling `aggregate`.
    """

    def statistics(self, scores: Sequence[CaseScore]) -> np.ndarray:
        """Per-case counts, shape (cases, m)."""
        ...

    def from_statistics(self, totals: np.ndarray) -> np.ndarray:
        """The metric from summed counts: shape (..., m) to (...)."""
        ...


@dataclass(frozen=True)
class Interval:
    """A metric's value on all cases and its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Comparison:
    """A minus B on the same cases: the difference, its interval, a two-sided p-value, and whether
    the difference is significant at the chosen level."""

    diff: float
    low: float
    high: float
    p_value: float
    significant: bool


def _is_plain_mean(aggregate: Aggregate) -> bool:
    return getattr(aggregate, "__func__", None) is Scorer.aggregate


def _values(scores: Sequence[CaseScore]) -> np.ndarray:
    """Case values with a failed case (None) as 0, as `Scorer.aggregate` counts it."""
    return np.array([0.0 if s.value is None else s.value for s in scores], dtype=float)


def _index_blocks(n: int, n_resamples: int, seed: int) -> list[np.ndarray]:
    """Resample indices (n_resamples × n) drawn in blocks from one seeded generator."""
    rng = np.random.default_rng(seed)
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    blocks = []
    for start in range(0, n_resamples, rows):
        blocks.append(rng.integers(0, n, size=(min(rows, n_resamples - start), n)))
    return blocks


def _additive(aggregate: Aggregate) -> Additive | None:
    owner = getattr(aggregate, "__self__", None)
    return owner if isinstance(owner, Additive) and getattr(aggregate, "__name__", "") == "aggregate" else None


def _multiplicities(block: np.ndarray, n: int) -> np.ndarray:
    """How often each case is drawn in each resample of the block: shape (resamples, n)."""
    rows = block.shape[0]
    flat = (block + np.arange(rows)[:, None] * n).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n)


def _resampled(scores: Sequence[CaseScore], aggregate: Aggregate, blocks: list[np.ndarray]) -> np.ndarray:
    """The aggregate on every resample."""
    if _is_plain_mean(aggregate):
        values = _values(scores)
        return np.concatenate([values[block].mean(axis=1) for block in blocks])
    additive = _additive(aggregate)
    if additive is not None:
        counts = np.asarray(additive.statistics(scores), dtype=float)
        return np.concatenate(
            [additive.from_statistics(_multiplicities(block, len(scores)) @ counts) for block in blocks]
        )
    return np.array([aggregate([scores[i] for i in row]) for block in blocks for row in block], dtype=float)


def _check_level(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")


def bootstrap_ci(
    scores: Sequence[CaseScore],
    aggregate: Aggregate,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of `aggregate` over cases (resampled with replacement).

    `estimate` is `aggregate(scores)`; `low`/`high` are the (1 − confidence)/2 and (1 + confidence)/2
    quantiles of the aggregate over `n_resamples` resamples (resamples whose aggregate is NaN are
    ignored). No cases gives NaN everywhere; the same seed gives the same interval.
    """
    _check_level(confidence)
    estimate = float(aggregate(scores))
    if not scores:
        return Interval(math.nan, math.nan, math.nan)
    stats = _resampled(scores, aggregate, _index_blocks(len(scores), n_resamples, seed))
    if np.isnan(stats).all():
        return Interval(estimate, math.nan, math.nan)
    alpha = 1 - confidence
    low, high = np.nanquantile(stats, [alpha / 2, 1 - alpha / 2])
    return Interval(estimate, float(low), float(high))


def paired_comparison(
    scores_a: Sequence[CaseScore],
    scores_b: Sequence[CaseScore],
    aggregate: Aggregate,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Comparison:
    """Is A better than B on the same cases? A paired bootstrap of the difference.

    Both score lists must describe the same cases in the same order. Each resample draws case
    indices with replacement and applies them to both lists, so the case-to-case variation that A
    and B share cancels out. `diff` is `aggregate(A) − aggregate(B)`; `low`/`high` the percentile
    interval of the resampled differences at level 1 − alpha; `p_value` the two-sided bootstrap
    p-value `min(1, 2·min(P*(d ≤ 0), P*(d ≥ 0)))`, each tail counted with a +1 correction
    ((count + 1) / (n_resamples + 1)), so it is never 0 and ties at 0 count against significance.
    `significant` is `p_value < alpha`, which agrees (up to the +1 correction) with the interval
    excluding 0.
    """
    _check_level(1 - alpha)
    if len(scores_a) != len(scores_b):
        raise UserError(
            f"a paired comparison needs the same cases on both sides, got {len(scores_a)} and {len(scores_b)} "
            "scores. Fix: score both candidates on the same cases, in the same order"
        )
    diff = float(aggregate(scores_a)) - float(aggregate(scores_b))
    if not scores_a or math.isnan(diff):
        return Comparison(diff, math.nan, math.nan, math.nan, False)
    blocks = _index_blocks(len(scores_a), n_resamples, seed)
    if _is_plain_mean(aggregate):
        paired = _values(scores_a) - _values(scores_b)  # the mean is linear: mean(a*) − mean(b*) = mean((a − b)*)
        diffs = np.concatenate([paired[block].mean(axis=1) for block in blocks])
    else:
        diffs = _resampled(scores_a, aggregate, blocks) - _resampled(scores_b, aggregate, blocks)
    diffs = diffs[~np.isnan(diffs)]
    if diffs.size == 0:
        return Comparison(diff, math.nan, math.nan, math.nan, False)
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    below = (np.count_nonzero(diffs <= 0) + 1) / (diffs.size + 1)
    above = (np.count_nonzero(diffs >= 0) + 1) / (diffs.size + 1)
    p_value = min(1.0, 2 * min(below, above))
    return Comparison(diff, float(low), float(high), float(p_value), p_value < alpha)


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests on A − B: equivalent when the (1 − 2·alpha) interval lies inside ±margin."""

    diff: float
    low: float
    high: float
    margin: float
    equivalent: bool


def equivalence(
    scores_a: Sequence[CaseScore],
    scores_b: Sequence[CaseScore],
    aggregate: Aggregate,
    *,
    margin: float,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Equivalence:
    """Are A and B equivalent within `margin` (0–1 scale) on the same cases? TOST on the paired bootstrap.

    Each one-sided test at level alpha (A − B > −margin, and A − B < margin) is passed when the
    (1 − 2·alpha) percentile interval of the paired difference clears that bound, so equivalence is
    claimed at level alpha overall.
    """
    interval = paired_comparison(scores_a, scores_b, aggregate, n_resamples=n_resamples, seed=seed, alpha=2 * alpha)
    inside = -margin < interval.low and interval.high < margin
    return Equivalence(interval.diff, interval.low, interval.high, margin, bool(inside))


def cases_needed(
    scores_a: Sequence[CaseScore],
    scores_b: Sequence[CaseScore],
    aggregate: Aggregate,
    *,
    margin: float,
    alpha: float = 0.05,
    one_sided: bool = False,
) -> float:
    """About how many cases the paired comparison of A and B needs to be decided, whichever comes first: a
    significant difference (the 1 − alpha interval of A − B excludes 0), equivalence within ±`margin` (the
    1 − 2·alpha interval lies inside it), and with `one_sided` also "B is not better than A by more than
    the margin" (the 1 − 2·alpha interval's low end is above −margin).

    A planning estimate from the cases seen: the observed difference d is taken as true and the interval's
    half-width w shrinks as 1/√n, so a bound at distance g from d is reached after n·(w / g)² cases (g = |d|
    for a difference, margin − |d| for equivalence, margin + d one-sided). Infinite when nothing can be
    decided (no difference and no margin) or nothing is known yet; at most the current count when the
    comparison is already decided.
    """
    n = len(scores_a)
    two = paired_comparison(scores_a, scores_b, aggregate, alpha=alpha)
    if n == 0 or math.isnan(two.low) or math.isnan(two.diff):
        return math.inf
    one = paired_comparison(scores_a, scores_b, aggregate, alpha=2 * alpha)
    gaps = [((two.high - two.low) / 2, abs(two.diff)), ((one.high - one.low) / 2, margin - abs(two.diff))]
    if one_sided:
        gaps.append(((one.high - one.low) / 2, margin + two.diff))
    return min((n * (w / g) ** 2 for w, g in gaps if g > 0), default=math.inf)


@dataclass(frozen=True)
class PairedEvidence:
    """What the cases so far say about A − B: the difference, the per-case spread behind its interval
    (`sigma`, so the 95% half-width is about 1.96·sigma/√n), and the number of cases."""

    diff: float
    sigma: float
    n: int


def paired_evidence(
    scores_a: Sequence[CaseScore], scores_b: Sequence[CaseScore], aggregate: Aggregate, *, alpha: float = 0.05
) -> PairedEvidence:
    """The difference and the spread read off the paired bootstrap interval, so corpus-level metrics work too."""
    comparison = paired_comparison(scores_a, scores_b, aggregate, alpha=alpha)
    n = len(scores_a)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    sigma = (comparison.high - comparison.low) / 2 * math.sqrt(n) / z if n else math.nan
    return PairedEvidence(comparison.diff, sigma, n)


def decided_probability(
    evidence: PairedEvidence, m: int, *, margin: float, alpha: float = 0.05, one_sided: bool = False
) -> float:
    """How likely the comparison is decided on m ≥ n cases (the tests of `cases_needed`), predicted from the
    n seen: the true difference is uncertain (normal around the observed one, sd sigma/√n), and the m − n new
    cases add their own noise, so the difference on m cases is normal around the observed one with variance
    sigma²·(m − n)/(m·n). Each way of deciding is a region for that difference; the events are nested or
    disjoint enough that their largest probability is used (a lower bound on the union)."""
    d, sigma, n = evidence.diff, evidence.sigma, evidence.n
    if n == 0 or math.isnan(d) or math.isnan(sigma):
        return 0.0
    # nothing varies, or no new case: what is seen now is what the test sees
    spread = 0.0 if sigma == 0 or m <= n else sigma * math.sqrt((m - n) / (m * n))
    two = NormalDist().inv_cdf(1 - alpha / 2) * sigma / math.sqrt(m)
    one = NormalDist().inv_cdf(1 - alpha) * sigma / math.sqrt(m)

    def above(bound: float) -> float:
        return float(d > bound) if spread == 0 else 1 - NormalDist(d, spread).cdf(bound)

    chances = [above(two) + (1 - above(-two)), max(0.0, above(-margin + one) - above(margin - one))]
    if one_sided:
        chances.append(above(-margin + one))
    return min(1.0, max(chances))


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (quality, cost) points no other point dominates, by cost ascending.

    Higher quality and lower cost are better; a point is dominated when another is at least as good
    on both and strictly better on one. Exact duplicates do not dominate each other, so all of them
    stay on the frontier. Points with a NaN quality or cost (e.g. a candidate that failed on every
    case) are left out.
    """
    valid = [i for i, (q, c) in enumerate(points) if not (math.isnan(q) or math.isnan(c))]
    frontier = [
        i
        for i in valid
        if not any(
            points[j][0] >= points[i][0]
            and points[j][1] <= points[i][1]
            and (points[j][0] > points[i][0] or points[j][1] < points[i][1])
            for j in valid
        )
    ]
    return sorted(frontier, key=lambda i: (points[i][1], -points[i][0], i))


def percentile(values: Sequence[float | None], q: float) -> float:
    """The q-th percentile (0–100, linear interpolation) of the values, ignoring None and NaN;
    NaN when none is left. E.g. `percentile(latencies, 95)` for p95."""
    if not 0 <= q <= 100:
        raise UserError(f"a percentile is between 0 and 100, got {q}")
    array = np.array([v for v in values if v is not None], dtype=float)
    array = array[~np.isnan(array)]
    return float(np.percentile(array, q)) if array.size else math.nan


__all__ = [
    "Additive",
    "Comparison",
    "Interval",
    "bootstrap_ci",
    "cases_needed",
    "decided_probability",
    "paired_comparison",
    "paired_evidence",
    "pareto_frontier",
    "percentile",
]
