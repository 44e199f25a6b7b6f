"""Text-to-text AI functions: `ai_summarize`, `ai_translate`, `ai_fix_grammar`, `ai_gen`, `ai_mask`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from brickyard._errors import InvalidRequestError
from brickyard.functions._rows import DATA_RULE, Outcome, data_requests, is_null, run_rows
from brickyard.models._types import ChatRequest, ChatResult, estimate_tokens
from brickyard.models.base import Model

MASK = "[MASKED]"


def _text_requests(
    texts: Sequence[str | None], system: str, *, max_tokens: int | None, tag: str | None
) -> list[ChatRequest | None]:
    """`max_tokens=None` sizes the answer to the text (rewrites are about as long as what they rewrite)."""
    budget = max_tokens or (lambda text: min(4096, 2 * estimate_tokens(text) + 32))
    return data_requests(texts, system, max_tokens=budget, tag=tag)


def _text(result: ChatResult) -> str:
    return result.text.strip()


async def summarize(
    texts: Sequence[str | None],
    model: Model,
    *,
    max_words: int = 50,
    tag: str | None = None,
    progress: bool | None = None,
) -> Outcome[str]:
    """`ai_summarize(content, max_words)`: a summary of at most `max_words` words (0 = no limit)."""
    if max_words < 0:
        raise InvalidRequestError("ai_summarize: max_words must be 0 (no limit) or more")
    limit = f" in at most {max_words} words" if max_words else ""
    system = f"Summarize the text{limit}. Reply with the summary only. {DATA_RULE}"
    budget = max(32, int(max_words * 2)) if max_words else 1024
    requests = _text_requests(texts, system, max_tokens=budget, tag=tag)

    def parse(result: ChatResult) -> str:
        words = result.text.strip().split()
        return " ".join(words[:max_words]) if max_words else " ".join(words)

    return await run_rows("ai_summarize", model, requests, parse, progress=progress)


async def translate(
    texts: Sequence[str | None], to_lang: str, model: Model, *, tag: str | None = None, progress: bool | None = None
) -> Outcome[str]:
    """`ai_translate(content, to_lang)`: the text in the target language (a name or code such as 'es')."""
    if not to_lang or not str(to_lang).strip():
        raise InvalidRequestError("ai_translate: to_lang is empty. Fix: pass a language such as 'es' or 'French'")
    system = f"Translate the text into {to_lang}. Reply with the translation only. {DATA_RULE}"
    requests = _text_requests(texts, system, max_tokens=None, tag=tag)
    return await run_rows("ai_translate", model, requests, _text, progress=progress)


async def fix_grammar(
    texts: Sequence[str | None], model: Model, *, tag: str | None = None, progress: bool | None = None
) -> Outcome[str]:
    """`ai_fix_grammar(content)`: the text with grammar and spelling corrected, meaning unchanged."""
    system = (
        "Correct the grammar and spelling of the text without changing its meaning. "
        f"Reply with the corrected text only. {DATA_RULE}"
    )
    requests = _text_requests(texts, system, max_tokens=None, tag=tag)
    return await run_rows("ai_fix_grammar", model, requests, _text, progress=progress)


async def gen(
    prompts: Sequence[str | None],
    model: Model,
    *,
    max_tokens: int | None = None,
    tag: str | None = None,
    progress: bool | None = None,
) -> Outcome[str]:
    """`ai_gen(prompt)`: the model's answer to the prompt."""
    requests = [
        None if is_null(p) or not str(p).strip() else ChatRequest.from_prompt(str(p), max_tokens=max_tokens, tag=tag)
        for p in prompts
    ]
    return await run_rows("ai_gen", model, requests, _text, progress=progress)


def mask_spans(text: str, spans: Sequence[str]) -> str:
    """Replace every occurrence of each span (longest first) with `[MASKED]`."""
    for span in sorted({s for s in spans if s and s.strip()}, key=len, reverse=True):
        text = re.sub(re.escape(span), MASK, text)
    return text


async def mask(
    texts: Sequence[str | None],
    labels: Sequence[str],
    model: Model,
    *,
    tag: str | None = None,
    progress: bool | None = None,
) -> Outcome[str]:
    """`ai_mask(content, labels)`: the text with every entity of the given kinds replaced by `[MASKED]`.

    The model only lists the entities (as a JSON array, grammar-constrained); the replacement is done
    here, so the rest of the text is returned exactly as it was.
    """
    kinds = [str(label) for label in labels if label is not None and str(label).strip()]
    if not kinds:
        raise InvalidRequestError("ai_mask: labels is empty. Fix: pass e.g. ARRAY['person', 'email', 'phone']")
    # Bounded so a small model cannot ramble until max_tokens: entities are short and few per text.
    schema = {
        "type": "object",
        "properties": {"entities": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": 32}},
        "required": ["entities"],
    }
    system = (
        f"List every piece of the text that is one of: {', '.join(kinds)}. Copy each exactly as it appears. "
        f'Answer with JSON {{"entities": [...]}}. {DATA_RULE}'
    )
    requests = data_requests(texts, system, max_tokens=512, json_schema=schema, schema_name="entities", tag=tag)
    originals = list(texts)
    outcome: Outcome[Any] = await run_rows(
        "ai_mask",
        model,
        requests,
        lambda r: r.json.get("entities", []) if isinstance(r.json, dict) else [],
        progress=progress,
    )
    outcome.values = [
        None if spans is None else mask_spans(str(originals[i]), [str(s) for s in spans])
        for i, spans in enumerate(outcome.values)
    ]
    return outcome
