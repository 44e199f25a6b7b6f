"""The Anthropic provider against recorded Messages API exchanges, replayed by a server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from brickyard._errors import (
    ContextWindowError,
    InvalidRequestError,
    MalformedResponseError,
    MissingKeyError,
    ProviderError,
    RateLimitedError,
    ServerError,
    UpstreamTimeoutError,
)
from brickyard.models._types import ChatRequest
from brickyard.models.anthropic_provider import PROVIDER, AnthropicModel, create
from brickyard.models.provider import ProviderSpec

CASSETTES = Path(__file__).parent / "data" / "anthropic"
KEY = "sk-ant-test-SECRET123"
ENDPOINT = "claude"
MODEL = "claude-haiku-4-5"
ECHO_KEY = "{{request.x-api-key}}"
_NOT_REPLAYED = {"content-length", "transfer-encoding", "connection", "date", "server"}


def load(name: str) -> dict[str, Any]:
    return json.loads((CASSETTES / f"{name}.json").read_text())


class Replay:
    """Serves queued cassette responses (the last one repeats) and records every request received."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.delay_s = 0.0
        self.released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self, name: str) -> dict[str, Any]:
        cassette = load(name)
        self.responses.append(cassette["response"])
        return cassette

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def _render(self, response: dict[str, Any], key: str) -> bytes:
        if "sse" in response:
            text = "".join(f"event: {e['event']}\ndata: {json.dumps(e['data'])}\n\n" for e in response["sse"])
        elif isinstance(response["body"], str):
            text = response["body"]
        else:
            text = json.dumps(response["body"], ensure_ascii=False)
        return text.replace(ECHO_KEY, key).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                replay.requests.append(
                    {"method": "POST", "path": self.path, "headers": headers, "body": json.loads(raw)}
                )
                response = replay.responses[min(len(replay.requests), len(replay.responses)) - 1]
                if replay.delay_s:
                    replay.released.wait(replay.delay_s)
                body = replay._render(response, headers.get("x-api-key", ""))
                try:
                    self.send_response(response["status"])
                    for name, value in response["headers"].items():
                        if name not in _NOT_REPLAYED:
                            self.send_header(name, value)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout tests)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the environment may redirect or decorate the SDK's requests."""
    for name in (
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_CUSTOM_HEADERS",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def replay() -> Iterator[Replay]:
    server = Replay()
    yield server
    server.close()


@pytest_asyncio.fixture
async def model(replay: Replay) -> AsyncIterator[AnthropicModel]:
    built = AnthropicModel(MODEL, api_key=KEY, endpoint=ENDPOINT, base_url=replay.url, timeout_s=2.0)
    yield built
    await built.aclose()


def assert_same_request(replay: Replay, cassette: dict[str, Any]) -> dict[str, Any]:
    """The one request sent matches the recording: path, body, and the auth and version headers."""
    assert len(replay.requests) == 1, "the SDK must not retry (max_retries=0)"
    sent = replay.requests[0]
    recorded = cassette["request"]
    assert sent["path"] == recorded["path"]
    assert sent["body"] == recorded["body"]
    assert sent["headers"]["x-api-key"] == KEY
    assert "authorization" not in sent["headers"]
    for name in ("anthropic-version", "content-type"):
        assert sent["headers"][name] == recorded["headers"][name]
    return sent


def assert_no_key(exc: BaseException) -> None:
    shown = str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
    assert KEY not in shown
    assert "SECRET123" not in shown


def prompt(text: str = "Summarise the attached contract.") -> ChatRequest:
    return ChatRequest.from_prompt(text)


# -- results ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_text_answer(replay: Replay, model: AnthropicModel) -> None:
    cassette = replay.serve("text_answer")
    request = ChatRequest(
        messages=[
            {"role": "system", "content": "You are a terse geography tutor."},
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": "What is the capital of France? One word."},
        ],
        temperature=0.0,
        stop=["\n\n"],
    )
    result = await model.complete(request)
    sent = assert_same_request(replay, cassette)
    assert sent["body"]["system"] == "You are a terse geography tutor.\n\nAnswer in English."
    assert sent["body"]["max_tokens"] == 1024
    assert sent["body"]["stop_sequences"] == ["\n\n"]
    assert result.text == "Paris."
    assert result.model == "claude-haiku-4-5-20251001"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.estimated) == (27, 5, False)
    assert result.finish_reason == "stop"
    assert result.tool_calls is None and result.json is None
    assert result.latency_s > 0


