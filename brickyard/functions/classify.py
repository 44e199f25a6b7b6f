"""`ai_classify` and `ai_analyze_sentiment`: labels from a fixed set, the model constrained to the set.

Local models get a grammar that admits only the labels; models with structured outputs get a JSON
schema with an enum; others get plain text matched back to a label. Text is delimited as data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from brickyard._errors import InvalidRequestError, MalformedResponseError
from brickyard.functions._rows import DATA_RULE, Demo, Outcome, data_requests, run_rows
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
) -> Outcome[Any]:
    """`ai_classify` over a list: a label per text (a list of labels when `multilabel`).

    `demos` (one list per text) are few-shot demonstrations; `reasoning` asks for a chain of thought first.
    """
    requests = classify_requests(
        texts,
        labels,
        model=model,
        instructions=instructions,
        multilabel=multilabel,
        tag=tag,
        demos=demos,
        reasoning=reasoning,
    )
    mapping = label_map(labels)
    if multilabel:
        return await run_rows("ai_classify", model, requests, lambda r: parse_labels(r, mapping), progress=progress)
    outcome = await run_rows("ai_classify", model, requests, lambda r: parse_label(r, mapping), progress=progress)
    again = [i for i, e in enumerate(outcome.errors) if e is not None and "starts several labels" in e]
    if again:
        full = classify_requests(
            [texts[i] for i in again],
            mapping,
            model=model,
            instructions=instructions,
            tag=tag,
            first_token_only=False,
            demos=[demos[i] for i in again] if demos is not None else None,
        )
        retry = await run_rows("ai_classify", model, full, lambda r: parse_label(r, mapping), progress=progress)
        for i, value, error in zip(again, retry.values, retry.errors, strict=True):
            outcome.values[i], outcome.errors[i] = value, error
        outcome.reports.extend(retry.reports)
    return outcome


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
