"""Task metrics as plain `Scorer` classes: exact match, accuracy, macro-F1, per-field F1, ROUGE-L,
embedding similarity, JSON validity, and retrieval recall@k / MRR; plus label checks and per-kind defaults.

Conventions shared by every scorer here: a failed output (None) scores `value=None`, which the mean
counts as 0; corpus-level metrics (macro-F1, micro-F1 over fields) keep what they need in `detail`
so `aggregate` can recompute them on bootstrap resamples. A scorer that needs labels raises a clear
`UserError` when a case has none (see `check_labels`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from brickyard._errors import UserError
from brickyard.agents.spec import AgentKind
from brickyard.evals._match import (
    as_object,
    cited_documents,
    doc_key,
    f1_from_counts,
    flat_fields,
    is_multi,
    label_key,
    label_set,
    lcs_length,
    normalize_text,
    output_text,
    references,
    rouge_l,
    schema_problems,
    tokens,
)
from brickyard.evals._types import Case, CaseScore, Scorer
from brickyard.functions._rows import is_null
from brickyard.functions.embed import cosine01, embed
from brickyard.models.base import Model

FAILED = "the candidate failed on this case"
"""The rationale of a case whose output is None (the candidate failed; the mean counts it as 0)."""


def check_lengths(cases: Sequence[Case], outputs: Sequence[Any]) -> None:
    if len(cases) != len(outputs):
        raise UserError(f"got {len(outputs)} outputs for {len(cases)} cases. Fix: pass one output per case, in order")


# --- labels -------------------------------------------------------------------------------------


def missing_label(scorer: Scorer, case: Case) -> bool:
    """Whether `case` lacks what `scorer` compares against (`expected`, or the scorer's own `has_label`)."""
    has_label = getattr(scorer, "has_label", None)
    if callable(has_label):
        return not has_label(case)
    return scorer.needs_expected and is_null(case.expected)


def check_labels(scorers: Iterable[Scorer], cases: Sequence[Case]) -> None:
    """Raise a `UserError` naming every scorer that needs labels some cases lack, and the fix."""
    problems = []
    for scorer in scorers:
        missing = [case.id for case in cases if missing_label(scorer, case)]
        if missing:
            what = getattr(scorer, "label_hint", "an expected output (`expected`)")
            example = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            problems.append(
                f"`{scorer.name}` needs {what}, which {len(missing)} of {len(cases)} cases lack ({example})"
            )
    if problems:
        raise UserError(
            "labels are missing: "
            + "; ".join(problems)
            + ". Fix: add an `expected` column (or `sources` in the metadata for retrieval metrics) to the "
            "dataset, or evaluate with judge-only scorers that need no labels (Relevance, GuidelineAdherence)"
        )


# --- classification and exact match -------------------------------------------------------------


class _PerCase(Scorer):
    """A scorer whose verdict on a case depends on that case alone: `value(case, output)` in [0, 1]."""

    def value(self, case: Case, output: Any) -> float:
        raise NotImplementedError

    async def score(self, cases: Sequence[Case], outputs: Sequence[Any]) -> list[CaseScore]:
        check_lengths(cases, outputs)
        check_labels([self], cases)
        return [
            CaseScore(None, rationale=FAILED) if out is None else CaseScore(self.value(case, out))
            for case, out in zip(cases, outputs, strict=True)
        ]


class ExactMatch(_PerCase):
    """1.0 when the output equals `expected` (after `normalize_text` unless `normalize=False`); an
    `expected` list holds several acceptable answers, any of which counts."""

    name = "exact_match"

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize

    def _key(self, value: Any) -> str:
        text = output_text(value)
        return normalize_text(text) if self.normalize else text

    def value(self, case: Case, output: Any) -> float:
        return float(self._key(output) in {self._key(ref) for ref in references(case.expected)})


def _same_label(gold: Any, predicted: Any) -> bool:
    if is_multi(gold, predicted):
        return label_set(gold) == label_set(predicted)
    return label_key(gold) == label_key(predicted)


class Accuracy(_PerCase):
    """1.0 when the predicted label is the expected one (case and spacing ignored); multilabel: same set."""

    name = "accuracy"

    def value(self, case: Case, output: Any) -> float:
        return float(_same_label(case.expected, output))


class MacroF1(Scorer):
    """Macro-averaged F1 over the labels present in gold ∪ predicted (multilabel: per-label counts).

    Each case's `value` is its exactness (so the plain mean would be accuracy); `detail` is
    `(gold, predicted)` and `aggregate` computes macro-F1 from the details, so bootstrap resamples
    recompute it. A failed output (`predicted=None`) is a wrong prediction: a miss for its gold labels.
    """

    name = "macro_f1"

    async def score(self, cases: Sequence[Case], outputs: Sequence[Any]) -> list[CaseScore]:
        check_lengths(cases, outputs)
        check_labels([self], cases)
        scores = []
        for case, out in zip(cases, outputs, strict=True):
            gold = list(case.expected) if is_multi(case.expected) else case.expected
            if out is None:
                scores.append(CaseScore(None, detail=(gold, None), rationale=FAILED))
                continue
            predicted = list(out) if is_multi(out) else out
            scores.append(CaseScore(float(_same_label(gold, predicted)), detail=(gold, predicted)))
        return scores

    def statistics(self, scores: Sequence[CaseScore]) -> np.ndarray:
        """Per case and label (gold ∪ predicted): true positives, then false positives, then false negatives."""
        pairs = []
        for score in scores:
            gold, predicted = score.detail
            multi = is_multi(gold, predicted)
            g = label_set(gold) if multi else frozenset([label_key(gold)])
            none: frozenset[str] = frozenset()
            p = none if predicted is None else label_set(predicted) if multi else frozenset([label_key(predicted)])
            pairs.append((g, p))
        labels = sorted(set().union(*(g | p for g, p in pairs)))
        column = {label: i for i, label in enumerate(labels)}
        counts = np.zeros((len(pairs), 3 * len(labels)))
        for row, (g, p) in enumerate(pairs):
            for offset, found in ((0, g & p), (len(labels), p - g), (2 * len(labels), g - p)):
                for label in found:
                    counts[row, offset + column[label]] += 1
        return counts

    def from_statistics(self, totals: np.ndarray) -> np.ndarray:
        """Macro-F1 over the labels with any count; 1.0 when no label has one (empty multilabel cases)."""
        tp, fp, fn = np.split(np.asarray(totals, dtype=float), 3, axis=-1)
        denominator = 2 * tp + fp + fn
        present = denominator > 0
        f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=present)
        count = present.sum(axis=-1)
        return np.where(count > 0, f1.sum(axis=-1) / np.maximum(count, 1), 1.0)

    def aggregate(self, scores: Sequence[CaseScore]) -> float:
        if not scores:
            return float("nan")
        return float(self.from_statistics(self.statistics(scores).sum(axis=0)))


