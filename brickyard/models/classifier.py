"""An embedding classifier as a model: logistic regression on a text's embedding, no LLM call.

Trained (scikit-learn) on rows a strong model or a dataset labelled, saved as a small JSON file, and
served by the `classifier:PATH` provider. It answers classification-shaped chat requests (the data
between `<text>` and `</text>` in the last user message) with the most probable label, reports the
class probability as its confidence and log-probability, so a cascade can gate on it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brickyard._errors import InvalidRequestError, MissingExtraError, UserError
from brickyard.models._types import ChatRequest, ChatResult, TokenLogprob, Usage, estimate_tokens
from brickyard.models.base import Model
from brickyard.models.cascade import data_text, request_labels
from brickyard.models.provider import ProviderInfo, ProviderSpec

FORMAT = "brickyard-classifier/1"
BUILTIN_EMBEDDERS = ("e5-small", "local:e5-small")


@dataclass(frozen=True)
class ClassifierWeights:
    """A fitted logistic regression over embeddings: classes, coefficients, and the embedder it needs."""

    classes: list[str]
    coef: list[list[float]]
    intercept: list[float]
    embedder: str
    trained_rows: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, vectors: Sequence[Sequence[float]]) -> np.ndarray:
        """Class probabilities, one row per vector (columns in `classes` order)."""
        x = np.asarray(vectors, dtype=np.float64)
        scores = x @ np.asarray(self.coef, dtype=np.float64).T + np.asarray(self.intercept, dtype=np.float64)
        if len(self.classes) == 2 and scores.shape[1] == 1:  # scikit-learn's binary form: one score for classes[1]
            p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "classes": self.classes,
            "coef": self.coef,
            "intercept": self.intercept,
            "embedder": self.embedder,
            "trained_rows": self.trained_rows,
            "info": self.info,
        }

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> ClassifierWeights:
        """Read a saved classifier; a missing or foreign file is a clear error."""
        if not path.exists():
            raise UserError(
                f"no classifier at {path}. Fix: train one (`brickyard eval cascade ... --proxy classifier`)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            return cls(
                classes=[str(c) for c in data["classes"]],
                coef=data["coef"],
                intercept=data["intercept"],
                embedder=str(data["embedder"]),
                trained_rows=int(data.get("trained_rows", 0)),
                info=dict(data.get("info", {})),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{path} is not a brickyard classifier ({exc}). Fix: train it again") from None


REGULARISATION_GRID = (0.5, 2.0, 8.0, 32.0)
"""Inverse regularisation strengths tried by cross-validation (unit-length embeddings need weaker
regularisation than scikit-learn's default C = 1, which leans every row toward the majority label)."""


def fit_classifier(
    vectors: Sequence[Sequence[float]],
    labels: Sequence[str],
    *,
    embedder: str,
    c: float | None = None,
    info: dict[str, Any] | None = None,
) -> ClassifierWeights:
    """Fit a logistic regression (scikit-learn) on embeddings and their labels, classes weighted to balance.

    `c` None chooses the regularisation by stratified cross-validation on the rows themselves (up to 5
    folds, from `REGULARISATION_GRID`); with fewer than 2 rows of some label, C = 8.
    """
    if len(vectors) != len(labels):
        raise UserError(f"{len(vectors)} vectors but {len(labels)} labels. Fix: give one label per vector")
    if len(set(labels)) < 2:
        raise UserError(
            f"training a classifier needs rows of at least two labels; got {sorted(set(labels))}. "
            "Fix: label more rows, or rows of more than one class"
        )
    try:
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    except ImportError:
        raise MissingExtraError("scikit-learn", "eval") from None
    x = np.asarray(vectors, dtype=np.float64)
    folds = min(5, min(list(labels).count(label) for label in set(labels)))
    if c is None and folds >= 2:
        with warnings.catch_warnings():  # scikit-learn 1.8 announces a change of LogisticRegressionCV's attributes
            warnings.simplefilter("ignore", FutureWarning)
            fitted: Any = LogisticRegressionCV(
                Cs=list(REGULARISATION_GRID), cv=folds, class_weight="balanced", scoring="neg_log_loss", max_iter=2000
            ).fit(x, list(labels))
        chosen = float(np.atleast_1d(fitted.C_)[0])
    else:
        chosen = 8.0 if c is None else c
        fitted = LogisticRegression(C=chosen, class_weight="balanced", max_iter=2000).fit(x, list(labels))
    return ClassifierWeights(
        classes=[str(x) for x in fitted.classes_],
        coef=fitted.coef_.tolist(),
        intercept=fitted.intercept_.tolist(),
        embedder=embedder,
        trained_rows=len(labels),
        info={"C": chosen, **dict(info or {})},
    )


async def train_classifier(
    texts: Sequence[str],
    labels: Sequence[str],
    embedder: Model,
    *,
    embedder_name: str,
    path: Path | None = None,
    c: float | None = None,
    info: dict[str, Any] | None = None,
) -> ClassifierWeights:
    """Embed `texts` with `embedder` (endpoint `embedder_name`), fit, and save to `path` when given."""
    vectors = (await embedder.embed(list(texts))).vectors
    weights = fit_classifier(vectors, labels, embedder=embedder_name, c=c, info=info)
    if path is not None:
        weights.save(path)
    return weights


class _EmbedBatcher:
    """Collects the texts of concurrent requests and embeds them in one call (per event loop)."""

    def __init__(self, embedder: Model, max_batch: int = 64) -> None:
        self.embedder, self.max_batch = embedder, max_batch
        self._pending: dict[int, list[tuple[str, asyncio.Future[list[float]]]]] = {}
        self._running: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def embed(self, text: str) -> list[float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[float]] = loop.create_future()
        self._pending.setdefault(id(loop), []).append((text, future))
        if id(loop) not in self._running:
            self._running.add(id(loop))
            task = loop.create_task(self._drain(id(loop)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self, key: int) -> None:
        try:
            await asyncio.sleep(0.002)  # let the other rows of this batch arrive
            while self._pending.get(key):
                batch, self._pending[key] = self._pending[key][: self.max_batch], self._pending[key][self.max_batch :]
                try:
                    vectors = (await self.embedder.embed([text for text, _ in batch])).vectors
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), vector in zip(batch, vectors, strict=True):
                    if not future.done():
                        future.set_result(vector)
        finally:
            self._running.discard(key)
            self._pending.pop(key, None)


class ClassifierModel(Model):
    """Answers classification requests from an embedding classifier; the class probability is its confidence.

    With a JSON schema it answers `{"label": ...}`; otherwise the label as text. Requests whose labels the
    classifier was not trained on, or that are not classification requests, are refused with a clear error.
    """

    supports_json_schema = True
    supports_logprobs = True
    supports_grammar = False
    max_concurrency = 64

    def __init__(self, weights: ClassifierWeights, embedder: Model, *, name: str = "classifier:model") -> None:
        self.weights = weights
        self.name = name
        self._batcher = _EmbedBatcher(embedder)

    def _columns(self, request: ChatRequest) -> list[int]:
        asked = request_labels(request)
        if asked is None:
            if request.json_schema is not None or request.extra.get("grammar"):
                raise InvalidRequestError(
                    f"{self.name} answers single-label classification requests only. Fix: use it with ai_classify"
                )
            return list(range(len(self.weights.classes)))
        known = {c.lower(): i for i, c in enumerate(self.weights.classes)}
        unknown = [label for label in asked if label.lower() not in known]
        if unknown:
            raise InvalidRequestError(
                f"{self.name} was trained on labels {self.weights.classes}, not {unknown}. "
                "Fix: classify with those labels, or train it on these"
            )
        return [known[label.lower()] for label in asked]

    async def _complete(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        request.check_not_empty()
        columns = self._columns(request)
        text = data_text(request)
        vector = await self._batcher.embed(text)
        probs = self.weights.probabilities([vector])[0][columns]
        probs = probs / probs.sum()
        best = int(np.argmax(probs))
        label = self.weights.classes[columns[best]]
        top = {self.weights.classes[c]: math.log(max(float(p), 1e-300)) for c, p in zip(columns, probs, strict=True)}
        as_json = request.json_schema is not None
        answer = json.dumps({"label": label}) if as_json else label
        return ChatResult(
            text=answer,
            model=self.name,
            usage=Usage(estimate_tokens(text), 0, estimated=True),
            latency_s=time.perf_counter() - started,
            finish_reason="stop",
            json={"label": label} if as_json else None,
            logprobs=[TokenLogprob(token=label, logprob=top[label], top=top)],
            confidence=float(probs[best]),
        )


def create(spec: ProviderSpec) -> Model:
    """`classifier:PATH`: a saved classifier; it embeds with the bundled e5-small embedder."""
    path = Path(spec.model).expanduser()
    weights = ClassifierWeights.load(path)
    if weights.embedder not in BUILTIN_EMBEDDERS:
        raise UserError(
            f"classifier:{spec.model} was trained on embeddings of `{weights.embedder}`; the classifier provider "
            f"embeds with e5-small only. Fix: train it with e5-small, or build ClassifierModel(weights, embedder) "
            "in Python"
        )
    from brickyard.models.local import LocalEmbedder

    return ClassifierModel(weights, LocalEmbedder(), name=f"classifier:{spec.model}")


def readiness(spec: ProviderSpec) -> str | None:
    return None if Path(spec.model).expanduser().exists() else "file not found"


PROVIDER = ProviderInfo(
    name="classifier",
    create=create,
    description="a logistic regression on e5-small embeddings, trained by `brickyard eval cascade` (no LLM call)",
    is_ready=readiness,
)
