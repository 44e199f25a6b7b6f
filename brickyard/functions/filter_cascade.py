"""`ai_filter` with a recall target: a cheap proxy rejects the rows it is sure of, the model judges the rest.

As in LOTUS and Snowflake's AISQL: every row gets a proxy score (the embedding contrast of `ai_filter` on
the small models: similarity to the predicate minus similarity to its negation); a random sample is
judged by the model (the oracle); the threshold is the highest score that keeps, with 95% confidence,
at least `target_recall` of the sample's positives above it. Rows below it are rejected without a model
call; the others are judged by the model. The report gives the calls avoided and the recall estimated on
the sample, with its interval. Recall is measured against the model's own verdicts, not against a truth
the model may not know.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from brickyard._errors import InvalidRequestError
from brickyard.functions._negation import contrast
from brickyard.functions._rows import Outcome, is_null
from brickyard.functions.embed import unit_rows
from brickyard.functions.filter_agg import filter_
from brickyard.models.base import Model

MIN_SAMPLE = 40
"""The first sample; the next ones are sized from the positive rate seen, until the positives can show the target."""
MIN_RATE = 0.05
POSITIVES_SLACK = 1.5
Z95 = 1.959964


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class CascadeReport:
    """What the cascade did for one batch of rows."""

    rows: int
    sampled: int
    sample_positives: int
    threshold: float | None
    rejected_by_proxy: int
    model_calls: int
    recall_estimate: float | None
    recall_interval: tuple[float, float]
    notes: list[str] = field(default_factory=list)

    @property
    def calls_avoided(self) -> float:
        return 0.0 if self.rows == 0 else 1 - self.model_calls / self.rows


def positives_needed(target_recall: float, z: float = Z95) -> int:
    """Sample positives needed before even keeping all of them shows recall ≥ target (Wilson lower bound)."""
    return math.ceil(z * z * target_recall / (1 - target_recall))


def threshold_for(positive_scores: Sequence[float], target_recall: float) -> float | None:
    """The highest proxy threshold whose recall on the sample's positives is ≥ target at 95% confidence.

    None when even the lowest positive cannot be kept confidently (too few positives): then nothing is
    rejected by the proxy.
    """
    scores = sorted(positive_scores)
    k = len(scores)
    best: float | None = None
    for misses in range(k):  # rows below the threshold: the `misses` lowest positives
        low, _ = wilson(k - misses, k)
        if low < target_recall:
            break
        best = scores[misses]
    return best


async def filter_with_recall(
    predicate: str,
    texts: Sequence[str | None],
    model: Model,
    embedder: Model,
    *,
    target_recall: float,
    seed: int = 0,
    tag: str | None = None,
    progress: bool | None = None,
    contrast_with: str | None = None,
) -> tuple[Outcome[bool], CascadeReport]:
    """`ai_filter` at `target_recall` of the model's positives, the proxy rejecting what it confidently can
    (the embedding contrast of the predicate with `contrast_with`, by default its negation)."""
    if not 0.5 <= target_recall < 1:
        raise InvalidRequestError(
            f"target_recall must be at least 0.5 and below 1; got {target_recall}. Fix: e.g. 0.95"
        )
    live = [i for i, t in enumerate(texts) if not is_null(t) and str(t).strip()]
    values: list[bool | None] = [None] * len(texts)
    errors: list[str | None] = [None] * len(texts)
    claim = str(predicate).strip()
    vectors = (await embedder.embed([claim, contrast(claim, contrast_with), *(str(texts[i]) for i in live)])).vectors
    matrix = unit_rows(vectors)
    scores = matrix[2:] @ matrix[0] - matrix[2:] @ matrix[1]
    order = list(range(len(live)))
    random.Random(seed).shuffle(order)
    wanted = POSITIVES_SLACK * positives_needed(target_recall)
    sample: list[int] = []
    judged: Outcome[bool] = Outcome([], [])
    positives: list[float] = []
    while len(sample) < len(order) and len(positives) < wanted:  # sample until the positives can show the target
        rate = max(len(positives) / len(sample), MIN_RATE) if sample else MIN_RATE
        more = MIN_SAMPLE if not sample else max(MIN_SAMPLE, math.ceil(1.1 * (wanted - len(positives)) / rate))
        batch = order[len(sample) : len(sample) + more]
        verdicts = await _judge(predicate, [texts[live[j]] for j in batch], model, tag, progress)
        sample += batch
        judged = Outcome([*judged.values, *verdicts.values], [*judged.errors, *verdicts.errors])
        positives += [scores[j] for j, ok in zip(batch, verdicts.values, strict=True) if ok]
    size = len(sample)
    threshold = threshold_for(positives, target_recall)
    in_sample = set(sample)
    rest = [j for j in range(len(live)) if j not in in_sample and (threshold is None or scores[j] >= threshold)]
    judged_rest = await _judge(predicate, [texts[live[j]] for j in rest], model, tag, progress)
    for j, value, error in zip(sample, judged.values, judged.errors, strict=True):
        values[live[j]], errors[live[j]] = value, error
    for j, value, error in zip(rest, judged_rest.values, judged_rest.errors, strict=True):
        values[live[j]], errors[live[j]] = value, error
    asked = in_sample | set(rest)
    rejected = [j for j in range(len(live)) if j not in asked]
    for j in rejected:
        values[live[j]] = False
    kept = sum(1 for s in positives if threshold is None or s >= threshold)
    report = CascadeReport(
        rows=len(live),
        sampled=size,
        sample_positives=len(positives),
        threshold=threshold,
        rejected_by_proxy=len(rejected),
        model_calls=size + len(rest),
        recall_estimate=kept / len(positives) if positives else None,
        recall_interval=wilson(kept, len(positives)),
    )
    if threshold is None:
        report.notes.append(
            f"{len(positives)} positives in a sample of {size} cannot show recall ≥ {target_recall} at 95% "
            "confidence: every row was judged by the model"
        )
    return Outcome(values, errors), report


async def _judge(
    predicate: str, texts: Sequence[str | None], model: Model, tag: str | None, progress: bool | None
) -> Outcome[bool]:
    """The model's own verdicts (the oracle): no embedding shortcut."""
    if not texts:
        return Outcome([], [])
    return await filter_(predicate, texts, model, tag=tag, progress=progress)
