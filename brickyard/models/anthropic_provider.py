"""Anthropic Messages API through the official `anthropic` SDK.

OpenAI-shaped requests (system messages, function tools, `tool_choice`) are mapped to the Messages API;
answers come back in the provider-neutral `ChatResult`. SDK exceptions become brickyard's exception tree,
with the API key scrubbed from every message.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from brickyard._errors import (
    BrickyardError,
    ContextWindowError,
    InvalidRequestError,
    MalformedResponseError,
    MissingExtraError,
    MissingKeyError,
    ProviderError,
    RateLimitedError,
    ServerError,
    UpstreamTimeoutError,
)
from brickyard.models._loop import PerLoop
from brickyard.models._types import ChatRequest, ChatResult, Message, Usage
from brickyard.models.base import Model
from brickyard.models.provider import ProviderInfo, ProviderSpec

KEY_ENV = "ANTHROPIC_API_KEY"
API_VERSION = "2023-06-01"
"""The documented `anthropic-version`; pinned because SDK 2.x sends its own newer default."""
DEFAULT_MAX_TOKENS = 1024
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}
SCHEMA_TOOL_DESCRIPTION = "Give the answer as this tool's input; it must match the input schema exactly."

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]+")
_CONTEXT_HINTS = ("prompt is too long", "context")
_WRAPPED = "value"


def _sdk() -> Any:
    try:
        import anthropic
    except ImportError as exc:
        raise MissingExtraError("anthropic", "anthropic") from exc
    return anthropic


def _missing_key(endpoint: str) -> MissingKeyError:
    return MissingKeyError(
        f"endpoint {endpoint} needs an Anthropic API key and none is set. "
        f"Fix: export {KEY_ENV}=... or set `api_key_env` for endpoint {endpoint} in brickyard.toml"
    )


class AnthropicModel(Model):
    """A Claude model over the Messages API. The SDK does no retries; the retry wrapper does."""

    supports_json_schema = True
    supports_tools = True
    supports_logprobs = False

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        endpoint: str = "",
        base_url: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.model = model
        self.name = f"anthropic:{model}"
        self.endpoint = endpoint or self.name
        if not api_key:
            raise _missing_key(self.endpoint)
        self._key = api_key
        self.timeout_s = timeout_s
        sdk = _sdk()
        # SDK 2.x sends an API key as `Authorization: Bearer`; the Messages API documents `x-api-key`.
        headers = {"x-api-key": api_key, "Authorization": sdk.Omit(), "anthropic-version": API_VERSION}
        self._clients = PerLoop(
            lambda: sdk.AsyncAnthropic(
                api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0, default_headers=headers
            )
        )

    @property
    def _client(self) -> Any:
        """The SDK client of the running event loop."""
        return self._clients.get()

    async def _complete(self, request: ChatRequest) -> ChatResult:
        request.check_not_empty()
        params = self._params(request)
        started = time.perf_counter()
        try:
            raw = await self._client.messages.with_raw_response.create(**params)
            body = await raw.read()
        except Exception as exc:
            mapped = self._error(exc)
            if mapped is None:
                raise
            raise mapped from _cause(exc)
        latency = time.perf_counter() - started
        try:
            data = json.loads(body)
        except ValueError:
            raise MalformedResponseError(
                f"the response body is not JSON: {self._scrub(_preview(body))}", endpoint=self.endpoint
            ) from None
        return self._result(data, request, latency)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        """Yield text deltas, then the usage; a JSON-schema request is answered whole (its JSON is tool input)."""
        if request.json_schema is not None:
            result = await self._complete(request)
            yield result.text
            yield result.usage
            return
        request.check_not_empty()
        params = self._params(request)
        stopped = False
        events = None
        input_tokens = output_tokens = None
        try:
            events = await self._client.messages.create(stream=True, **params)
            async for event in events:
                kind = getattr(event, "type", None)
                if kind == "message_start":
                    usage = getattr(getattr(event, "message", None), "usage", None)
                    input_tokens = getattr(usage, "input_tokens", None)
                elif kind == "message_delta":
                    output_tokens = getattr(getattr(event, "usage", None), "output_tokens", output_tokens)
                elif kind == "content_block_delta":
                    delta = getattr(event, "delta", None)
                    text = getattr(delta, "text", None)
                    if getattr(delta, "type", None) == "text_delta" and text:
                        yield text
                elif kind == "message_stop":
                    stopped = True
        except Exception as exc:
            mapped = self._error(exc)
            if mapped is None:
                raise
            raise mapped from _cause(exc)
        finally:
            if events is not None:
                await events.close()
        if not stopped:
            raise MalformedResponseError("the stream ended before `message_stop`", endpoint=self.endpoint)
        if isinstance(input_tokens, int) and isinstance(output_tokens, int):
            yield Usage(input_tokens, output_tokens)

    async def aclose(self) -> None:
        client = self._clients.pop_current()
        if client is not None:
            await client.close()

    # -- request --------------------------------------------------------------------------------------

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        system, messages = _to_messages(request.messages)
        params: dict[str, Any] = {"model": self.model, "messages": messages}
        if system:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        tools = [_to_tool(tool) for tool in request.tools or []]
        choice = _to_tool_choice(request.tool_choice) if tools else None
        if request.json_schema is not None:
            tools.append(
                {
                    "name": request.schema_name,
                    "description": SCHEMA_TOOL_DESCRIPTION,
                    "input_schema": _object_schema(request.json_schema),
                }
            )
            choice = {"type": "tool", "name": request.schema_name}
        if tools:
            params["tools"] = tools
        if choice is not None:
            params["tool_choice"] = choice
        answer_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
        budget = THINKING_BUDGETS.get(request.reasoning_effort or "")
        forced = choice is not None and choice["type"] in ("any", "tool")
        # SDK 2.x's `messages.create` has no `temperature` argument; the API takes it in the body.
        body: dict[str, Any] = {}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if budget and not forced:
            # Thinking tokens count toward max_tokens, and the API allows no temperature but 1 with thinking.
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
            body.pop("temperature", None)
            answer_tokens += budget
        params["max_tokens"] = answer_tokens
        body.update({k: v for k, v in request.extra.items() if k != "cache"})  # `cache` is ours, not the API's
        if body:
            params["extra_body"] = body
        return params

    # -- response -------------------------------------------------------------------------------------

    def _result(self, data: Any, request: ChatRequest, latency: float) -> ChatResult:
        fields = data if isinstance(data, dict) else {}
        content, usage, model = fields.get("content"), fields.get("usage"), fields.get("model")
        if not (isinstance(content, list) and isinstance(usage, dict) and isinstance(model, str)):
            expected = {"content": (content, list), "usage": (usage, dict), "model": (model, str)}
            missing = ", ".join(f"`{name}`" for name, (value, kind) in expected.items() if not isinstance(value, kind))
            raise MalformedResponseError(
                f"the response lacks {missing}: {self._scrub(_preview(data))}", endpoint=self.endpoint
            )
        inp, out = usage.get("input_tokens"), usage.get("output_tokens")
        if not isinstance(inp, int) or not isinstance(out, int):
            raise MalformedResponseError("the response usage lacks token counts", endpoint=self.endpoint)
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        answer: Any = None
        answered = False
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(str(block.get("text", "")))
            elif kind == "tool_use":
                if request.json_schema is not None and block.get("name") == request.schema_name:
                    answer, answered = _unwrap(request.json_schema, block.get("input")), True
                else:
                    calls.append(_to_tool_call(block))
        stop_reason = data.get("stop_reason")
        finish = _FINISH_REASONS.get(stop_reason, stop_reason) if isinstance(stop_reason, str) else None
        text = "".join(texts)
        if request.json_schema is not None:
            if not answered:
                raise MalformedResponseError(
                    f"the model did not call the forced tool `{request.schema_name}` (stop_reason {stop_reason!r})",
                    endpoint=self.endpoint,
                )
            text = json.dumps(answer, ensure_ascii=False)
            if finish == "tool_calls" and not calls:
                finish = "stop"
        return ChatResult(
            text=text,
            model=model,
            usage=Usage(inp, out, estimated=False),
            latency_s=latency,
            finish_reason=finish,
            json=answer,
            tool_calls=calls or None,
        )

    # -- errors ---------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "<scrubbed>")
        return _KEY_PATTERN.sub("<scrubbed>", text)

    def _error(self, exc: Exception) -> BrickyardError | None:
        """The brickyard error for an SDK (or transport) exception; None for anything else."""
        if isinstance(exc, BrickyardError):
            return None
        sdk = _sdk()
        where = self.endpoint
        if isinstance(exc, sdk.APITimeoutError):
            return UpstreamTimeoutError(f"no answer within {self.timeout_s:g} s", endpoint=where)
        if isinstance(exc, sdk.APIConnectionError):
            return UpstreamTimeoutError(f"could not reach the API: {self._scrub(str(exc))}", endpoint=where)
        if isinstance(exc, sdk.APIStatusError):
            return self._status_error(exc)
        if isinstance(exc, (json.JSONDecodeError, sdk.APIResponseValidationError)):
            return MalformedResponseError(f"the response could not be read ({type(exc).__name__})", endpoint=where)
        if _is_transport_error(exc):
            return UpstreamTimeoutError(
                f"the connection failed: {type(exc).__name__}: {self._scrub(str(exc))}", endpoint=where
            )
        return None

    def _status_error(self, exc: Any) -> BrickyardError:
        where = self.endpoint
        error_type = _error_type(exc)
        status: int | None = exc.status_code
        if status is None or status < 400:  # an `error` event inside a 200 stream
            status = _STATUS_BY_ERROR_TYPE.get(str(error_type))
        message = self._scrub(str(getattr(exc, "api_message", None) or exc.message))
        request_id = getattr(exc, "request_id", None)
        detail = f"{message} (request-id {request_id})" if request_id else message
        retry_after = _retry_after(exc.response.headers)
        if status == 429:
            return RateLimitedError(detail, endpoint=where, status=429, retry_after=retry_after)
        if status in (401, 403):
            return ProviderError(
                f"the API key in the `api_key_env` setting of endpoint {where} was refused: {detail}. "
                f"Fix: set a valid {KEY_ENV}",
                endpoint=where,
                status=status,
            )
        if status == 408:
            return UpstreamTimeoutError(detail, endpoint=where, status=status, retry_after=retry_after)
        if status is not None and status >= 500:
            return ServerError(detail, endpoint=where, status=status, retry_after=retry_after)
        if status in (400, 404, 413, 422):
            if any(hint in message.lower() for hint in _CONTEXT_HINTS):
                return ContextWindowError(
                    f"{where}: the prompt does not fit the context window: {detail}. "
                    "Fix: shorten the prompt or lower max_tokens"
                )
            return InvalidRequestError(f"{where} refused the request [{status}]: {detail}")
        return ProviderError(detail, endpoint=where, status=status, retry_after=retry_after)


# -- mapping helpers ----------------------------------------------------------------------------------


def _to_messages(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """System text, and the turns in Anthropic's shape (tool results become user turns)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content")
        if role in ("system", "developer"):
            system.append(_plain_text(content))
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": str(message.get("tool_call_id", "")),
                "content": _plain_text(content),
            }
            _append(turns, "user", [block])
        elif role == "assistant":
            blocks = _to_blocks(content) if content else []
            calls = message.get("tool_calls") or []
            blocks.extend(_to_tool_use(call) for call in calls)
            _append(turns, "assistant", content if isinstance(content, str) and not calls else blocks)
        else:
            _append(turns, "user", content if isinstance(content, str) else _to_blocks(content))
    return "\n\n".join(part for part in system if part), turns


