"""`/v1/chat/completions`, `/v1/embeddings` and `/v1/models`, as the official OpenAI SDK expects them.

Extensions (ignored by clients that do not know them): a top-level `brickyard` object with the serving
`endpoint`, `served_model`, `cost_usd`, `cached` and `tokens_estimated`; for a knowledge-assistant agent the
answer is the message `content` and its sources are `choices[0].message.citations` (a list of
`{number, chunk_id, source_path, title, section, page}`), with `brickyard.known` false when the knowledge
base had nothing relevant. In a stream the citations come in the last chunk's `delta.citations`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from brickyard.models._types import ChatRequest, ChatResult, Usage
from brickyard.server.errors import APIError, to_api_error
from brickyard.server.schemas import DROPPED, PASSED_THROUGH, REJECTED, ChatCompletionBody, EmbeddingsBody
from brickyard.server.state import ServerState, json_response, parse_body
from brickyard.server.streaming import Emit, EventStream, sse
from brickyard.server.targets import Target

MAX_EMBEDDING_INPUTS = 2048


def _unsupported(param: str, why: str) -> APIError:
    return APIError(400, f"`{param}`: {why}", "invalid_request_error", "unsupported_parameter", param)


def to_chat_request(body: ChatCompletionBody, target: Target) -> tuple[ChatRequest, list[str]]:
    """The provider-neutral request, and the parameters dropped (see `brickyard.server.schemas`)."""
    extras = dict(body.model_extra or {})
    for param, why in REJECTED.items():
        if extras.get(param) is not None:
            raise _unsupported(param, why)
    modalities = extras.pop("modalities", None)
    if modalities not in (None, ["text"]):
        raise _unsupported("modalities", "only text output is supported")
    if body.n is not None and body.n > 1:
        raise _unsupported("n", "only one choice per request is supported. Fix: send n requests")
    dropped = [p for p in DROPPED if extras.get(p) is not None]
    if body.user is not None:
        dropped.insert(0, "user")
    if body.n == 1:
        dropped.append("n")
    passed = {
        p: getattr(body, p) for p in ("top_p", "frequency_penalty", "presence_penalty") if getattr(body, p) is not None
    }
    passed.update({k: v for k, v in extras.items() if k not in DROPPED and v is not None})
    model = target.model
    if target.namespaced and passed:
        dropped += sorted(passed)
        passed = {}
    json_schema: dict[str, Any] | None = None
    schema_name = "response"
    fmt = body.response_format
    if fmt is not None and fmt.type != "text":
        if not model.supports_json_schema:
            raise _unsupported("response_format", f"`{target.name}` cannot constrain its answer to JSON")
        if fmt.type == "json_object":
            json_schema = {"type": "object"}
        else:
            if fmt.json_schema is None or fmt.json_schema.schema_ is None:
                raise APIError(400, "`response_format.json_schema.schema` is required", param="response_format")
            json_schema, schema_name = fmt.json_schema.schema_, fmt.json_schema.name
    if body.tools and not model.supports_tools:
        raise _unsupported("tools", f"`{target.name}` cannot call tools")
    if body.logprobs and not model.supports_logprobs:
        raise _unsupported("logprobs", f"`{target.name}` does not report log-probabilities")
    try:
        request = ChatRequest(
            messages=[m.model_dump(exclude_none=True) for m in body.messages],
            temperature=body.temperature,
            max_tokens=body.max_completion_tokens or body.max_tokens,
            stop=[body.stop] if isinstance(body.stop, str) else body.stop,
            seed=body.seed,
            json_schema=json_schema,
            schema_name=schema_name,
            logprobs=bool(body.logprobs),
            top_logprobs=body.top_logprobs,
            tools=body.tools,
            tool_choice=body.tool_choice,
            reasoning_effort=body.reasoning_effort,
            extra={k: v for k, v in passed.items() if k in PASSED_THROUGH or k not in ChatCompletionBody.model_fields},
        )
    except ValidationError as exc:
        raise APIError(400, f"invalid request: {exc.errors()[0]['msg']}", code="invalid_value") from None
    return request, dropped


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def _knowledge_parts(result: ChatResult) -> tuple[str, list[Any], bool]:
    data = result.json if isinstance(result.json, dict) else {}
    return str(data.get("answer", result.text)), list(data.get("citations") or []), bool(data.get("known", True))


def _extension(result: ChatResult) -> dict[str, Any]:
    return {
        "endpoint": result.endpoint,
        "served_model": result.model,
        "cost_usd": result.cost_usd,
        "cached": result.cached,
        "tokens_estimated": result.usage.estimated,
    }


def completion_body(result: ChatResult, target: Target, rid: str, created: int) -> dict[str, Any]:
    """A `chat.completion` object for one result."""
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    extension = _extension(result)
    if target.knowledge:
        message["content"], message["citations"], extension["known"] = _knowledge_parts(result)
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
        message["content"] = result.text or None
    logprobs = None
    if result.logprobs:
        logprobs = {
            "content": [
                {
                    "token": t.token,
                    "logprob": t.logprob,
                    "bytes": None,
                    "top_logprobs": [{"token": k, "logprob": v, "bytes": None} for k, v in t.top.items()],
                }
                for t in result.logprobs
            ]
        }
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": target.name,
        "choices": [
            {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": result.finish_reason or "stop"}
        ],
        "usage": _usage(result.usage),
        "brickyard": extension,
    }


def router(state: ServerState) -> APIRouter:
    """The OpenAI-compatible routes of one server."""
    api = APIRouter(tags=["openai"])
    settings = state.workspace.settings.server
    timeout_s = settings.request_timeout_s

    @api.post(
        "/v1/chat/completions",
        summary="Create a chat completion (OpenAI-compatible; `stream` gives server-sent events)",
        openapi_extra=state.body_schema(ChatCompletionBody),
        response_class=Response,
    )
    async def chat_completions(request: Request) -> Response:
        principal = state.authenticate(request)
        body = parse_body(ChatCompletionBody, await state.read_body(request))
        target = state.targets.resolve(body.model, principal)
        chat, dropped = to_chat_request(body, target)
        caller = principal.caller(body.tag or request.headers.get("x-brickyard-tag"))
        headers = {"X-Brickyard-Dropped-Params": ",".join(quote(p, safe="_-.") for p in dropped)} if dropped else {}
        rid, created = "chatcmpl-" + secrets.token_hex(16), int(time.time())
        whole = target.namespaced or bool(chat.tools) or chat.logprobs
        if not body.stream or whole:
            async with asyncio.timeout(timeout_s):
                result = await target.model.complete(chat, caller=caller)
            if not body.stream:
                return json_response(completion_body(result, target, rid, created), headers)
            return EventStream(_replay(result, target, rid, created, _include_usage(body)), headers)
        # A real stream: the first piece is awaited here, so a failure before any text gets its own status.
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with asyncio.timeout_at(deadline):
            stream = await target.model.open_stream(chat, caller=caller)

        async def produce(emit: Emit) -> None:
            head = _chunk_head(rid, created, target.name)
            first = True
            try:
                pieces = stream.__aiter__()
                while True:
                    async with asyncio.timeout_at(deadline):
                        try:
                            piece = await anext(pieces)
                        except StopAsyncIteration:
                            break
                    delta = {"role": "assistant", "content": piece} if first else {"content": piece}
                    first = False
                    await emit(head + _delta(delta))
            except Exception as exc:  # after the first piece the status is sent: the error becomes an event
                await stream.aclose()
                await emit(sse(to_api_error(exc).body()))
                return
            finally:
                await stream.aclose()
            if first:
                await emit(head + _delta({"role": "assistant", "content": ""}))
            final = stream.final
            await emit(head + _delta({}, (final.finish_reason if final else None) or "stop"))
            if _include_usage(body) and final is not None:
                await emit(sse(_usage_chunk(rid, created, target.name, final.usage)))
            await emit(b"data: [DONE]\n\n")

        return EventStream(produce, headers, on_close=stream.aclose)

    @api.post(
        "/v1/embeddings",
        summary="Create embeddings (OpenAI-compatible)",
        openapi_extra=state.body_schema(EmbeddingsBody),
        response_class=Response,
    )
    async def embeddings(request: Request) -> Response:
        principal = state.authenticate(request)
        body = parse_body(EmbeddingsBody, await state.read_body(request))
        target = state.targets.resolve(body.model, principal)
        if target.namespaced:
            raise APIError(
                400, f"`{body.model}` is an agent; agents do not embed. Fix: name an embedding endpoint", param="model"
            )
        if body.dimensions is not None:
            raise _unsupported("dimensions", "the endpoint returns its native size; leave `dimensions` out")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > MAX_EMBEDDING_INPUTS:
            raise APIError(400, f"`input` must hold 1 to {MAX_EMBEDDING_INPUTS} texts", param="input")
        if any(not t.strip() for t in texts):
            raise APIError(400, "`input` must not contain empty texts", param="input")
        caller = principal.caller(request.headers.get("x-brickyard-tag"))
        async with asyncio.timeout(timeout_s):
            result = await target.model.embed(texts, caller=caller)
        usage = result.usage
        as_base64 = body.encoding_format == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() if as_base64 else v,
            }
            for i, v in enumerate(result.vectors)
        ]
        out = {
            "object": "list",
            "data": data,
            "model": target.name,
            "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
        }
        return json_response(out)

    @api.get("/v1/models", summary="The endpoints, aliases and agents this key may use")
    async def list_models(request: Request) -> Response:
        principal = state.authenticate(request)
        data = [
            _model_entry(n, kind)
            for n, kind in state.targets.names()
            if principal.allows(n, state.targets.canonical(n))
        ]
        return json_response({"object": "list", "data": data})

    @api.get("/v1/models/{model:path}", summary="One endpoint, alias or agent")
    async def get_model(model: str, request: Request) -> Response:
        principal = state.authenticate(request)
        for name, kind in state.targets.names():
            if name == model and principal.allows(name, state.targets.canonical(name)):
                return json_response(_model_entry(name, kind))
        raise APIError(
            404, f"the model `{model}` does not exist or this key may not use it", code="model_not_found", param="model"
        )

    return api


def _model_entry(name: str, kind: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "brickyard", "brickyard_kind": kind}


def _include_usage(body: ChatCompletionBody) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _chunk_head(rid: str, created: int, model: str) -> bytes:
    return (
        f'data: {{"id":"{rid}","object":"chat.completion.chunk","created":{created},"model":{json.dumps(model)},'
    ).encode()


def _delta(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return b'"choices":[' + json.dumps(choice, ensure_ascii=False, separators=(",", ":")).encode() + b"]}\n\n"


def _usage_chunk(rid: str, created: int, model: str, usage: Usage) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": _usage(usage),
    }


def _replay(result: ChatResult, target: Target, rid: str, created: int, include_usage: bool) -> Any:
    """Stream a finished result (agents, tool calls, log-probabilities) as chunks."""

    async def produce(emit: Emit) -> None:
        head = _chunk_head(rid, created, target.name)
        body = completion_body(result, target, rid, created)
        message = body["choices"][0]["message"]
        await emit(head + _delta({"role": "assistant", "content": message.get("content") or ""}))
        if message.get("tool_calls"):
            calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
            await emit(head + _delta({"tool_calls": calls}))
        last: dict[str, Any] = {"citations": message["citations"]} if "citations" in message else {}
        await emit(head + _delta(last, body["choices"][0]["finish_reason"]))
        if include_usage:
            await emit(sse(_usage_chunk(rid, created, target.name, result.usage)))
        await emit(b"data: [DONE]\n\n")

    return produce