# --- extraction ---------------------------------------------------------------------------------


class FieldF1(Scorer):
    """Per-field precision/recall/F1 for extraction, with normalisation.

    Text is compared case-, whitespace- and punctuation-insensitively, numbers as numbers ("1,200" =
    1200.0), list values as sets of normalised items, nested objects as dotted fields; null, empty and
    "N/A" mean absent. `detail` is `{field: [tp, fp, fn]}`; `value` is the case's micro-F1 and
    `aggregate` the micro-F1 over every field of every case. A failed output misses every gold field.
    """

    name = "field_f1"

    async def score(self, cases: Sequence[Case], outputs: Sequence[Any]) -> list[CaseScore]:
        check_lengths(cases, outputs)
        check_labels([self], cases)
        scores = []
        for case, out in zip(cases, outputs, strict=True):
            gold_obj = as_object(case.expected)
            if gold_obj is None:
                raise UserError(
                    f"`field_f1` needs case {case.id}'s `expected` to be a JSON object, got {case.expected!r:.80}. "
                    "Fix: write the expected fields as a JSON object"
                )
            gold = flat_fields(gold_obj)
            predicted_obj = None if out is None else as_object(out)
            predicted = flat_fields(predicted_obj) if predicted_obj is not None else {}
            counts: dict[str, list[int]] = {}
            for field in sorted(set(gold) | set(predicted)):
                g, p = gold.get(field, frozenset()), predicted.get(field, frozenset())
                counts[field] = [len(g & p), len(p - g), len(g - p)]
            tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
            if out is None:
                scores.append(CaseScore(None, detail=counts, rationale=FAILED))
            elif predicted_obj is None:
                scores.append(
                    CaseScore(f1_from_counts(tp, fp, fn), detail=counts, rationale="the output is not a JSON object")
                )
            else:
                scores.append(CaseScore(f1_from_counts(tp, fp, fn), detail=counts))
        return scores

    def statistics(self, scores: Sequence[CaseScore]) -> np.ndarray:
        """Per case: true positives, false positives and false negatives over all fields."""
        counts = np.zeros((len(scores), 3))
        for row, score in enumerate(scores):
            for field_counts in (score.detail or {}).values():
                counts[row] += field_counts
        return counts

    def from_statistics(self, totals: np.ndarray) -> np.ndarray:
        """Micro-F1 from summed counts; 1.0 when nothing was expected or found."""
        tp, fp, fn = np.moveaxis(np.asarray(totals, dtype=float), -1, 0)
        denominator = 2 * tp + fp + fn
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 1.0)

    def aggregate(self, scores: Sequence[CaseScore]) -> float:
        if not scores:
            return float("nan")
        return float(self.from_statistics(self.statistics(scores).sum(axis=0)))


