"""Cascades tuned on data: choose the proxy's confidence threshold on the dev split, verify on the test split.

The proxy and the strong model each answer every dev and test case once (through `classify`, with the
same request shapes the deployed `CascadeModel` sends); a cascade at any threshold is then simulated
exactly from those answers. The cheapest threshold whose dev quality reaches `target` × the strong
model's is chosen, and the test split reports quality (with a 95% bootstrap interval) and cost of the
proxy alone, the strong model alone and the cascade.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brickyard._errors import UserError
from brickyard.config import Confidence
from brickyard.evals._types import Case, CaseScore
from brickyard.evals.scorers import Accuracy
from brickyard.evals.stats import bootstrap_ci, paired_comparison
from brickyard.functions import classify, label_map
from brickyard.functions._rows import delimited
from brickyard.models._types import ChatResult, Usage
from brickyard.models.base import Model, WrapperModel
from brickyard.models.calls import Call, ChatCall, EmbedCall, Outcome, Reply, when_done
from brickyard.models.cascade import CascadeModel
from brickyard.models.classifier import ClassifierWeights, train_classifier
from brickyard.models.metering import Price

_CAPABILITIES = ("supports_json_schema", "supports_grammar", "supports_logprobs", "supports_tools")


@dataclass(frozen=True)
class RowAnswer:
    """One model's answer to one case: the label (None when it failed), its confidence, cost and time."""

    label: str | None
    confidence: float | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None


class _Recording(WrapperModel):
    """Answers like `inner` but with the capabilities of `like` (so requests are shaped as for `like`),
    keeping every result by its data message."""

    def __init__(self, inner: Model, like: Model) -> None:
        super().__init__(inner)
        for attribute in _CAPABILITIES:
            setattr(self, attribute, getattr(like, attribute))
        self.results: dict[str, list[ChatResult]] = defaultdict(list)

    async def handle(self, call: Call) -> Reply:
        reply = await self.inner.handle(call)
        if isinstance(call, EmbedCall):
            return reply
        key = str(call.request.messages[-1].get("content"))

        def keep(outcome: Outcome) -> None:
            if isinstance(outcome.result, ChatResult) and outcome.status == "ok":
                self.results[key].append(outcome.result)

        return when_done(reply, keep)


async def answer_cases(
    cases: Sequence[Case],
    labels: Sequence[str] | Mapping[str, str],
    model: Model,
    *,
    like: Model | None = None,
    instructions: str | None = None,
    price: Price | None = None,
    progress: bool | None = None,
) -> tuple[list[RowAnswer], float]:
    """`classify` every case with `model` (requests shaped for `like`, default the model itself); the answers
    and the wall-clock seconds the run took.

    With `price`, a row's cost is its tokens at that price (so cached answers cost what a fresh call would);
    else the cost the model stack reported. A repeated input carries its cost once.
    """
    recording = _Recording(model, like or model)
    texts = [case.input for case in cases]
    started = time.perf_counter()
    outcome = await classify(texts, labels, recording, instructions=instructions, progress=progress)
    seconds = time.perf_counter() - started
    answers: list[RowAnswer] = []
    seen: set[str] = set()
    for text, value, error in zip(texts, outcome.values, outcome.errors, strict=True):
        key = delimited(text)
        results = recording.results.get(key, [])
        first_time = key not in seen
        seen.add(key)
        usage = Usage(sum(r.usage.input_tokens for r in results), sum(r.usage.output_tokens for r in results))
        cost = (price.cost(usage) if price is not None else sum(r.cost_usd for r in results)) if first_time else 0.0
        answers.append(
            RowAnswer(
                label=value,
                confidence=results[-1].confidence if results else None,
                usage=usage,
                cost_usd=cost,
                latency_s=sum(r.latency_s for r in results) if first_time else 0.0,
                cached=bool(results) and all(r.cached for r in results),
                error=error,
            )
        )
    return answers, seconds


class _AsProxy(WrapperModel):
    """A cascade's proxy, asked exactly as the cascade asks it (confidence included)."""

    def __init__(self, cascade: CascadeModel) -> None:
        super().__init__(cascade.proxy)
        self._cascade = cascade

    async def handle(self, call: Call) -> Reply:
        if not isinstance(call, ChatCall):
            return await self.inner.handle(call)
        return await self._cascade.ask_proxy(call.request, call.caller)