def _to_tool_use(call: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI tool call of an earlier assistant turn as a `tool_use` block."""
    function = call.get("function", {})
    arguments = function.get("arguments") or "{}"
    try:
        tool_input = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        raise InvalidRequestError(
            f"the arguments of tool call {call.get('id')!r} are not JSON. Fix: pass a JSON object string"
        ) from None
    return {
        "type": "tool_use",
        "id": call.get("id", ""),
        "name": function.get("name", ""),
        "input": tool_input,
    }


def _append(turns: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Add a turn, merging it into the previous one when the role repeats."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] = _to_blocks(turns[-1]["content"]) + _to_blocks(content)
    else:
        turns.append({"role": role, "content": content})


def _to_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            blocks.append(_to_image(part))
        elif isinstance(part, dict):
            blocks.append(part)
        else:
            blocks.append({"type": "text", "text": str(part)})
    return blocks


def _to_image(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = str(image.get("url", "") if isinstance(image, dict) else image)
    match = re.match(r"data:([^;]+);base64,(.*)", url, re.DOTALL)
    if match:
        return {"type": "image", "source": {"type": "base64", "media_type": match[1], "data": match[2]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _plain_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))


def _to_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool as an Anthropic tool; a tool already in Anthropic's shape passes through."""
    if tool.get("type") != "function":
        return tool
    function = tool.get("function", {})
    if not function.get("name"):
        raise InvalidRequestError("a function tool has no `function.name`. Fix: name every tool")
    converted: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def _to_tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return {"type": "tool", "name": choice.get("function", {}).get("name", "")}
        return choice
    named = {"auto": "auto", "required": "any", "any": "any", "none": "none"}
    if choice not in named:
        raise InvalidRequestError(
            f"tool_choice {choice!r} is not one of auto, required, none or a function. Fix: use one of those"
        )
    return {"type": named[choice]}


def _to_tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id", ""),
        "type": "function",
        "function": {
            "name": block.get("name", ""),
            "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False),
        },
    }


