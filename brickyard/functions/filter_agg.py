"""`ai_filter` (a yes/no judgement usable in WHERE and JOIN ON) and `ai_agg` (map-reduce over many rows)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brickyard._errors import InvalidRequestError
from brickyard.functions._negation import contrast as contrast_of
from brickyard.functions._rows import DATA_RULE, Outcome, data_requests, is_null, run_rows
from brickyard.functions.classify import Classification, classify, embedding_applies
from brickyard.functions.embed import unit_rows
from brickyard.models._types import estimate_tokens
from brickyard.models.base import Model

EMBEDDED_FILTER_NOTE = (
    "embedding contrast with {contrast!r}: the bundled models cannot judge a predicate reliably (about 0.7 "
    "accuracy on Rotten Tomatoes reviews; BENCHMARKS.md §12); `options => {{'examples': ...}}` trains on "
    "labelled rows, `'contrast'` names the opposite statement"
)

AGG_CHUNK_TOKENS = 1200
"""Input tokens per map/reduce call of `ai_agg`: fits the smallest bundled context with room to answer."""


async def filter_(
    predicate: str,
    texts: Sequence[str | None],
    model: Model,
    *,
    tag: str | None = None,
    progress: bool | None = None,
    scoring: bool = False,
    calibrate: bool = True,
    embedder: Model | None = None,
    examples: Sequence[tuple[str, object]] | None = None,
    contrast: str | None = None,
) -> Classification:
    """`ai_filter(predicate, content)`: True when the content satisfies the predicate.

    With `examples`, (text, true/false) pairs for this predicate, a logistic regression on the `embedder`'s
    vectors answers (`classify`'s trained mechanism), with no model call.

    A two-label classification (yes/no) on the same path as `classify`: scored and calibrated where the
    model allows it, each row with the confidence of its answer. With an `embedder`, on the small local
    models (where `classify` answers by embedding) the row is compared with the predicate and with its
    `contrast` (by default the predicate negated at its verb, `_negation.contrast`): measured the least bad
    of the mechanisms those models allow and still unreliable (BENCHMARKS.md §12), so every such row carries
    a note naming the contrast.
    """
    if is_null(predicate) or not str(predicate).strip():
        raise InvalidRequestError("ai_filter: the predicate is empty. Fix: pass a condition such as 'is a complaint'")
    if examples is not None:
        if embedder is None:
            raise InvalidRequestError("ai_filter: examples need an embedding endpoint. Fix: configure `ai_embed`")
        pairs = [(text, "true" if _truth(label) else "false") for text, label in examples]
        try:
            outcome = await classify(
                texts, ["true", "false"], model, tag=tag, progress=progress, embedder=embedder, examples=pairs
            )
        except InvalidRequestError as exc:  # e.g. every example true: said as this function's error
            raise InvalidRequestError(str(exc).replace("ai_classify", "ai_filter")) from None
        outcome.errors = [e.replace("ai_classify", "ai_filter") if e else e for e in outcome.errors]
        outcome.values = [None if v is None else v == "true" for v in outcome.values]
        return outcome
    if embedder is not None and embedding_applies(model, None, None, False, scoring):
        claim = str(predicate).strip()
        opposite = contrast_of(claim, contrast)
        outcome = await classify(texts, [claim, opposite], model, tag=tag, progress=progress, embedder=embedder)
        outcome.errors = [e.replace("ai_classify", "ai_filter") if e else e for e in outcome.errors]
        outcome.values = [None if v is None else v == claim for v in outcome.values]
        note = EMBEDDED_FILTER_NOTE.format(contrast=opposite)
        outcome.notes = [note if m is not None else None for m in outcome.mechanisms]
        return outcome
    # Scored, the answer words are "yes"/"no" (the likeliest answer tokens of a small model); generated,
    # "true"/"false" as before.
    yes, no = ("yes", "no") if scoring and model.supports_logprobs else ("true", "false")
    outcome = await classify(
        texts,
        {yes: "the text satisfies the condition", no: "the text does not satisfy the condition"},
        model,
        instructions=f"Condition: {predicate}. Answer {yes} if the text satisfies the condition, else {no}.",
        tag=tag,
        progress=progress,
        scoring=scoring,
        calibrate=calibrate,
    )
    outcome.errors = [e.replace("ai_classify", "ai_filter") if e else e for e in outcome.errors]
    outcome.values = [None if v is None else v == yes for v in outcome.values]
    return outcome


def _truth(label: object) -> bool:
    """An example's label as a boolean: true/false, yes/no, 1/0 (any case)."""
    text = str(label).strip().lower()
    if text in ("true", "yes", "1", "t", "y"):
        return True
    if text in ("false", "no", "0", "f", "n"):
        return False
    raise InvalidRequestError(
        f"ai_filter: an example's label must be true or false; got {label!r}. Fix: label each row true or false"
    )


MATCH_INSTRUCTIONS = (
    "Each label is a statement about the text. Choose every statement that is true of the text (possibly none)."
)


MATCH_Z = 2.0
"""On the embedding mechanism, a predicate holds for a text when the text's similarity to it stands this many
standard deviations above its mean similarity to the whole set (measured: BENCHMARKS.md, "AI-aware SQL")."""

MATCH_RELATIVE_MIN = 8
"""Fewer predicates than this give no meaningful spread: each is then judged as `ai_filter` judges it."""


async def match(
    texts: Sequence[str | None],
    predicates: Sequence[str],
    model: Model,
    *,
    tag: str | None = None,
    progress: bool | None = None,
    embedder: Model | None = None,
) -> Outcome[list[str]]:
    """`ai_match(content, predicates)`: the predicates the content satisfies, one multi-label call per row.

    The semantic join's rewrite (`JOIN small ON ai_filter(<small side>, <large side>)`) asks this once per
    row of the large side instead of `ai_filter` once per pair. A chat model chooses among the predicates
    in one call. On the small local models (the embedding mechanism) a text matches the predicates it stands
    out for among the set (similarity `MATCH_Z` deviations above its mean; measured far better than judging
    each pair by contrast with its negation), or, with fewer than `MATCH_RELATIVE_MIN` predicates, each is
    judged as `ai_filter` would judge it.
    """
    claims = list(dict.fromkeys(str(p).strip() for p in predicates if not is_null(p) and str(p).strip()))
    if not claims:
        raise InvalidRequestError("ai_match: the list of predicates is empty. Fix: pass at least one condition")
    if embedder is not None and embedding_applies(model, None, None, False, False):
        if len(claims) >= MATCH_RELATIVE_MIN:
            return await _match_by_spread(texts, claims, embedder)
        values: list[list[str] | None] = [None if is_null(t) else [] for t in texts]
        errors: list[str | None] = [None] * len(texts)
        for claim in claims:
            verdicts = await filter_(claim, texts, model, tag=tag, progress=progress, embedder=embedder)
            for i, (ok, error) in enumerate(zip(verdicts.values, verdicts.errors, strict=True)):
                if error and errors[i] is None:
                    errors[i] = error.replace("ai_filter", "ai_match")
                current = values[i]
                if ok and current is not None:
                    current.append(claim)
        return Outcome(values, errors)
    outcome = await classify(
        texts, claims, model, instructions=MATCH_INSTRUCTIONS, multilabel=True, tag=tag, progress=progress
    )
    outcome.errors = [e.replace("ai_classify", "ai_match") if e else e for e in outcome.errors]
    return outcome


async def _match_by_spread(texts: Sequence[str | None], claims: list[str], embedder: Model) -> Outcome[list[str]]:
    """Per text, the claims whose similarity stands `MATCH_Z` deviations above the text's mean over all claims."""
    values: list[list[str] | None] = [None] * len(texts)
    errors: list[str | None] = [None] * len(texts)
    live = [i for i, t in enumerate(texts) if not is_null(t) and str(t).strip()]
    for i, t in enumerate(texts):
        if not is_null(t):
            values[i] = []
    if not live:
        return Outcome(values, errors)
    try:
        vectors = (await embedder.embed([*claims, *(str(texts[i]) for i in live)])).vectors
    except Exception as exc:  # the embedder failed: every row carries the error
        for i in live:
            errors[i] = f"ai_match: {exc}"
        return Outcome(values, errors)
    matrix = unit_rows(vectors)
    sims = matrix[len(claims) :] @ matrix[: len(claims)].T
    spread = (sims - sims.mean(axis=1, keepdims=True)) / np.maximum(sims.std(axis=1, keepdims=True), 1e-12)
    for row, i in enumerate(live):
        values[i] = [claim for claim, z in zip(claims, spread[row], strict=True) if z >= MATCH_Z]
    return Outcome(values, errors)


def _chunks(texts: Sequence[str], budget: int) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    used = 0
    for text in texts:
        cost = estimate_tokens(text) + 4
        if chunks[-1] and used + cost > budget:
            chunks.append([])
            used = 0
        if cost > budget:  # one very long text: keep its head, say so
            text = text[: budget * 4] + " [truncated]"
            cost = budget
        chunks[-1].append(text)
        used += cost
    return [c for c in chunks if c]


async def aggregate(
    texts: Sequence[str | None],
    instruction: str,
    model: Model,
    *,
    chunk_tokens: int = AGG_CHUNK_TOKENS,
    tag: str | None = None,
    progress: bool | None = None,
) -> str | None:
    """`ai_agg(texts, instruction)`: one answer over all texts, however many, by map-reduce.

    Texts are packed into chunks that fit the context; each chunk is answered (map); the partial
    answers are packed and answered again (reduce) until one remains. NULL texts are skipped; no
    text at all gives NULL.
    """
    if not instruction or not str(instruction).strip():
        raise InvalidRequestError("ai_agg: the instruction is empty. Fix: e.g. 'Summarise the common complaints'")
    items = [str(t) for t in texts if not is_null(t) and str(t).strip()]
    if not items:
        return None
    level = 0
    while True:
        chunks = _chunks(items, chunk_tokens)
        partial = level > 0
        system = (
            f"{instruction}\n"
            + (
                "The items are partial answers over parts of a larger set; combine them into one answer.\n"
                if partial
                else "Answer over all the items.\n"
            )
            + DATA_RULE
        )
        packed = ["\n".join(f"- {t}" for t in chunk) for chunk in chunks]
        requests = data_requests(packed, system, max_tokens=512, tag=tag)
        outcome = await run_rows("ai_agg", model, requests, lambda r: r.text.strip(), progress=progress)
        failed = outcome.first_error()
        if failed is not None:
            raise InvalidRequestError(failed[1])
        answers = [v for v in outcome.values if v is not None]
        if len(answers) == 1 and len(chunks) == 1:
            return answers[0]
        items, level = answers, level + 1
        if level > 8:
            raise InvalidRequestError("ai_agg: the answers do not shrink. Fix: ask for a shorter answer")