@pytest.mark.asyncio
async def test_json_schema_is_a_forced_tool(replay: Replay, model: AnthropicModel) -> None:
    cassette = replay.serve("json_schema_tool")
    schema = cassette["request"]["body"]["tools"][0]["input_schema"]
    request = ChatRequest.from_prompt(
        "Ticket: 'I was charged twice for my subscription this month.'",
        system="Classify the support ticket.",
        json_schema=schema,
        schema_name="classification",
        max_tokens=200,
    )
    result = await model.complete(request)
    sent = assert_same_request(replay, cassette)
    assert sent["body"]["tool_choice"] == {"type": "tool", "name": "classification"}
    assert sent["body"]["tools"][0]["input_schema"] == schema
    assert result.json == {"label": "billing", "confidence": 0.94}
    assert json.loads(result.text) == result.json
    assert result.finish_reason == "stop"
    assert result.tool_calls is None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (618, 58)


@pytest.mark.asyncio
async def test_tool_call_in_openai_shape(replay: Replay, model: AnthropicModel) -> None:
    cassette = replay.serve("tool_call")
    recorded_tool = cassette["request"]["body"]["tools"][0]
    openai_tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": recorded_tool["input_schema"],
        },
    }
    request = ChatRequest.from_prompt("What's the weather in Paris right now?", tools=[openai_tool], tool_choice="auto")
    result = await model.complete(request)
    sent = assert_same_request(replay, cassette)
    assert sent["body"]["tools"] == [recorded_tool]
    assert sent["body"]["tool_choice"] == {"type": "auto"}
    assert result.text == "I'll look up the current weather in Paris."
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": json.dumps({"location": "Paris, France", "unit": "celsius"}),
            },
        }
    ]


@pytest.mark.asyncio
async def test_tool_conversation_becomes_tool_use_and_tool_result(replay: Replay, model: AnthropicModel) -> None:
    cassette = replay.serve("tool_result_followup")
    schema = cassette["request"]["body"]["tools"][0]["input_schema"]
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": schema,
        },
    }
    call = {
        "id": "toolu_01A09q90qw90lq917835lq9",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "Paris, France", "unit": "celsius"}'},
    }
    request = ChatRequest(
        messages=[
            {"role": "user", "content": "What's the weather in Paris right now?"},
            {
                "role": "assistant",
                "content": "I'll look up the current weather in Paris.",
                "tool_calls": [call],
            },
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": '{"temperature": 18, "conditions": "partly cloudy"}',
            },
        ],
        tools=[tool],
    )
    result = await model.complete(request)
    assert_same_request(replay, cassette)
    assert result.text == "It's 18 °C and partly cloudy in Paris."


@pytest.mark.asyncio
async def test_stream_yields_text_in_order(replay: Replay, model: AnthropicModel) -> None:
    cassette = replay.serve("stream_text")
    pieces = [piece async for piece in model.stream(ChatRequest.from_prompt("Say hello to Ada.", max_tokens=64))]
    sent = assert_same_request(replay, cassette)
    assert sent["body"]["stream"] is True
    assert pieces == ["Hello", ", Ada", "! Nice to meet you."]


@pytest.mark.parametrize(
    ("effort", "budget", "max_tokens"),
    [
        (None, None, 1024),
        ("minimal", None, 1024),
        ("low", 1024, 2048),
        ("medium", 4096, 5120),
        ("high", 16384, 17408),
    ],
)
def test_reasoning_effort_sets_a_thinking_budget(
    replay: Replay, effort: Any, budget: int | None, max_tokens: int
) -> None:
    built = AnthropicModel(MODEL, api_key=KEY, base_url=replay.url)
    params = built._params(ChatRequest.from_prompt("Think.", reasoning_effort=effort, temperature=0.0))
    assert params.get("thinking") == ({"type": "enabled", "budget_tokens": budget} if budget else None)
    assert params["max_tokens"] == max_tokens
    assert ("temperature" in params.get("extra_body", {})) is (budget is None)


