"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp, Databricks) via the official SDK.

GPT-5 family models take `reasoning_effort` and `max_completion_tokens`; models that exist only on
the Responses API (or an endpoint with `options.api = "responses"`) go through `responses.create`.
"""

from __future__ import annotations

import json
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
from brickyard.models._scrub import scrub
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, TokenLogprob, Usage
from brickyard.models.base import Model
from brickyard.models.local import parse_json_answer
from brickyard.models.provider import ProviderInfo, ProviderSpec

_REASONING_PREFIXES = ("gpt-5", "o1", "o3", "o4")
_RESPONSES_ONLY = ("-pro", "codex", "computer-use", "deep-research")
_CHAT_PATH = "/chat/completions"


def is_reasoning_model(model: str) -> bool:
    """GPT-5 and o-series models: `max_completion_tokens`, `reasoning_effort`, no temperature override."""
    return model.split("/")[-1].startswith(_REASONING_PREFIXES)


def needs_responses_api(model: str) -> bool:
    return any(marker in model for marker in _RESPONSES_ONLY)


class OpenAIModel(Model):
    """A chat/embedding model behind the OpenAI API or any server that speaks it."""

    supports_json_schema = True
    supports_logprobs = True
    supports_tools = True
    supports_embeddings = True

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None,
        endpoint: str = "",
        base_url: str | None = None,
        timeout_s: float = 60.0,
        api: str = "auto",
        max_concurrency: int = 16,
        fast_http: bool = True,
    ) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is a core dependency
            raise MissingExtraError("openai", "openai") from exc
        self.model = model
        self.name = f"openai:{model}"
        self.endpoint = endpoint or self.name
        self.max_concurrency = max_concurrency
        self._api_key = api_key
        self._use_responses = api == "responses" or (api == "auto" and needs_responses_api(model))
        # An absolute URL spares the SDK joining it to its base URL on every call.
        self._chat_url = base_url.rstrip("/") + _CHAT_PATH if base_url else _CHAT_PATH
        aiohttp = fast_http and _has_aiohttp()

        def client() -> Any:
            # The SDK's aiohttp client (`openai[aiohttp]`) spends about a third less CPU per request than its
            # default httpx transport, which matters for a gateway in front of fast upstreams.
            return openai.AsyncOpenAI(
                api_key=api_key or "not-needed",
                base_url=base_url,
                timeout=timeout_s,
                max_retries=0,
                http_client=openai.DefaultAioHttpClient(timeout=timeout_s) if aiohttp else None,
            )

        self._clients = PerLoop(client)

    @property
    def _client(self) -> Any:
        """The SDK client of the running event loop."""
        return self._clients.get()

    # -- requests -------------------------------------------------------------------------------
    def chat_params(self, request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
        """Keyword arguments for `chat.completions.create`."""
        params: dict[str, Any] = {"model": self.model, "messages": request.messages}
        reasoning = is_reasoning_model(self.model)
        if request.max_tokens is not None:
            params["max_completion_tokens" if reasoning else "max_tokens"] = request.max_tokens
        if request.temperature is not None and not reasoning:
            params["temperature"] = request.temperature
        if request.reasoning_effort is not None:
            params["reasoning_effort"] = request.reasoning_effort
        if request.stop:
            params["stop"] = request.stop
        if request.seed is not None:
            params["seed"] = request.seed
        if request.json_schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.json_schema, "strict": False},
            }
        if request.logprobs:
            params["logprobs"] = True
            params["top_logprobs"] = request.top_logprobs or 5
        if request.tools:
            params["tools"] = request.tools
            if request.tool_choice is not None:
                params["tool_choice"] = request.tool_choice
        if stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        extra = {k: v for k, v in request.extra.items() if k != "cache"}
        if extra:
            params["extra_body"] = extra
        return params

    def responses_params(self, request: ChatRequest) -> dict[str, Any]:
        """Keyword arguments for `responses.create`."""
        system = "\n\n".join(
            str(m.get("content", "")) for m in request.messages if m["role"] in ("system", "developer")
        )
        params: dict[str, Any] = {
            "model": self.model,
            "input": [m for m in request.messages if m["role"] not in ("system", "developer")],
        }
        if system:
            params["instructions"] = system
        if request.max_tokens is not None:
            params["max_output_tokens"] = request.max_tokens
        if request.reasoning_effort is not None:
            params["reasoning"] = {"effort": request.reasoning_effort}
        if request.json_schema is not None:
            params["text"] = {
                "format": {"type": "json_schema", "name": request.schema_name, "schema": request.json_schema}
            }
        if request.tools:
            params["tools"] = [
                {"type": "function", **t["function"]} if t.get("type") == "function" else t for t in request.tools
            ]
        return params

    # -- calls ----------------------------------------------------------------------------------
    async def _complete(self, request: ChatRequest) -> ChatResult:
        request.check_not_empty()
        started = time.perf_counter()
        try:
            if self._use_responses:
                response = await self._client.responses.create(**self.responses_params(request))
                return self._from_responses(request, response, time.perf_counter() - started)
            # The SDK's documented raw route (`client.post`): same client, headers, timeouts and status errors
            # as `chat.completions.create`, without building pydantic request and response models (about
            # half of the SDK's CPU per call). The JSON is mapped by hand below.
            raw = await self._client.post(self._chat_url, cast_to=bytes, body=self.chat_body(request))
            completion = json.loads(raw)
        except BrickyardError:
            raise
        except Exception as exc:
            raise self._map_error(exc) from None
        return self._from_chat(request, completion, time.perf_counter() - started)

    def chat_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body `chat.completions.create` would send: `chat_params` with `extra_body` merged in."""
        params = self.chat_params(request)
        extra = params.pop("extra_body", None)
        return {**params, **extra} if extra else params

    def _from_chat(self, request: ChatRequest, completion: Any, latency: float) -> ChatResult:
        """Map a `chat.completion` JSON object (as parsed from the wire) to a result."""
        try:
            choice = completion["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            finish_reason = choice.get("finish_reason")
            usage = completion.get("usage")
            usage_value = (
                Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0) if usage else Usage()
            )
            calls = message.get("tool_calls")
            tool_calls = [_tool_call(call) for call in calls] if calls else None
            logprobs = _chat_logprobs(choice.get("logprobs"))
            model = completion.get("model") or self.name
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise MalformedResponseError(f"unexpected response shape: {exc}", endpoint=self.endpoint) from None
        parsed = None
        if request.json_schema is not None:
            parsed = parse_json_answer(text, finish_reason, self.endpoint)
        return ChatResult(
            text=text,
            model=model,
            usage=usage_value,
            latency_s=latency,
            finish_reason=finish_reason,
            json=parsed,
            logprobs=logprobs,
            tool_calls=tool_calls,
        )

    def _from_responses(self, request: ChatRequest, response: Any, latency: float) -> ChatResult:
        text = getattr(response, "output_text", "") or ""
        usage = getattr(response, "usage", None)
        tool_calls = [
            {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
            for item in getattr(response, "output", []) or []
            if getattr(item, "type", "") == "function_call"
        ]
        status = getattr(response, "status", "completed")
        finish = "length" if status == "incomplete" else ("tool_calls" if tool_calls else "stop")
        parsed = parse_json_answer(text, finish, self.endpoint) if request.json_schema is not None else None
        return ChatResult(
            text=text,
            model=getattr(response, "model", None) or self.name,
            usage=Usage(usage.input_tokens, usage.output_tokens) if usage else Usage(),
            latency_s=latency,
            finish_reason=finish,
            json=parsed,
            tool_calls=tool_calls or None,
        )

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        """Text deltas, then the usage the upstream reported. An upstream that ignores `stream: true` and
        answers one JSON completion is read as that completion (never as an empty stream)."""
        request.check_not_empty()
        if self._use_responses:
            result = await self._complete(request)
            yield result.text
            yield result.usage
            return
        try:
            raw = await self._client.chat.completions.with_raw_response.create(**self.chat_params(request, stream=True))
            content_type = raw.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                body = await raw.http_response.aread()
                try:
                    completion = json.loads(body)
                except ValueError:
                    raise MalformedResponseError(
                        f"a stream was asked for and the answer is {content_type or 'untyped'}, neither events nor "
                        "JSON",
                        endpoint=self.endpoint,
                    ) from None
                whole = self._from_chat(request, completion, 0.0)
                if whole.text:
                    yield whole.text
                yield whole.usage
                return
            chunks = raw.parse()
            async for chunk in chunks:
                for choice in chunk.choices or []:
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content
                if chunk.usage is not None:
                    yield Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
        except BrickyardError:
            raise
        except Exception as exc:
            raise self._map_error(exc) from None

    async def _embed(self, texts: list[str]) -> EmbeddingResult:
        started = time.perf_counter()
        try:
            response = await self._client.embeddings.create(model=self.model, input=texts)
        except Exception as exc:
            raise self._map_error(exc) from None
        vectors = [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
        usage = Usage(response.usage.prompt_tokens, 0) if response.usage else Usage()
        return EmbeddingResult(vectors=vectors, model=self.name, usage=usage, latency_s=time.perf_counter() - started)

    async def aclose(self) -> None:
        client = self._clients.pop_current()
        if client is not None:
            await client.close()

    # -- errors ---------------------------------------------------------------------------------
    def _map_error(self, exc: Exception) -> Exception:
        import openai

        message = scrub(str(exc), self._api_key)
        where = self.endpoint
        if isinstance(exc, openai.APITimeoutError) and not _refused(exc):
            return UpstreamTimeoutError(f"timed out: {message}", endpoint=where)
        if isinstance(exc, openai.APITimeoutError):
            return UpstreamTimeoutError(
                f"connection failed: {scrub(str(_refused(exc)), self._api_key)}", endpoint=where
            )
        if isinstance(exc, openai.APIConnectionError):
            return UpstreamTimeoutError(f"connection failed: {message}", endpoint=where)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status == 429:
                return RateLimitedError(message, endpoint=where, status=429, retry_after=_retry_after(exc))
            if status >= 500:
                return ServerError(message, endpoint=where, status=status, retry_after=_retry_after(exc))
            if status in (401, 403):
                return ProviderError(
                    f"the API key was refused ({message}). Fix: set a valid key in the environment variable "
                    f"named by `api_key_env` for endpoint {where}",
                    endpoint=where,
                    status=status,
                )
            if "context_length" in message or "maximum context length" in message:
                return ContextWindowError(f"{where}: {message}. Fix: shorten the input or use a larger model")
            if status in (400, 404, 422):
                return InvalidRequestError(f"{where}: [{status}] {message}")
            return ProviderError(message, endpoint=where, status=status)
        if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError, ValueError)):
            return MalformedResponseError(f"malformed response: {message}", endpoint=where)
        return ProviderError(f"{type(exc).__name__}: {message}", endpoint=where)


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call as the SDK's `model_dump()` gave it: `id`, `function` (`name`, `arguments`) and `type` always set."""
    out = {"id": call.get("id"), "function": call.get("function"), "type": call.get("type"), **call}
    function = out["function"]
    if isinstance(function, dict):
        out["function"] = {"arguments": function.get("arguments"), "name": function.get("name"), **function}
    return out


