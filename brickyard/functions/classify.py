"""`ai_classify` and `ai_analyze_sentiment`: labels from a fixed set, scored or constrained to the set.

Single-label classification on a model that reports log-probabilities scores every label (the probability
of its first token after the prompt) and calibrates the scores against content-free inputs, so a small
model's bias toward one label does not decide the answer (see `_scoring`); each row gets a confidence.
Where scoring cannot apply (multi-label, reasoning, too many labels, labels that begin alike, no
log-probabilities, or a row whose labels are not among the likely tokens) the label is generated instead:
local models get a grammar that admits only the labels; models with structured outputs get a JSON schema
with an enum; others get plain text matched back to a label. Text is delimited as data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brickyard._errors import InvalidRequestError, MalformedResponseError
from brickyard.functions import _scoring
from brickyard.functions._rows import DATA_RULE, Demo, Outcome, data_requests, is_null, run_rows
from brickyard.functions.embed import unit_rows
from brickyard.models._types import ChatRequest, ChatResult
from brickyard.models.base import Model

Labels = Sequence[str] | Mapping[str, str]


def label_map(labels: Labels | str) -> dict[str, str]:
    """Labels as {label: description}; accepts a list, a mapping or their JSON text."""
    if isinstance(labels, str):
        try:
            labels = json.loads(labels)
        except json.JSONDecodeError:
            raise InvalidRequestError(
                "labels must be an array or a JSON object of label → description. Fix: ARRAY['a', 'b']"
            ) from None
    if isinstance(labels, Mapping):
        mapping = {str(k): str(v or "") for k, v in labels.items()}
    elif isinstance(labels, Sequence) and not isinstance(labels, str):
        mapping = {str(label): "" for label in labels if label is not None}
    else:
        raise InvalidRequestError("labels must be an array or a JSON object of label → description")
    if len(mapping) < 2:
        raise InvalidRequestError("at least two labels are needed. Fix: pass e.g. ARRAY['fresh', 'rotten']")
    if len(mapping) > 500:
        raise InvalidRequestError("at most 500 labels are supported")
    if any(not label.strip() for label in mapping):
        raise InvalidRequestError("every label must be a non-empty string")
    return mapping


def _gbnf_literal(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid GBNF literal


def classify_requests(
    texts: Sequence[str | None],
    labels: Labels | str,
    *,
    model: Model,
    instructions: str | None = None,
    multilabel: bool = False,
    tag: str | None = None,
    first_token_only: bool = True,
    demos: Sequence[Sequence[Demo]] | None = None,
    reasoning: bool = False,
) -> list[ChatRequest | None]:
    """One request per text (None for a NULL or blank text: no model call).

    `demos` are few-shot demonstrations per text (their output is the label); `reasoning` asks for a
    short chain of thought before the label, as JSON `{"reasoning": ..., "label": ...}`.
    """
    mapping = label_map(labels)
    options = "\n".join(f"- {label}" + (f": {desc}" if desc else "") for label, desc in mapping.items())
    task = "every label that applies (possibly none)" if multilabel else "exactly one label"
    system = (
        f"You are a text classifier. Assign the text {task} from this list:\n{options}\n"
        + (f"Instructions: {instructions}\n" if instructions else "")
        + DATA_RULE
        + (" Answer with a JSON array of labels." if multilabel else " Answer with the label only.")
    )
    extra: dict[str, Any] = {}
    schema: dict[str, Any] | None = None
    longest = max(len(label) for label in mapping)
    if reasoning and not multilabel:
        system += " First think step by step in `reasoning` (at most three sentences), then give the `label`."
        schema = {
            "type": "object",
            "properties": {
                "reasoning": {"type": "string", "maxLength": 400},
                "label": {"type": "string", "enum": list(mapping)},
            },
            "required": ["reasoning", "label"],
            "additionalProperties": False,
        }
        demos = [[Demo(d.input, json.dumps({"reasoning": "", "label": d.output})) for d in row] for row in demos or []]
        max_tokens = 200 + longest
    elif multilabel:
        schema = {
            "type": "object",
            "properties": {
                "labels": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(mapping)},
                    "maxItems": len(mapping),
                }
            },
            "required": ["labels"],
        }
        max_tokens = 16 + len(mapping) * (longest + 4)
    elif model.supports_grammar and not reasoning:
        # The grammar admits only the labels, so the first token usually names one already: generate
        # one token and read the label off its prefix; rows whose prefix is ambiguous are asked again.
        extra["grammar"] = "root ::= " + " | ".join(_gbnf_literal(label) for label in mapping)
        max_tokens = 1 if first_token_only else longest + 8
    elif model.supports_json_schema:
        schema = {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": list(mapping)}},
            "required": ["label"],
            "additionalProperties": False,
        }
        max_tokens = longest + 32
    else:
        max_tokens = longest + 16
    return data_requests(
        texts,
        system,
        max_tokens=max_tokens,
        json_schema=schema,
        schema_name="classification",
        extra=extra,
        tag=tag,
        demos=demos or None,
    )


class AmbiguousPrefixError(MalformedResponseError):
    """Internal: a one-token answer that starts more than one label (the row is asked again in full)."""

    retryable = False


def parse_label(result: ChatResult, labels: Labels | str) -> str:
    """The label a result names; a `MalformedResponseError` when it names none."""
    mapping = label_map(labels)
    answer = str(result.json["label"]) if isinstance(result.json, dict) and "label" in result.json else result.text
    cleaned = answer.strip().strip("\"'`.").strip()
    by_lower = {label.lower(): label for label in mapping}
    if cleaned.lower() in by_lower:
        return by_lower[cleaned.lower()]
    if result.finish_reason == "length" and cleaned:
        # a grammar-constrained answer cut short: the label it starts, if only one
        starting = [label for label in mapping if label.lower().startswith(cleaned.lower())]
        if len(starting) == 1:
            return starting[0]
        if len(starting) > 1:
            raise AmbiguousPrefixError(f"answer {cleaned!r} starts several labels")
    mentioned = [label for label in mapping if label.lower() in cleaned.lower()]
    if len(mentioned) == 1:
        return mentioned[0]
    raise MalformedResponseError(f"answer {answer[:80]!r} is not one of the labels {list(mapping)}", retryable=False)


def parse_labels(result: ChatResult, labels: Labels | str) -> list[str]:
    """The labels of a multi-label answer, in the order of the label list, without repeats."""
    mapping = label_map(labels)
    raw = result.json.get("labels") if isinstance(result.json, dict) else None
    if raw is None:
        try:
            raw = json.loads(result.text)
        except json.JSONDecodeError:
            raw = [part.strip() for part in result.text.split(",")]
    if isinstance(raw, dict):
        raw = raw.get("labels", [])
    chosen = {str(item).strip().lower() for item in raw if item is not None}
    unknown = chosen - {label.lower() for label in mapping}
    if unknown:
        raise MalformedResponseError(f"answer names labels outside the set: {sorted(unknown)}", retryable=False)
    return [label for label in mapping if label.lower() in chosen]


@dataclass
class Classification(Outcome[Any]):
    """An `Outcome` of `classify` with, per row, how its label was found and how sure it is.

    `mechanisms[i]` is "scored" (calibrated label scores), "scored-uncalibrated" or "generated" (None for a
    NULL row); `confidences[i]` the chosen label's probability (calibrated when scored; the model's own
    confidence, if it gives one, when generated); `notes[i]` why a row was generated or left uncalibrated;
    `probabilities[i]` every label's probability for a scored row; `prior` the content-free distribution
    (p_cf) used for calibration.
    """

    mechanisms: list[str | None] = field(default_factory=list)
    confidences: list[float | None] = field(default_factory=list)
    notes: list[str | None] = field(default_factory=list)
    probabilities: list[dict[str, float] | None] = field(default_factory=list)
    prior: dict[str, float] | None = None


async def classify(
    texts: Sequence[str | None],
    labels: Labels | str,
    model: Model,
    *,
    instructions: str | None = None,
    multilabel: bool = False,
    tag: str | None = None,
    progress: bool | None = None,
    demos: Sequence[Sequence[Demo]] | None = None,
    reasoning: bool = False,
    scoring: bool = False,
    calibrate: bool = True,
    embedder: Model | None = None,
    examples: Sequence[tuple[str, str]] | None = None,
) -> Classification:
    """`ai_classify` over a list: a label per text (a list of labels when `multilabel`).

    `demos` (one list per text) are few-shot demonstrations; `reasoning` asks for a chain of thought first.
    `scoring=True` scores the labels (log-probabilities, calibrated) where the model and the label set allow
    it, generating the rest with a note; the default generates constrained labels, because on the measured
    sets scoring was not better on the bundled models (BENCHMARKS.md, "Classification by scoring").
    `calibrate=False` skips the content-free calibration of scores.
    With an `embedder`, a single-label task with no instructions, demonstrations or reasoning on a small local
    llama.cpp model is answered by embedding similarity to the labels (and their descriptions) instead:
    measured far better than those models' generated labels (BENCHMARKS.md §10, README "AI functions").
    `examples` (text, label) pairs train a logistic regression on the embedder's vectors that answers
    every row instead of the model (single label; needs an `embedder`): measured the most accurate
    mechanism when labelled rows exist (BENCHMARKS.md §10).
    """
    mapping = label_map(labels)
    n = len(texts)
    result = Classification([None] * n, [None] * n, [], [None] * n, [None] * n, [None] * n, [None] * n)
    if multilabel:
        requests = classify_requests(
            texts, mapping, model=model, instructions=instructions, multilabel=True, tag=tag, demos=demos
        )
        outcome = await run_rows("ai_classify", model, requests, lambda r: parse_labels(r, mapping), progress=progress)
        result.values, result.errors, result.reports = outcome.values, outcome.errors, outcome.reports
        result.mechanisms = ["generated" if r is not None else None for r in requests]
        return result
    if examples is not None:
        if multilabel or embedder is None:
            raise InvalidRequestError(
                "ai_classify: examples train a single-label classifier on embeddings. "
                "Fix: drop `multilabel`, or drop `examples`"
                if multilabel
                else "ai_classify: examples need an embedding endpoint. Fix: configure `ai_embed`"
            )
        await _trained_rows(result, texts, mapping, examples, embedder)
        return result
    if embedder is not None and embedding_applies(model, instructions, demos, reasoning, scoring):
        await _embed_rows(result, texts, mapping, embedder)
        return result
    generate = list(range(n))
    why: str | None = None
    if scoring and not reasoning:
        why = _scoring.unscorable(list(mapping), logprobs=model.supports_logprobs, grammar=model.supports_grammar)
        if why is None:
            generate = await _score_rows(result, texts, mapping, model, instructions, tag, progress, demos, calibrate)
    if generate:
        await _generate_rows(result, texts, generate, mapping, model, instructions, tag, progress, demos, reasoning)
        if why is not None and scoring and not reasoning:
            for i in generate:
                if result.mechanisms[i] is not None:
                    result.notes[i] = f"generated: {why}"
    return result


def embedding_applies(
    model: Model, instructions: str | None, demos: Sequence[Sequence[Demo]] | None, reasoning: bool, scoring: bool
) -> bool:
    """Embedding zero-shot replaces generation on llama.cpp models when nothing but the labels defines the task."""
    return model.supports_grammar and not instructions and not demos and not reasoning and not scoring


async def _embed_rows(
    result: Classification, texts: Sequence[str | None], mapping: dict[str, str], embedder: Model
) -> None:
    """Each row's label by cosine similarity to the labels (with their descriptions), with a softmax confidence."""
    labels = list(mapping)
    live = [i for i, t in enumerate(texts) if not is_null(t) and str(t).strip()]
    if not live:
        return
    described = [f"{label}: {desc}" if desc else label for label, desc in mapping.items()]
    try:
        vectors = (await embedder.embed([*described, *(str(texts[i]) for i in live)])).vectors
    except Exception as exc:  # the embedder failed: every row carries the error
        for i in live:
            result.errors[i] = f"ai_classify: {exc}"
        return
    matrix = unit_rows(vectors)
    sims = matrix[len(labels) :] @ matrix[: len(labels)].T
    weights = np.exp((sims - sims.max(axis=1, keepdims=True)) / EMBEDDING_TEMPERATURE)
    probabilities = weights / weights.sum(axis=1, keepdims=True)
    _record(result, live, labels, probabilities, "embedding")