def field_report(scores: Sequence[CaseScore]) -> dict[str, dict[str, float]]:
    """Per field over all cases: precision, recall, F1 and support (gold items), from `FieldF1` details.

    A ratio with a zero denominator is 0.0, except for a field never present on either side (1.0).
    """
    totals: dict[str, list[int]] = {}
    for score in scores:
        for field, counts in (score.detail or {}).items():
            total = totals.setdefault(field, [0, 0, 0])
            for i in range(3):
                total[i] += counts[i]
    report = {}
    for field in sorted(totals):
        tp, fp, fn = totals[field]
        empty = not (tp or fp or fn)
        report[field] = {
            "precision": tp / (tp + fp) if tp + fp else float(empty),
            "recall": tp / (tp + fn) if tp + fn else float(empty),
            "f1": f1_from_counts(tp, fp, fn),
            "support": float(tp + fn),
        }
    return report


# --- text similarity ----------------------------------------------------------------------------


class RougeL(_PerCase):
    """ROUGE-L F-measure against `expected` (a text, or a list of references: the best one counts)."""

    name = "rouge_l"

    def value(self, case: Case, output: Any) -> float:
        return max(rouge_l(output_text(output), ref) for ref in references(case.expected))


class EmbeddingSimilarity(Scorer):
    """Cosine similarity (clipped to 0..1) of output and `expected` embeddings from an embedding model,
    e.g. `workspace.registry.get("e5-small")`. Texts are embedded in batches, each distinct text once;
    a case whose embedding failed scores None with the error as rationale."""

    name = "embedding_similarity"

    def __init__(self, model: Model) -> None:
        self.model = model

    async def score(self, cases: Sequence[Case], outputs: Sequence[Any]) -> list[CaseScore]:
        check_lengths(cases, outputs)
        check_labels([self], cases)
        texts = [None if out is None else output_text(out) for out in outputs]
        references = [output_text(case.expected) for case in cases]
        embedded = await embed([*texts, *references], self.model)
        n = len(cases)
        scores = []
        for i in range(n):
            a, b = embedded.values[i], embedded.values[n + i]
            if texts[i] is None:
                scores.append(CaseScore(None, rationale=FAILED))
            elif a is None or b is None:
                error = embedded.errors[i] or embedded.errors[n + i] or "no embedding"
                scores.append(CaseScore(None, rationale=f"embedding failed: {error}"))
            else:
                scores.append(CaseScore(cosine01(a, b)))
        return scores


# --- JSON validity ------------------------------------------------------------------------------


class JsonValidity(Scorer):
    """1.0 when the output is JSON (a JSON string, or already a dict/list) that satisfies `schema` if given.

    The check covers required keys and basic types (`schema_problems`); the rationale names the problem.
    """

    name = "json_valid"
    needs_expected = False

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self.schema = schema

    def _judge(self, output: Any) -> CaseScore:
        value = output
        if isinstance(output, str):
            try:
                value = json.loads(output)
            except json.JSONDecodeError as exc:
                return CaseScore(0.0, rationale=f"not JSON: {exc}")
        elif not isinstance(output, dict | list):
            return CaseScore(0.0, rationale=f"not JSON: a {type(output).__name__}")
        problems = schema_problems(value, self.schema) if self.schema else []
        return CaseScore(float(not problems), rationale="; ".join(problems[:5]) or None)

    async def score(self, cases: Sequence[Case], outputs: Sequence[Any]) -> list[CaseScore]:
        check_lengths(cases, outputs)
        return [CaseScore(None, rationale=FAILED) if out is None else self._judge(out) for out in outputs]