def _chat_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    """Token log-probabilities from a choice's `logprobs` JSON (None when the upstream gave none)."""
    content = logprobs.get("content") if logprobs else None
    if not content:
        return None
    return [
        TokenLogprob(
            token=item["token"],
            logprob=item["logprob"],
            top={t["token"]: t["logprob"] for t in (item.get("top_logprobs") or [])},
        )
        for item in content
    ]


def create(spec: ProviderSpec) -> Model:
    """Build an OpenAI model; a key is required unless a `base_url` points at a keyless server."""
    if spec.api_key is None and spec.base_url is None:
        raise MissingKeyError(
            f"endpoint {spec.endpoint} needs an OpenAI API key. Fix: export OPENAI_API_KEY=... "
            f"(or name another variable with `api_key_env` under [endpoints.{spec.endpoint}])"
        )
    return OpenAIModel(
        spec.model,
        api_key=spec.api_key,
        endpoint=spec.endpoint,
        base_url=spec.base_url,
        timeout_s=spec.timeout_s,
        api=str(spec.options.get("api", "auto")),
        max_concurrency=int(spec.options.get("max_concurrency", 16)),
        fast_http=_flag(spec.options.get("fast_http", True)),
    )


def _refused(exc: BaseException) -> str | None:
    """The connection error under an SDK timeout, if any (the aiohttp client reports a refused connection
    as a timeout)."""
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, ConnectionError) or type(seen).__name__ == "ClientConnectorError":
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _has_aiohttp() -> bool:
    """True when the SDK's aiohttp client can be built (`pip install 'openai[aiohttp]'`)."""
    try:
        import aiohttp  # noqa: F401
        from openai._vendor.httpx_aiohttp import Httpx2AiohttpClient  # noqa: F401
    except ImportError:
        return False
    return True


def _flag(value: object) -> bool:
    """An endpoint option read as a boolean (`false`, `0`, `no`, `off` are false)."""
    return value if isinstance(value, bool) else str(value).strip().lower() not in ("false", "0", "no", "off")


PROVIDER = ProviderInfo(
    name="openai",
    create=create,
    key_env="OPENAI_API_KEY",
    description="OpenAI API and OpenAI-compatible servers (official openai SDK)",
)