@pytest.mark.parametrize(
    ("choice", "mapped"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "lookup"}}, {"type": "tool", "name": "lookup"}),
    ],
)
def test_tool_choice_mapping(replay: Replay, choice: Any, mapped: dict[str, Any]) -> None:
    built = AnthropicModel(MODEL, api_key=KEY, base_url=replay.url)
    tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    params = built._params(ChatRequest.from_prompt("Find it.", tools=[tool], tool_choice=choice))
    assert params["tool_choice"] == mapped
    assert params["tools"] == [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}]


def test_forced_tool_turns_thinking_off(replay: Replay) -> None:
    built = AnthropicModel(MODEL, api_key=KEY, base_url=replay.url)
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    params = built._params(ChatRequest.from_prompt("Pick.", json_schema=schema, reasoning_effort="high"))
    assert "thinking" not in params and params["max_tokens"] == 1024


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rate_limit(replay: Replay, model: AnthropicModel) -> None:
    cassette = replay.serve("rate_limited_429")
    with pytest.raises(RateLimitedError) as caught:
        await model.complete(prompt())
    assert_same_request(replay, cassette)
    assert caught.value.status == 429 and caught.value.retry_after == 17.0
    assert caught.value.endpoint == ENDPOINT and caught.value.retryable
    assert_no_key(caught.value)


@pytest.mark.asyncio
async def test_overloaded(replay: Replay, model: AnthropicModel) -> None:
    replay.serve("overloaded_529")
    with pytest.raises(ServerError) as caught:
        await model.complete(prompt())
    assert len(replay.requests) == 1
    assert caught.value.status == 529 and caught.value.endpoint == ENDPOINT
    assert "Overloaded" in str(caught.value)
    assert_no_key(caught.value)


@pytest.mark.asyncio
async def test_error_event_inside_a_stream(replay: Replay, model: AnthropicModel) -> None:
    replay.serve("stream_overloaded")
    pieces: list[str] = []
    with pytest.raises(ServerError) as caught:
        async for piece in model.stream(ChatRequest.from_prompt("Say hello to Ada.", max_tokens=64)):
            pieces.append(piece)
    assert pieces == ["Hello"]
    assert caught.value.status == 529
    assert_no_key(caught.value)


@pytest.mark.asyncio
async def test_prompt_too_long(replay: Replay, model: AnthropicModel) -> None:
    replay.serve("prompt_too_long_400")
    with pytest.raises(ContextWindowError) as caught:
        await model.complete(prompt())
    assert "prompt is too long" in str(caught.value) and ENDPOINT in str(caught.value)
    assert_no_key(caught.value)


@pytest.mark.asyncio
async def test_invalid_request_names_the_endpoint(replay: Replay, model: AnthropicModel) -> None:
    replay.serve("invalid_request_400")
    with pytest.raises(InvalidRequestError) as caught:
        await model.complete(prompt())
    assert not isinstance(caught.value, ContextWindowError)
    assert str(caught.value).startswith(f"{ENDPOINT} refused the request [400]")
    assert "max_tokens: 200000 > 64000" in str(caught.value)
    assert_no_key(caught.value)


@pytest.mark.asyncio
async def test_refused_key(replay: Replay, model: AnthropicModel) -> None:
    replay.serve("unauthorized_401")
    with pytest.raises(ProviderError) as caught:
        await model.complete(prompt())
    assert type(caught.value) is ProviderError and not caught.value.retryable
    assert caught.value.status == 401 and caught.value.endpoint == ENDPOINT
    assert "api_key_env" in str(caught.value) and "ANTHROPIC_API_KEY" in str(caught.value)
    assert_no_key(caught.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["unauthorized_401", "invalid_request_400", "overloaded_529"])
