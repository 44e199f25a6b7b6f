"""`ai_extract`: named fields pulled out of text, as a struct (or nested JSON from a JSON schema)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from brickyard._errors import InvalidRequestError, MalformedResponseError
from brickyard.functions._demos import nearest
from brickyard.functions._grounding import MAX_STRING, bounded_schema, ground, output_budget
from brickyard.functions._rows import DATA_RULE, Demo, Outcome, data_requests, is_null, run_rows
from brickyard.models._types import ChatResult, estimate_tokens
from brickyard.models.base import Model

SQL_TYPES: dict[str, dict[str, Any]] = {
    **{key: {"type": ["string", "null"], "maxLength": MAX_STRING} for key in ("VARCHAR", "STRING", "TEXT")},
    **{key: {"type": ["number", "null"]} for key in ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC")},
    **{key: {"type": ["integer", "null"]} for key in ("INTEGER", "INT", "BIGINT")},
    **{key: {"type": ["boolean", "null"]} for key in ("BOOLEAN", "BOOL")},
    "DATE": {"type": ["string", "null"], "format": "date"},
}
"""Typed labels (`'amount_paid DOUBLE'`): the SQL type, in capitals, after the name, as in a STRUCT definition."""


def typed_label(label: str) -> tuple[str, str]:
    """A label's name and SQL type: `'total DOUBLE'` → ('total', 'DOUBLE'); a plain label is VARCHAR."""
    name, _, last = label.strip().rpartition(" ")
    if name.strip() and last in SQL_TYPES:  # in capitals, so that a label such as 'due date' stays a string
        return name.strip(), last
    return label.strip(), "VARCHAR"


def labels_schema(labels: Sequence[str]) -> dict[str, Any]:
    """One nullable field per label (a string unless the label names a type), all required (absent is null)."""
    typed = [typed_label(str(label)) for label in labels if label is not None and str(label).strip()]
    names = [name for name, _ in typed]
    if not names:
        raise InvalidRequestError("ai_extract: labels is empty. Fix: pass e.g. ARRAY['person', 'location']")
    if len(set(names)) != len(names):
        raise InvalidRequestError("ai_extract: labels repeat. Fix: give each label once")
    return {
        "type": "object",
        "properties": {name: dict(SQL_TYPES[kind]) for name, kind in typed},
        "required": names,
    }


def _schema_of(target: Sequence[str] | Mapping[str, Any] | str) -> tuple[dict[str, Any], list[str] | None]:
    if isinstance(target, str):
        try:
            target = json.loads(target)
        except json.JSONDecodeError:
            raise InvalidRequestError("ai_extract: labels must be an array or a JSON schema object") from None
    if isinstance(target, Mapping):
        schema = dict(target)
        if schema.get("type") != "object" or not isinstance(schema.get("properties"), Mapping):
            raise InvalidRequestError('ai_extract: a JSON schema must be {"type": "object", "properties": {...}}')
        return schema, None
    schema = labels_schema([str(label) for label in target])
    return schema, list(schema["properties"])


def _as_label_value(value: Any, field: dict[str, Any]) -> Any:
    if value is None:
        return None
    kinds = field.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return value if ({"number", "integer", "boolean"} & set(kinds)) else str(value)


ANTI_REPETITION = {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 3, "dry_penalty_last_n": 48}
"""llama.cpp's DRY sampler over the last 48 tokens: a phrase the answer already repeated is pushed down, while a
value copied from the (earlier) input is not penalised."""


async def extract(
    texts: Sequence[str | None],
    labels: Sequence[str] | Mapping[str, Any] | str,
    model: Model,
    *,
    instructions: str | None = None,
    tag: str | None = None,
    progress: bool | None = None,
    demos: Sequence[Sequence[Demo]] | None = None,
    examples: Sequence[tuple[str, Any]] | None = None,
    embedder: Model | None = None,
    shots: int | None = None,
) -> Outcome[dict[str, Any]]:
    """A dict per text: one key per label (None when absent), or an object of the given JSON schema.

    Values are copied, not invented: a string must occur in the text, numbers, dates, booleans and enums are
    parsed and validated, arrays lose duplicates; what is dropped is said in the outcome's `notes`. Each row's
    schema is bounded by its text (no string longer than the text, no array longer than its words), so a
    small model cannot repeat itself until `max_tokens`. `demos` (one list per text) are few-shot
    demonstrations whose output is the JSON answer. `examples`, (text, answer object) pairs, give each
    text the `shots` examples most similar to it (by `embedder`; the first ones without) as demonstrations:
    by default as many as the model learns from (`model.demonstrations`), fewer when they would fill more
    than `DEMO_CONTEXT_SHARE` of its context window.
    """
    schema, names = _schema_of(labels)
    if examples is not None:
        if demos is not None:
            raise InvalidRequestError("ai_extract: give `examples` or `demos`, not both")
        demos = await demos_for(texts, schema, model, examples, embedder, shots)
    fields = ", ".join(schema["properties"])
    system = (
        f"Extract these fields from the text: {fields}. Use null for a field the text does not contain; "
        "copy values exactly as they appear in the text, never invent or repeat them. "
        + (f"Instructions: {instructions} " if instructions else "")
        + f"Answer with JSON. {DATA_RULE}"
    )
    extra = dict(ANTI_REPETITION) if model.supports_grammar else {}
    requests = []
    for i, text in enumerate(texts):
        bounded = bounded_schema(schema, str(text)) if not is_null(text) else schema
        requests += data_requests(
            [text],
            system,
            max_tokens=output_budget(bounded),
            json_schema=bounded,
            schema_name="extraction",
            extra=extra,
            tag=tag,
            demos=[demos[i]] if demos is not None else None,
        )

    def parse(result: ChatResult) -> Any:
        if not isinstance(result.json, dict):
            raise MalformedResponseError("the answer is not a JSON object", retryable=False)
        return result.json

    outcome = await run_rows("ai_extract", model, requests, parse, progress=progress)
    notes: list[str | None] = [None] * len(texts)
    for i, raw in enumerate(outcome.values):
        if raw is None:
            continue
        dropped: dict[str, str] = {}
        grounded = ground(raw, schema, str(texts[i]), "", dropped)
        if names is not None:  # labels: every label present; untyped values as strings
            grounded = {n: _as_label_value(grounded.get(n), schema["properties"][n]) for n in names}
        outcome.values[i] = grounded
        if dropped:
            notes[i] = "dropped " + "; ".join(f"{field}: {why}" for field, why in dropped.items())
    outcome.notes = notes
    return outcome


