"""`ai_query`: any prompt to any endpoint, with model parameters and structured output."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from brickyard._errors import InvalidRequestError
from brickyard.functions._rows import Outcome, is_null, run_rows
from brickyard.functions.schema import conformance_error, parse_response_format
from brickyard.models._types import ChatRequest, ChatResult
from brickyard.models.base import Model

MODEL_PARAMETERS = {"max_tokens", "temperature", "top_p", "stop", "seed", "reasoning_effort"}


def model_options(parameters: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """`modelParameters` (a struct/map or JSON text) as `ChatRequest` fields; unknown keys are an error."""
    if parameters is None:
        return {}
    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters) if parameters.strip() else {}
        except json.JSONDecodeError:
            raise InvalidRequestError("ai_query: modelParameters is not a struct, map or JSON object") from None
    if not isinstance(parameters, Mapping):
        raise InvalidRequestError("ai_query: modelParameters must be a struct or map, e.g. named_struct(...)")
    options: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in parameters.items():
        if value is None:
            continue
        if key not in MODEL_PARAMETERS:
            raise InvalidRequestError(
                f"ai_query: unknown model parameter `{key}`. Fix: use some of {sorted(MODEL_PARAMETERS)}"
            )
        if key == "top_p":
            extra["top_p"] = float(value)
        elif key == "stop":
            options["stop"] = [value] if isinstance(value, str) else list(value)
        elif key in ("max_tokens", "seed"):
            options[key] = int(value)
        elif key == "temperature":
            options[key] = float(value)
        else:
            options[key] = value
    if extra:
        options["extra"] = extra
    return options


async def query(
    prompts: Sequence[str | None],
    model: Model,
    *,
    model_parameters: Mapping[str, Any] | str | None = None,
    response_format: str | Mapping[str, Any] | None = None,
    tag: str | None = None,
    progress: bool | None = None,
) -> Outcome[str]:
    """The answer text per prompt; with `response_format`, JSON text of that schema."""
    options = model_options(model_parameters)
    schema = parse_response_format(dict(response_format) if isinstance(response_format, Mapping) else response_format)
    requests = [
        None
        if is_null(p) or not str(p).strip()
        else ChatRequest.from_prompt(str(p), json_schema=schema, tag=tag, **options)
        for p in prompts
    ]

    def parse(result: ChatResult) -> str:
        if schema is not None:
            problem = conformance_error(schema, result.json)
            if problem:  # that row's error (an out-of-range INT, say), never a failed cast of the whole query
                raise ValueError(problem)
            return json.dumps(result.json, ensure_ascii=False)
        return result.text

    return await run_rows("ai_query", model, requests, parse, progress=progress)