async def test_key_echoed_by_the_upstream_is_scrubbed(replay: Replay, model: AnthropicModel, name: str) -> None:
    """A proxy that echoes the request's key (and any other sk-ant- key) never leaks it into an error."""
    response = load(name)["response"]
    response["body"]["error"]["message"] += f" (key {ECHO_KEY}, see also sk-ant-api03-Other_Key-123)"
    replay.responses.append(response)
    with pytest.raises(Exception) as caught:
        await model.complete(prompt())
    assert_no_key(caught.value)
    assert "sk-ant-api03-Other_Key-123" not in str(caught.value)
    assert "<scrubbed>" in str(caught.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["malformed_200", "missing_fields_200"])
async def test_malformed_response(replay: Replay, model: AnthropicModel, name: str) -> None:
    replay.serve(name)
    with pytest.raises(MalformedResponseError) as caught:
        await model.complete(prompt())
    assert caught.value.endpoint == ENDPOINT
    assert_no_key(caught.value)


@pytest.mark.asyncio
async def test_timeout(replay: Replay) -> None:
    replay.serve("text_answer")
    replay.delay_s = 2.0
    slow = AnthropicModel(MODEL, api_key=KEY, endpoint=ENDPOINT, base_url=replay.url, timeout_s=0.2)
    try:
        with pytest.raises(UpstreamTimeoutError) as caught:
            await slow.complete(prompt())
    finally:
        await slow.aclose()
    assert caught.value.endpoint == ENDPOINT and caught.value.retryable
    assert_no_key(caught.value)


@pytest.mark.asyncio
async def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = AnthropicModel(MODEL, api_key=KEY, endpoint=ENDPOINT, base_url=f"http://127.0.0.1:{port}", timeout_s=1.0)
    try:
        with pytest.raises(UpstreamTimeoutError) as caught:
            await closed.complete(prompt())
    finally:
        await closed.aclose()
    assert caught.value.endpoint == ENDPOINT
    assert_no_key(caught.value)


@pytest.mark.asyncio
async def test_empty_prompt_is_refused_before_sending(replay: Replay, model: AnthropicModel) -> None:
    with pytest.raises(InvalidRequestError):
        await model.complete(ChatRequest.from_prompt("   "))
    assert replay.requests == []


# -- plugin surface -----------------------------------------------------------------------------------


def test_create_without_a_key() -> None:
    spec = ProviderSpec(provider="anthropic", model=MODEL, endpoint=ENDPOINT, api_key=None)
    with pytest.raises(MissingKeyError) as caught:
        create(spec)
    assert "ANTHROPIC_API_KEY" in str(caught.value)
    assert "export ANTHROPIC_API_KEY=" in str(caught.value) and "api_key_env" in str(caught.value)
    assert ENDPOINT in str(caught.value)


@pytest.mark.asyncio
async def test_create_builds_the_model(replay: Replay) -> None:
    spec = ProviderSpec(provider="anthropic", model=MODEL, endpoint=ENDPOINT, api_key=KEY, base_url=replay.url)
    built = PROVIDER.create(spec)
    try:
        assert isinstance(built, AnthropicModel)
        assert built.name == f"anthropic:{MODEL}"
        assert built.supports_json_schema and built.supports_tools and not built.supports_logprobs
    finally:
        await built.aclose()
    assert PROVIDER.name == "anthropic" and PROVIDER.key_env == "ANTHROPIC_API_KEY"
    assert KEY not in repr(built)


def test_non_object_schema_is_wrapped_and_unwrapped(replay: Replay) -> None:
    built = AnthropicModel(MODEL, api_key=KEY, base_url=replay.url)
    schema = {"type": "array", "items": {"type": "string"}}
    request = ChatRequest.from_prompt("List colours.", json_schema=schema)
    tool = built._params(request)["tools"][0]
    assert tool["input_schema"] == {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    answer = {
        "content": [{"type": "tool_use", "id": "toolu_01", "name": "response", "input": {"value": ["red"]}}],
        "model": "claude-haiku-4-5-20251001",
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    result = built._result(answer, request, 0.1)
    assert result.json == ["red"] and result.text == '["red"]'