def _object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Tool input must be an object; other schemas are wrapped in a one-property object."""
    if schema.get("type") == "object":
        return schema
    return {"type": "object", "properties": {_WRAPPED: schema}, "required": [_WRAPPED]}


def _unwrap(schema: dict[str, Any], value: Any) -> Any:
    if schema.get("type") != "object" and isinstance(value, dict):
        return value.get(_WRAPPED)
    return value


def _retry_after(headers: Any) -> float | None:
    """Seconds from a `retry-after` header (delta seconds or an HTTP date)."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(float(email.utils.mktime_tz(parsed) - time.time()), 0.0)


def _is_transport_error(exc: Exception) -> bool:
    """An httpx2 transport failure surfacing unwrapped (the SDK does not wrap errors while streaming)."""
    try:
        import httpx2
    except ImportError:  # pragma: no cover - a dependency of the SDK
        return False
    return isinstance(exc, httpx2.TransportError)


def _error_type(exc: Any) -> str | None:
    """`error.type` of an error body, e.g. `overloaded_error`."""
    found = getattr(exc, "type", None)
    if isinstance(found, str):
        return found
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


def _cause(exc: Exception) -> Exception | None:
    """Chain connection failures for debugging; drop SDK status errors, whose text may echo the key."""
    sdk = _sdk()
    return exc if isinstance(exc, sdk.APIConnectionError) else None


def _preview(value: Any, limit: int = 200) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text[:limit] + ("..." if len(text) > limit else "")


def create(spec: ProviderSpec) -> Model:
    """Build an `AnthropicModel` from an endpoint spec."""
    if not spec.api_key:
        raise _missing_key(spec.endpoint)
    return AnthropicModel(
        spec.model,
        api_key=spec.api_key,
        endpoint=spec.endpoint,
        base_url=spec.base_url,
        timeout_s=spec.timeout_s,
    )


PROVIDER = ProviderInfo(
    name="anthropic",
    create=create,
    key_env=KEY_ENV,
    description="Anthropic Messages API (official anthropic SDK)",
)