# -- choosing the threshold -------------------------------------------------------------------------
def _kept(answer: RowAnswer, threshold: float) -> bool:
    return answer.label is not None and answer.confidence is not None and answer.confidence >= threshold


def cascade_labels(proxy: Sequence[RowAnswer], strong: Sequence[RowAnswer], threshold: float) -> list[str | None]:
    """The cascade's label per case: the proxy's when it is at least `threshold` sure, else the strong model's."""
    return [p.label if _kept(p, threshold) else s.label for p, s in zip(proxy, strong, strict=True)]


def _accuracy(cases: Sequence[Case], predicted: Sequence[str | None]) -> float:
    right = sum(1 for c, p in zip(cases, predicted, strict=True) if p is not None and _same(c.expected, p))
    return right / len(cases) if cases else math.nan


def _same(expected: Any, predicted: str) -> bool:
    return str(expected).strip().lower() == predicted.strip().lower()


@dataclass(frozen=True)
class CurvePoint:
    """The cascade on the dev split at one threshold; `margin` is how far it clears the target, in accuracy,
    after subtracting `safety_se` standard errors (≥ 0: the threshold qualifies)."""

    threshold: float
    accuracy: float
    deferred: float
    margin: float


def _correct(cases: Sequence[Case], predicted: Sequence[str | None]) -> np.ndarray:
    return np.array([p is not None and _same(c.expected, p) for c, p in zip(cases, predicted, strict=True)], float)


def threshold_curve(
    cases: Sequence[Case],
    proxy: Sequence[RowAnswer],
    strong: Sequence[RowAnswer],
    *,
    target: float,
    safety_se: float = 1.0,
) -> list[CurvePoint]:
    """The cascade at threshold 0, at every distinct proxy confidence, and at 1, on labelled `cases`.

    Per case the cascade scores c (0/1) and the strong model s; the target is met when mean(c − target·s),
    less `safety_se` standard errors of that mean, is ≥ 0 (so a threshold chosen on dev holds on test too).
    """
    candidates = sorted({0.0, 1.0, *(p.confidence for p in proxy if p.confidence is not None and p.confidence <= 1)})
    strong_right = _correct(cases, [s.label for s in strong])
    points = []
    for threshold in candidates:
        right = _correct(cases, cascade_labels(proxy, strong, threshold))
        diff = right - target * strong_right
        se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
        deferred = sum(1 for p in proxy if not _kept(p, threshold)) / len(proxy)
        points.append(CurvePoint(threshold, float(right.mean()), deferred, float(diff.mean()) - safety_se * se))
    return points


def choose_threshold(curve: Sequence[CurvePoint]) -> CurvePoint:
    """The lowest threshold (fewest deferred rows) that meets the target; else the most accurate (then lowest)."""
    for point in curve:
        if point.margin >= -1e-12:
            return point
    return max(curve, key=lambda p: (p.accuracy, -p.threshold))


# -- the report -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SystemResult:
    """Proxy alone, strong alone or the cascade, on the test split."""

    name: str
    accuracy: float
    low: float
    high: float
    cost_usd: float
    strong_calls: int
    deferred: float
    seconds: float
    """Wall-clock seconds on the test split; the cascade's is the proxy's plus the strong model's share."""
    errors: int


