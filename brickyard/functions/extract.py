"""`ai_extract`: named fields pulled out of text, as a struct (or nested JSON from a JSON schema)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from brickyard._errors import InvalidRequestError, MalformedResponseError
from brickyard.functions._rows import DATA_RULE, Demo, Outcome, data_requests, run_rows
from brickyard.models._types import ChatResult
from brickyard.models.base import Model


def labels_schema(labels: Sequence[str]) -> dict[str, Any]:
    """One nullable string field per label, all required (so absent means null, never missing)."""
    names = [str(label) for label in labels if label is not None and str(label).strip()]
    if not names:
        raise InvalidRequestError("ai_extract: labels is empty. Fix: pass e.g. ARRAY['person', 'location']")
    if len(set(names)) != len(names):
        raise InvalidRequestError("ai_extract: labels repeat. Fix: give each label once")
    return {
        "type": "object",
        "properties": {name: {"type": ["string", "null"], "maxLength": 300} for name in names},
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
    names = [str(label) for label in target]
    return labels_schema(names), names


async def extract(
    texts: Sequence[str | None],
    labels: Sequence[str] | Mapping[str, Any] | str,
    model: Model,
    *,
    instructions: str | None = None,
    tag: str | None = None,
    progress: bool | None = None,
    demos: Sequence[Sequence[Demo]] | None = None,
) -> Outcome[dict[str, Any]]:
    """A dict per text: one key per label (None when absent), or an object of the given JSON schema.

    `demos` (one list per text) are few-shot demonstrations whose output is the JSON answer.
    """
    schema, names = _schema_of(labels)
    fields = ", ".join(schema["properties"])
    system = (
        f"Extract these fields from the text: {fields}. Use null for a field the text does not contain; "
        "copy values from the text rather than inventing them. "
        + (f"Instructions: {instructions} " if instructions else "")
        + f"Answer with JSON. {DATA_RULE}"
    )
    requests = data_requests(
        texts, system, max_tokens=1024, json_schema=schema, schema_name="extraction", tag=tag, demos=demos
    )

    def parse(result: ChatResult) -> dict[str, Any]:
        if not isinstance(result.json, dict):
            raise MalformedResponseError("the answer is not a JSON object", retryable=False)
        if names is None:
            return result.json
        values = {}
        for name in names:
            value = result.json.get(name)
            values[name] = None if value in (None, "", "null", "None") else str(value)
        return values

    return await run_rows("ai_extract", model, requests, parse, progress=progress)