# --- retrieval ----------------------------------------------------------------------------------


def ranked_documents(output: Any) -> list[str]:
    """The documents a knowledge answer retrieved, best first (`retrieved`), else the ones it cites."""
    retrieved = output.get("retrieved") if isinstance(output, dict) else None
    if isinstance(retrieved, list) and retrieved:
        ranked: list[str] = []
        for name in retrieved:
            if name and doc_key(str(name)) not in {doc_key(d) for d in ranked}:
                ranked.append(str(name))
        return ranked
    return cited_documents(output)


class _Retrieval(Scorer):
    label_hint = "the documents that answer it (`sources` in its metadata)"

    def has_label(self, case: Case) -> bool:
        sources = case.metadata.get("sources")
        return isinstance(sources, list | tuple) and any(sources)

    def documents(self, output: Any) -> list[str]:
        """The documents the answer is judged on: those retrieved, best first (else those cited)."""
        return ranked_documents(output)

    def _value(self, expected: set[str], cited: list[str]) -> float:
        raise NotImplementedError

    async def score(self, cases: Sequence[Case], outputs: Sequence[Any]) -> list[CaseScore]:
        check_lengths(cases, outputs)
        check_labels([self], cases)
        scores = []
        for case, out in zip(cases, outputs, strict=True):
            expected = [str(s) for s in case.metadata["sources"] if s]
            if out is None:
                scores.append(CaseScore(None, detail={"expected": expected, "cited": []}, rationale=FAILED))
                continue
            cited = self.documents(out)
            value = self._value({doc_key(s) for s in expected}, [doc_key(c) for c in cited])
            scores.append(CaseScore(value, detail={"expected": expected, "cited": cited}))
        return scores


class RecallAtK(_Retrieval):
    """Share of a case's expected sources among the first `k` documents retrieved (or cited)."""

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise UserError(f"recall@k needs k ≥ 1, got {k}")
        self.k = k
        self.name = f"recall@{k}"

    def _value(self, expected: set[str], cited: list[str]) -> float:
        return len(expected & set(cited[: self.k])) / len(expected)


class CitationRecall(_Retrieval):
    """Share of a case's expected sources that the answer cites. Unlike recall@k, which measures the retrieval
    every candidate of a knowledge agent shares, it measures what the answering model (or mode) does."""

    name = "citation_recall"

    def documents(self, output: Any) -> list[str]:
        return cited_documents(output)

    def _value(self, expected: set[str], cited: list[str]) -> float:
        return len(expected & set(cited)) / len(expected)


class MRR(_Retrieval):
    """Reciprocal rank of the first cited document that is an expected source (0 when none is)."""

    name = "mrr"

    def _value(self, expected: set[str], cited: list[str]) -> float:
        return next((1.0 / rank for rank, doc in enumerate(cited, 1) if doc in expected), 0.0)


# --- defaults -----------------------------------------------------------------------------------


def default_scorers(
    kind: AgentKind | str,
    *,
    embedder: Model | None = None,
    output_schema: dict[str, Any] | None = None,
    k: int = 5,
) -> list[Scorer]:
    """The task metrics for an agent kind (the first is the primary metric). LLM judges are separate
    (`brickyard.evals.judges.default_judges`), as they need a judge endpoint."""
    kind = AgentKind(kind)
    similarity: list[Scorer] = [EmbeddingSimilarity(embedder)] if embedder is not None else []
    if kind is AgentKind.classify:
        return [Accuracy(), MacroF1()]
    if kind is AgentKind.extract:
        return [FieldF1(), JsonValidity(output_schema)]
    if kind is AgentKind.transform:
        return [RougeL(), *similarity]
    if kind is AgentKind.knowledge:
        return [CitationRecall(), RecallAtK(k), MRR(), RougeL(), *similarity]
    raise UserError(f"there are no task metrics for a {kind.value} agent. Fix: evaluate it with LLM judges")


__all__ = [
    "FAILED",
    "MRR",
    "Accuracy",
    "CitationRecall",
    "EmbeddingSimilarity",
    "ExactMatch",
    "FieldF1",
    "JsonValidity",
    "MacroF1",
    "RecallAtK",
    "RougeL",
    "check_labels",
    "cited_documents",
    "default_scorers",
    "field_report",
    "lcs_length",
    "missing_label",
    "normalize_text",
    "output_text",
    "rouge_l",
    "schema_problems",
    "tokens",
]