async def _trained_rows(
    result: Classification,
    texts: Sequence[str | None],
    mapping: dict[str, str],
    examples: Sequence[tuple[str, str]],
    embedder: Model,
) -> None:
    """Each row's label from a logistic regression fitted on the examples' embeddings (confidence: its probability)."""
    from brickyard.models.classifier import fit_classifier

    by_lower = {label.lower(): label for label in mapping}
    pairs = [
        (str(t), str(lab).strip()) for t, lab in examples if not is_null(t) and not is_null(lab) and str(t).strip()
    ]
    outside = sorted({lab for _, lab in pairs if lab.lower() not in by_lower})
    if outside:
        raise InvalidRequestError(
            f"ai_classify: the examples have labels outside the label set: {outside[:5]}. "
            "Fix: relabel those rows, or add the labels to the set"
        )
    if len({lab.lower() for _, lab in pairs}) < 2:
        raise InvalidRequestError(
            f"ai_classify: the examples must cover at least two labels; got {len(pairs)} rows of "
            f"{sorted({by_lower[lab.lower()] for _, lab in pairs})}. Fix: add labelled rows of the other labels"
        )
    live = [i for i, t in enumerate(texts) if not is_null(t) and str(t).strip()]
    vectors = (await embedder.embed([t for t, _ in pairs] + [str(texts[i]) for i in live])).vectors
    weights = fit_classifier(vectors[: len(pairs)], [by_lower[lab.lower()] for _, lab in pairs], embedder=embedder.name)
    probabilities = weights.probabilities(vectors[len(pairs) :])
    _record(
        result, live, weights.classes, probabilities, "trained", note=f"logistic regression on {len(pairs)} examples"
    )