@dataclass
class CascadeReport:
    """What tuning chose and what it measured: dev choice, test verification, the threshold curve."""

    proxy: str
    strong: str
    labels: list[str]
    target: float
    threshold: float
    confidence: str
    dev_rows: int
    test_rows: int
    dev_strong_accuracy: float
    dev_cascade_accuracy: float
    dev_deferred: float
    test: dict[str, SystemResult]
    cascade_minus_strong: dict[str, float]
    met_target: bool
    safety_se: float = 1.0
    curve: list[CurvePoint] = field(default_factory=list)

    @property
    def saving(self) -> float:
        """The share of strong-model calls the cascade avoids on the test split."""
        return 1.0 - self.test["cascade"].deferred

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["curve"] = [asdict(p) for p in self.curve[:: max(1, len(self.curve) // 50)]]
        data["saving"] = self.saving
        return data

    def rows(self) -> list[list[str]]:
        """A table: system, accuracy [95% CI], USD, strong calls, deferred share, seconds, errors."""
        return [
            [
                s.name,
                f"{s.accuracy:.3f} [{s.low:.3f}, {s.high:.3f}]",
                f"{s.cost_usd:.6f}",
                str(s.strong_calls),
                f"{s.deferred:.0%}",
                f"{s.seconds:.1f}",
                str(s.errors),
            ]
            for s in self.test.values()
        ]

    def summary(self) -> str:
        cascade, strong = self.test["cascade"], self.test["strong"]
        verdict = "meets" if self.met_target else "misses"
        return (
            f"cascade {self.proxy} -> {self.strong} at threshold {self.threshold:.4f} ({self.confidence}): "
            f"test accuracy {cascade.accuracy:.3f} vs strong {strong.accuracy:.3f} "
            f"({verdict} the target {self.target:.0%} of strong), {cascade.deferred:.0%} of rows sent to the strong "
            f"model, cost {cascade.cost_usd:.6f} vs {strong.cost_usd:.6f} USD"
        )


def _check_cases(cases: Sequence[Case], labels: Sequence[str], split: str) -> None:
    if not cases:
        raise UserError(f"the {split} split has no cases. Fix: a dataset with cases in both dev and test")
    missing = [c.id for c in cases if c.expected is None]
    if missing:
        raise UserError(
            f"{len(missing)} {split} cases have no expected label (e.g. {missing[0]}); tuning a cascade needs labels. "
            "Fix: create the dataset with --expected-column"
        )
    known = {label.lower() for label in labels}
    foreign = sorted({str(c.expected) for c in cases if str(c.expected).strip().lower() not in known})
    if foreign:
        raise UserError(f"{split} cases expect labels outside {list(labels)}: {foreign[:5]}. Fix: the agent's labels")


async def _system(name: str, cases: Sequence[Case], predicted: Sequence[str | None], **numbers: Any) -> SystemResult:
    scores = await Accuracy().score(cases, predicted)
    interval = bootstrap_ci(scores, Accuracy().aggregate)
    return SystemResult(name, interval.estimate, interval.low, interval.high, **numbers)


async def tune_cascade(
    dev_cases: Sequence[Case],
    test_cases: Sequence[Case],
    labels: Sequence[str] | Mapping[str, str],
    proxy: Model,
    strong: Model,
    *,
    target: float = 0.95,
    confidence: Confidence = Confidence.auto,
    samples: int = 5,
    instructions: str | None = None,
    prices: tuple[Price, Price] | None = None,
    names: tuple[str, str] | None = None,
    safety_se: float = 1.0,
    progress: bool | None = None,
) -> CascadeReport:
    """Tune a cascade's threshold on `dev_cases` to reach `target` × the strong model's accuracy; verify on test.

    The chosen threshold is the lowest (fewest strong calls) whose dev accuracy clears the target by
    `safety_se` standard errors (0 aims exactly at the target, so test results then miss it about half the
    time). `prices` (proxy, strong) price rows by their tokens (cache hits included); `names` label the report.
    """
    if not 0.0 < target <= 1.0:
        raise UserError(f"target {target} must be in (0, 1], a share of the strong model's quality. Fix: 0.95")
    mapping = label_map(labels)
    _check_cases(dev_cases, list(mapping), "dev")
    _check_cases(test_cases, list(mapping), "test")
    shape = CascadeModel(proxy, strong, 0.0, confidence=confidence, samples=samples)
    proxy_price, strong_price = prices if prices is not None else (None, None)
    common: dict[str, Any] = {"like": shape, "instructions": instructions, "progress": progress}
    asked = _AsProxy(shape)
    dev_p, _ = await answer_cases(dev_cases, mapping, asked, price=proxy_price, **common)
    dev_s, _ = await answer_cases(dev_cases, mapping, strong, price=strong_price, **common)
    test_p, proxy_seconds = await answer_cases(test_cases, mapping, asked, price=proxy_price, **common)
    test_s, strong_seconds = await answer_cases(test_cases, mapping, strong, price=strong_price, **common)
    n_dev = len(dev_cases)

    dev_strong = _accuracy(dev_cases, [s.label for s in dev_s])
    curve = threshold_curve(dev_cases, dev_p, dev_s, target=target, safety_se=safety_se)
    chosen = choose_threshold(curve)

    kept = [_kept(p, chosen.threshold) for p in test_p]
    deferred_rows = [s for s, k in zip(test_s, kept, strict=True) if not k]
    cascade_pred = cascade_labels(test_p, test_s, chosen.threshold)
    n = len(test_cases)
    proxy_cost, strong_cost = sum(p.cost_usd for p in test_p), sum(s.cost_usd for s in test_s)
    test = {
        "proxy": await _system(
            "proxy",
            test_cases,
            [p.label for p in test_p],
            cost_usd=proxy_cost,
            strong_calls=0,
            deferred=0.0,
            seconds=proxy_seconds,
            errors=sum(1 for p in test_p if p.error),
        ),
        "strong": await _system(
            "strong",
            test_cases,
            [s.label for s in test_s],
            cost_usd=strong_cost,
            strong_calls=n,
            deferred=1.0,
            seconds=strong_seconds,
            errors=sum(1 for s in test_s if s.error),
        ),
        "cascade": await _system(
            "cascade",
            test_cases,
            cascade_pred,
            cost_usd=proxy_cost + sum(s.cost_usd for s in deferred_rows),
            strong_calls=len(deferred_rows),
            deferred=len(deferred_rows) / n,
            seconds=proxy_seconds + strong_seconds * len(deferred_rows) / n,
            errors=sum(1 for label in cascade_pred if label is None),
        ),
    }
    scorer = Accuracy()
    cascade_scores: list[CaseScore] = await scorer.score(test_cases, cascade_pred)
    strong_scores: list[CaseScore] = await scorer.score(test_cases, [s.label for s in test_s])
    compared = paired_comparison(cascade_scores, strong_scores, scorer.aggregate)
    proxy_name, strong_name = names or (proxy.name, strong.name)
    return CascadeReport(
        proxy=proxy_name,
        strong=strong_name,
        labels=list(mapping),
        target=target,
        threshold=chosen.threshold,
        confidence=Confidence(confidence).value,
        dev_rows=n_dev,
        test_rows=n,
        dev_strong_accuracy=dev_strong,
        dev_cascade_accuracy=chosen.accuracy,
        dev_deferred=chosen.deferred,
        test=test,
        cascade_minus_strong={"diff": compared.diff, "low": compared.low, "high": compared.high, "p": compared.p_value},
        met_target=test["cascade"].accuracy >= target * test["strong"].accuracy - 1e-12,
        safety_se=safety_se,
        curve=curve,
    )


# -- an embedding classifier as the proxy -------------------------------------------------------------
@dataclass(frozen=True)
class ClassifierTraining:
    """A trained proxy classifier: where it is saved, on how many rows, and where its labels came from."""

    path: Path
    weights: ClassifierWeights
    rows: int
    source: str
    teacher_agreement: float | None = None


async def train_proxy_classifier(
    cases: Sequence[Case],
    labels: Sequence[str] | Mapping[str, str],
    path: Path,
    *,
    embedder: Model,
    embedder_name: str = "e5-small",
    teacher: Model | None = None,
    instructions: str | None = None,
    progress: bool | None = None,
) -> ClassifierTraining:
    """Train the embedding classifier on `cases`: labelled by `teacher` (a strong model) when given, else by
    their expected labels. Saved as a small JSON file for the `classifier:PATH` provider."""
    mapping = label_map(labels)
    agreement: float | None = None
    if teacher is not None:
        answers, _ = await answer_cases(cases, mapping, teacher, instructions=instructions, progress=progress)
        rows = [(c.input, a.label) for c, a in zip(cases, answers, strict=True) if a.label is not None]
        gold = [(c, a.label) for c, a in zip(cases, answers, strict=True) if c.expected is not None]
        if gold:
            agreement = _accuracy([c for c, _ in gold], [label for _, label in gold])
        source = f"teacher {teacher.name}"
    else:
        _check_cases(cases, list(mapping), "training")
        canonical = {label.lower(): label for label in mapping}
        rows = [(c.input, canonical[str(c.expected).strip().lower()]) for c in cases]
        source = "expected labels"
    if not rows:
        raise UserError("no labelled rows to train on (the teacher failed on every row). Fix: check the teacher")
    weights = await train_classifier(
        [text for text, _ in rows],
        [str(label) for _, label in rows],
        embedder,
        embedder_name=embedder_name,
        path=path,
        info={"source": source, "labels": list(mapping)},
    )
    return ClassifierTraining(path, weights, len(rows), source, agreement)