def _example_demos(examples: Sequence[tuple[str, Any]], schema: dict[str, Any], *, compact: bool = False) -> list[Demo]:
    """Labelled examples as demonstrations: each answer a JSON object of the schema's fields (absent: null),
    without spaces when `compact`."""
    separators = (",", ":") if compact else (", ", ": ")
    fields = list(schema["properties"])
    demos = []
    for text, answer in examples:
        if is_null(text) or not str(text).strip():
            continue
        try:
            value = json.loads(answer) if isinstance(answer, str) else answer
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, Mapping):
            raise InvalidRequestError(
                f"ai_extract: an example's answer must be a JSON object of the fields {fields}; "
                f"got {str(answer)[:80]!r}. "
                'Fix: e.g. \'{"person": "Ada", "city": null}\''
            )
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise InvalidRequestError(
                f"ai_extract: an example answers fields {unknown} that are not asked for ({fields}). "
                "Fix: rename them, or drop them from the examples"
            )
        answer = {name: value.get(name) for name in fields}
        demos.append(Demo(str(text), json.dumps(answer, ensure_ascii=False, separators=separators)))
    if not demos:
        raise InvalidRequestError("ai_extract: the examples have no text. Fix: fill the `content` column")
    return demos


DEMO_CONTEXT_SHARE = 0.25
"""At most this share of a model's context window goes to demonstrations, which bounds a row's prompt and so
its latency: 8 short sentences fit in 2,048 tokens' share, 2 e-mails of 600 characters (measured: the
pre-trained Gemma 3 got fewer e-mail fields right shown 5 than shown 2, and took longer; BENCHMARKS.md §5)."""


async def demos_for(
    texts: Sequence[str | None],
    schema: dict[str, Any],
    model: Model,
    examples: Sequence[tuple[str, Any]],
    embedder: Model | None,
    shots: int | None = None,
) -> list[list[Demo]]:
    """The demonstrations each text is shown: the `shots` examples nearest it (by default as many as `model`
    learns from), within `DEMO_CONTEXT_SHARE` of its context window."""
    budget = int(model.context_window * DEMO_CONTEXT_SHARE) if model.context_window else None
    count = model.demonstrations.shown if shots is None else shots
    pool = _example_demos(examples, schema, compact=model.demonstrations.compact_json)
    return await _nearest_demos(texts, pool, embedder, count, budget)


async def _nearest_demos(
    texts: Sequence[str | None], pool: list[Demo], embedder: Model | None, shots: int, budget: int | None = None
) -> list[list[Demo]]:
    """For each text, the `shots` demonstrations most similar to it (the first `shots` without an embedder),
    the least similar dropped while they exceed `budget` tokens (at least one is kept)."""
    if shots < 1:
        raise InvalidRequestError("ai_extract: the number of examples shown must be at least 1")
    live = [i for i, text in enumerate(texts) if not is_null(text) and str(text).strip()]
    if embedder is None or len(pool) <= shots or not live:
        return [_within(pool[:shots][::-1], budget)[::-1] for _ in texts]
    # the pool apart from the rows: the same call every time, so the response cache answers it after the first
    pool_vectors = (await embedder.embed([d.input for d in pool])).vectors
    chosen = nearest(pool_vectors, (await embedder.embed([str(texts[i]) for i in live])).vectors, shots)
    out: list[list[Demo]] = [[] for _ in texts]
    for i, order in zip(live, chosen, strict=True):
        out[i] = _within([pool[j] for j in order], budget)
    return out


DEMO_TURN_TOKENS = 20
"""What a demonstration costs beyond its text and answer: the chat markers of its two turns and the `<text>`
delimiters (measured about 22 tokens on llama.cpp's ChatML fallback in Gemma 3's vocabulary). Counted, the long
rows shown 8 examples drop their least similar ones, which bounds their latency (BENCHMARKS.md §5)."""


def _within(demos: list[Demo], budget: int | None) -> list[Demo]:
    """The last (most similar) demonstrations whose tokens fit `budget`; at least the last one."""
    if budget is None:
        return demos
    kept: list[Demo] = []
    used = 0
    for demo in reversed(demos):
        used += estimate_tokens(demo.input) + estimate_tokens(demo.output) + DEMO_TURN_TOKENS
        if kept and used > budget:
            break
        kept.append(demo)
    return kept[::-1]