def _record(
    result: Classification,
    rows: list[int],
    labels: Sequence[str],
    probabilities: np.ndarray,
    mechanism: str,
    *,
    note: str | None = None,
) -> None:
    """Each row's most probable label, its confidence and every label's probability, into `result`."""
    for k, i in enumerate(rows):
        best = int(np.argmax(probabilities[k]))
        result.values[i] = labels[best]
        result.mechanisms[i] = mechanism
        result.confidences[i] = float(probabilities[k, best])
        result.probabilities[i] = {label: float(p) for label, p in zip(labels, probabilities[k], strict=True)}
        result.notes[i] = note


EMBEDDING_TEMPERATURE = 0.02
"""Cosine similarities of e5 embeddings are compressed (most fall in 0.7–0.9): a softmax over them at this
temperature turns a gap of 0.05 into odds of about 12 to 1."""


async def _score_rows(
    result: Classification,
    texts: Sequence[str | None],
    mapping: dict[str, str],
    model: Model,
    instructions: str | None,
    tag: str | None,
    progress: bool | None,
    demos: Sequence[Sequence[Demo]] | None,
    calibrate: bool,
) -> list[int]:
    """Score every row's labels into `result`; returns the rows to generate instead (with their note set)."""
    labels = list(mapping)
    base = classify_requests(texts, mapping, model=model, instructions=instructions, tag=tag, demos=demos)
    requests = [None if r is None else _scoring.scoring_request(r, wide=True) for r in base]
    templates: dict[str, list[ChatRequest]] = {}
    if calibrate:
        for request in requests:
            if request is not None:
                key = _template_key(request)
                if key not in templates and len(templates) <= MAX_PRIORS:
                    templates[key] = _scoring.content_free_requests(request)
    calibrated = calibrate and len(templates) <= MAX_PRIORS
    extra = [r for key in templates for r in templates[key]] if calibrated else []
    outcome = await run_rows("ai_classify", model, requests, lambda r: _scoring.score(r, labels), progress=progress)
    result.reports.extend(outcome.reports)
    priors: dict[str, tuple[float, ...] | None] = {}
    if extra:  # the content-free inputs, after the rows (so the rows' report comes first)
        free = await run_rows("ai_classify", model, extra, lambda r: _scoring.score(r, labels), progress=False)
        result.reports.extend(free.reports)
        size = len(_scoring.CONTENT_FREE)
        for k, key in enumerate(templates):
            found = free.values[k * size : (k + 1) * size]
            priors[key] = _scoring.prior([s.probabilities if s else None for s in found], len(labels))
    n = len(requests)
    if len(priors) == 1 and (only := next(iter(priors.values()))) is not None:
        result.prior = dict(_scoring.as_mapping(only, labels))
    generate = []
    for i in range(n):
        request, scored = requests[i], outcome.values[i]
        if request is None:
            continue
        if outcome.errors[i] is not None:
            result.errors[i] = outcome.errors[i]
            continue
        assert scored is not None
        if scored.probabilities is None:
            generate.append(i)
            result.notes[i] = f"generated: {scored.note}"
            continue
        p_cf = priors.get(_template_key(request)) if calibrated and not scored.own else None
        p = _scoring.calibrate(scored.probabilities, p_cf)
        label, confidence = _scoring.choose(p, labels)
        result.values[i], result.confidences[i] = label, confidence
        result.probabilities[i] = dict(_scoring.as_mapping(p, labels))
        result.mechanisms[i] = "scored" if p_cf is not None else "scored-uncalibrated"
        if scored.own:
            result.notes[i] = "uncalibrated: the model's own class probabilities"
        elif calibrate and p_cf is None:
            result.notes[i] = (
                "uncalibrated: the demonstrations differ between too many rows"
                if not calibrated
                else "uncalibrated: the content-free inputs could not be scored"
            )
    return generate


MAX_PRIORS = 8
"""Distinct prompts (rows with different demonstrations) calibrated in one call; beyond, scores stay raw."""


def _template_key(request: ChatRequest) -> str:
    """The prompt without the row's text: rows with the same key share one content-free prior."""
    return json.dumps(_scoring.content_free_requests(request)[0].messages, sort_keys=True, default=str)


async def _generate_rows(
    result: Classification,
    texts: Sequence[str | None],
    rows: list[int],
    mapping: dict[str, str],
    model: Model,
    instructions: str | None,
    tag: str | None,
    progress: bool | None,
    demos: Sequence[Sequence[Demo]] | None,
    reasoning: bool,
) -> None:
    """Generate the label of `rows` (constrained to the labels) into `result`."""

    def parse(r: ChatResult) -> tuple[str, float | None]:
        return parse_label(r, mapping), r.confidence

    def subset(rows: list[int]) -> tuple[list[str | None], list[Sequence[Demo]] | None]:
        return [texts[i] for i in rows], [demos[i] for i in rows] if demos is not None else None

    sub_texts, sub_demos = subset(rows)
    requests = classify_requests(
        sub_texts, mapping, model=model, instructions=instructions, tag=tag, demos=sub_demos, reasoning=reasoning
    )
    outcome = await run_rows("ai_classify", model, requests, parse, progress=progress)
    again = [rows[j] for j, e in enumerate(outcome.errors) if e is not None and "starts several labels" in e]
    parts = [(rows, requests, outcome)]
    if again:
        again_texts, again_demos = subset(again)
        full = classify_requests(
            again_texts,
            mapping,
            model=model,
            instructions=instructions,
            tag=tag,
            first_token_only=False,
            demos=again_demos,
        )
        parts.append((again, full, await run_rows("ai_classify", model, full, parse, progress=progress)))
    for part_rows, part_requests, part in parts:
        result.reports.extend(part.reports)
        for i, request, value, error in zip(part_rows, part_requests, part.values, part.errors, strict=True):
            if request is None:
                continue
            result.mechanisms[i] = "generated"
            result.values[i], result.errors[i] = (value[0], None) if value is not None else (None, error)
            result.confidences[i] = value[1] if value is not None else None


async def analyze_sentiment(
    texts: Sequence[str | None], model: Model, *, tag: str | None = None, progress: bool | None = None
) -> Outcome[Any]:
    """`ai_analyze_sentiment`: positive, negative, neutral or mixed."""
    outcome = await classify(
        texts,
        {
            "positive": "the text expresses a favourable view",
            "negative": "the text expresses an unfavourable view",
            "neutral": "the text expresses no clear view",
            "mixed": "the text expresses both favourable and unfavourable views",
        },
        model,
        tag=tag,
        progress=progress,
    )
    outcome.errors = [e.replace("ai_classify", "ai_analyze_sentiment") if e else e for e in outcome.errors]
    return outcome
