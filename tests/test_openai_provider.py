"""The `openai` provider over real HTTP against the fault-injecting `FakeUpstream` on 127.0.0.1.

Two layers: `OpenAIModel` alone (request shapes, result mapping, error mapping, key scrubbing), then
the full gateway stack from a workspace config (batch with per-row errors, retries, usage ledger,
fallbacks, rate limits).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

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
from brickyard.batch import run_batch
from brickyard.models._types import ChatRequest
from brickyard.models.openai_provider import PROVIDER, OpenAIModel, create
from brickyard.models.provider import ProviderSpec
from brickyard.testing.upstream import FakeUpstream
from brickyard.workspace import Workspace

KEY = "sk-test-SECRET-abcdef123456"
KEY_ENV = "TEST_UP_KEY"
SK_FRAGMENT = re.compile(r"sk-[A-Za-z0-9]")


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
async def model(up: FakeUpstream) -> AsyncIterator[OpenAIModel]:
    m = create(ProviderSpec(provider="openai", model="fake-gpt", endpoint="up", api_key=KEY, base_url=up.base_url))
    assert isinstance(m, OpenAIModel)
    yield m
    await m.aclose()


def ask(text: str, **options: Any) -> ChatRequest:
    return ChatRequest.from_prompt(text, **options)


def assert_no_key(text: str) -> None:
    assert KEY not in text
    assert "SECRET" not in text
    assert not SK_FRAGMENT.search(text), text


# ------------------------------------------------------------------ OpenAIModel alone


async def test_completion_maps_text_usage_finish_and_model(up: FakeUpstream, model: OpenAIModel) -> None:
    result = await model.complete(ask("hello there", system="be brief"))
    assert result.text == "echo: hello there"
    assert result.model == "fake-gpt"
    assert result.finish_reason == "stop"
    assert result.usage.input_tokens == len("be brief" + "hello there") // 4
    assert result.usage.output_tokens == len("echo: hello there") // 4
    assert not result.usage.estimated
    assert result.latency_s > 0
    assert result.json is None and result.logprobs is None and result.tool_calls is None
    body = up.received_bodies[-1]
    assert body["model"] == "fake-gpt"
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert "response_format" not in body and "stream" not in body
    assert up.received_headers[-1]["authorization"] == f"Bearer {KEY}"


async def test_plain_model_sends_max_tokens_temperature_stop_seed_and_extra(
    up: FakeUpstream, model: OpenAIModel
) -> None:
    request = ask("hi", max_tokens=20, temperature=0.3, stop=["\n"], seed=7, extra={"top_k": 5, "cache": False})
    await model.complete(request)
    body = up.received_bodies[-1]
    assert body["max_tokens"] == 20 and "max_completion_tokens" not in body
    assert body["temperature"] == 0.3
    assert body["stop"] == ["\n"] and body["seed"] == 7
    assert body["top_k"] == 5, "extra fields travel in the body"
    assert "cache" not in body, "the gateway's own `cache` switch is not sent upstream"


async def test_stream_yields_pieces_that_join_to_the_answer(up: FakeUpstream, model: OpenAIModel) -> None:
    pieces = [piece async for piece in model.stream(ask("one two three four"))]
    assert len(pieces) >= 2
    assert "".join(pieces) == "echo: one two three four"
    body = up.received_bodies[-1]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_stream_error_is_mapped(model: OpenAIModel) -> None:
    with pytest.raises(ServerError) as info:
        _ = [piece async for piece in model.stream(ask("boom [fail:503]"))]
    assert info.value.status == 503
    assert info.value.endpoint == "up"


async def test_json_schema_sends_response_format_and_parses(up: FakeUpstream, model: OpenAIModel) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    result = await model.complete(ask("extract this", json_schema=schema, schema_name="extraction"))
    assert result.json == {"echo": "extract this"}
    assert up.received_bodies[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "extraction", "schema": schema, "strict": False},
    }


async def test_logprobs_params_are_sent(up: FakeUpstream, model: OpenAIModel) -> None:
    await model.complete(ask("a", logprobs=True, top_logprobs=3))
    assert up.received_bodies[-1]["logprobs"] is True
    assert up.received_bodies[-1]["top_logprobs"] == 3
    await model.complete(ask("b", logprobs=True))
    assert up.received_bodies[-1]["top_logprobs"] == 5, "a default number of alternatives is asked for"
    await model.complete(ask("c"))
    assert "logprobs" not in up.received_bodies[-1]


async def test_logprobs_in_the_answer_are_mapped(up: FakeUpstream, model: OpenAIModel) -> None:
    def with_logprobs(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        tokens = [("yes", -0.1, {"yes": -0.1, "no": -2.4}), ("!", -0.5, {"!": -0.5})]
        content = [
            {
                "token": t,
                "logprob": lp,
                "bytes": None,
                "top_logprobs": [{"token": k, "logprob": v, "bytes": None} for k, v in top.items()],
            }
            for t, lp, top in tokens
        ]
        answer = {
            "id": "chatcmpl-lp",
            "object": "chat.completion",
            "created": 1,
            "model": "fake-gpt",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "yes!"},
                    "logprobs": {"content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
        return 200, {}, answer

    up.scenario = with_logprobs
    result = await model.complete(ask("yes or no?", logprobs=True, top_logprobs=2))
    assert result.text == "yes!"
    assert result.logprobs is not None
    assert [(t.token, t.logprob) for t in result.logprobs] == [("yes", -0.1), ("!", -0.5)]
    assert result.logprobs[0].top == {"yes": -0.1, "no": -2.4}


async def test_tool_calls_are_mapped(up: FakeUpstream, model: OpenAIModel) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}

    def tool_answer(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}
        usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "fake-gpt", "usage": usage}
        return 200, {}, answer | {"choices": [choice]}

    up.scenario = tool_answer
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    result = await model.complete(ask("find x", tools=tools, tool_choice="auto"))
    assert result.text == ""
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls is not None
    assert result.tool_calls[0]["id"] == "call_1"
    assert result.tool_calls[0]["function"] == call["function"]
    assert up.received_bodies[-1]["tools"] == tools
    assert up.received_bodies[-1]["tool_choice"] == "auto"


@pytest.mark.parametrize("name", ["gpt-5-mini", "gpt-5", "o4-mini"])
async def test_reasoning_models_send_max_completion_tokens_and_effort_without_temperature(
    up: FakeUpstream, name: str
) -> None:
    m = OpenAIModel(name, api_key=KEY, endpoint="r", base_url=up.base_url)
    try:
        result = await m.complete(ask("think", max_tokens=50, temperature=0.7, reasoning_effort="minimal"))
    finally:
        await m.aclose()
    assert result.text == "echo: think"
    body = up.received_bodies[-1]
    assert body["model"] == name
    assert body["max_completion_tokens"] == 50
    assert "max_tokens" not in body
    assert "temperature" not in body
    assert body["reasoning_effort"] == "minimal"


async def test_embeddings_come_back_in_input_order(up: FakeUpstream, model: OpenAIModel) -> None:
    texts = ["alpha", "beta", "gamma", "delta"]
    result = await model.embed(texts)
    assert len(result.vectors) == 4
    assert all(len(v) == 8 for v in result.vectors)
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-6 for v in result.vectors)
    assert result.usage.input_tokens == len("".join(texts)) // 4
    single = {t: (await model.embed([t])).vectors[0] for t in texts}
    assert result.vectors == [single[t] for t in texts]
    assert up.received_bodies[0]["input"] == texts


async def test_embeddings_answered_out_of_order_are_sorted_by_index(up: FakeUpstream, model: OpenAIModel) -> None:
    def reversed_answer(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        data = [{"object": "embedding", "index": i, "embedding": [float(i), 0.0]} for i in range(len(body["input"]))]
        usage = {"prompt_tokens": 3, "total_tokens": 3}
        return 200, {}, {"object": "list", "data": data[::-1], "model": "fake-gpt", "usage": usage}

    up.scenario = reversed_answer
    result = await model.embed(["a", "b", "c"])
    assert result.vectors == [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]


async def test_embedding_error_is_mapped(model: OpenAIModel) -> None:
    with pytest.raises(ServerError) as info:
        await model.embed(["fine", "broken [fail:502]"])
    assert info.value.status == 502


# -- error mapping


async def test_server_error(model: OpenAIModel) -> None:
    with pytest.raises(ServerError) as info:
        await model.complete(ask("x [fail:500]"))
    assert info.value.status == 500
    assert info.value.endpoint == "up"
    assert info.value.retryable
    assert "up: [500]" in str(info.value)


async def test_rate_limited_carries_retry_after(model: OpenAIModel) -> None:
    with pytest.raises(RateLimitedError) as info:
        await model.complete(ask("x [429:1]"))
    assert info.value.status == 429
    assert info.value.retry_after == pytest.approx(0.2, abs=0.01)
    again = await model.complete(ask("x [429:1]"))
    assert again.text == "echo: x [429:1]"


async def test_bad_request_is_invalid_request(model: OpenAIModel) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await model.complete(ask("x [fail:400]"))
    assert not isinstance(info.value, ProviderError)
    assert not isinstance(info.value, ContextWindowError)
    assert "[400]" in str(info.value) and "up" in str(info.value)


async def test_context_window(model: OpenAIModel) -> None:
    with pytest.raises(ContextWindowError) as info:
        await model.complete(ask("very long [ctx]"))
    assert "Fix:" in str(info.value)


async def test_bad_json_body_is_malformed(model: OpenAIModel) -> None:
    with pytest.raises(MalformedResponseError) as info:
        await model.complete(ask("x [badjson]"))
    assert info.value.endpoint == "up"
    assert info.value.retryable  # a malformed 200 is a passing fault: retried within max_retries


async def test_non_json_answer_to_a_schema_request_is_malformed(up: FakeUpstream, model: OpenAIModel) -> None:
    def prose(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        message = {"role": "assistant", "content": "Sure! The answer is"}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "length"}
        return 200, {}, {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice]}

    up.scenario = prose
    with pytest.raises(MalformedResponseError, match="max_tokens"):
        await model.complete(ask("x", json_schema={"type": "object"}))


async def test_slow_upstream_times_out(up: FakeUpstream) -> None:
    spec = ProviderSpec(
        provider="openai", model="fake-gpt", endpoint="up", api_key=KEY, base_url=up.base_url, timeout_s=0.5
    )
    m = create(spec)
    started = time.perf_counter()
    try:
        with pytest.raises(UpstreamTimeoutError) as info:
            await m.complete(ask("x [slow:2]"))
    finally:
        await m.aclose()
    assert time.perf_counter() - started < 1.9, "the client gave up at timeout_s, not when the answer came"
    assert info.value.retryable
    assert info.value.endpoint == "up"


async def test_connection_refused_is_retryable_timeout() -> None:
    with FakeUpstream() as gone:
        url = gone.base_url
    m = OpenAIModel("fake-gpt", api_key=KEY, endpoint="gone", base_url=url, timeout_s=2)
    try:
        with pytest.raises(UpstreamTimeoutError, match="connection failed"):
            await m.complete(ask("anyone?"))
    finally:
        await m.aclose()


async def test_refused_key_error_never_contains_the_key(up: FakeUpstream, model: OpenAIModel) -> None:
    with pytest.raises(ProviderError) as info:
        await model.complete(ask("x [fail:401]"))
    error = info.value
    assert error.status == 401
    assert not error.retryable
    assert "api_key_env" in str(error), "the message says how to fix it"
    assert up.received_headers[-1]["authorization"] == f"Bearer {KEY}", "the key was really sent"
    for text in (str(error), repr(error), *map(str, error.args)):
        assert_no_key(text)
    assert error.__cause__ is None and error.__suppress_context__, "the SDK error (with the key) is not chained"


async def test_create_without_key_or_base_url_names_the_variable() -> None:
    with pytest.raises(MissingKeyError) as info:
        create(ProviderSpec(provider="openai", model="gpt-5-mini", endpoint="gpt"))
    assert "OPENAI_API_KEY" in str(info.value)
    assert "[endpoints.gpt]" in str(info.value)
    assert PROVIDER.key_env == "OPENAI_API_KEY"


async def test_keyless_server_needs_no_key(up: FakeUpstream) -> None:
    m = create(ProviderSpec(provider="openai", model="fake-gpt", endpoint="local-vllm", base_url=up.base_url))
    try:
        result = await m.complete(ask("no key"))
    finally:
        await m.aclose()
    assert result.text == "echo: no key"


# ------------------------------------------------------------------ through a workspace config


def endpoint_toml(name: str, base_url: str, **settings: Any) -> str:
    lines = [
        f"[endpoints.{name}]",
        'model = "openai:fake-gpt"',
        f'base_url = "{base_url}"',
        f'api_key_env = "{KEY_ENV}"',
    ]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")  # JSON numbers and string lists are valid TOML
    return "\n".join(lines) + "\n"


def configured(workspace: Workspace, toml: str) -> Workspace:
    workspace.config_path.write_text(toml, encoding="utf-8")
    return Workspace(workspace.path, env={KEY_ENV: KEY})


@pytest.fixture
async def ws_up(workspace: Workspace, up: FakeUpstream) -> AsyncIterator[Workspace]:
    toml = endpoint_toml("up", up.base_url, price_input_per_1m=1.0, price_output_per_1m=2.0, max_retries=2)
    ws = configured(workspace, toml)
    yield ws
    await ws.aclose()


KINDS = ["good"] * 40 + ["flaky"] * 5 + ["429"] * 5 + ["fail500"] * 4 + ["badjson"] * 3 + ["fail400"] * 3
MARKERS = {"good": "", "flaky": " [flaky:2]", "429": " [429:1]", "fail500": " [fail:500]"}
MARKERS |= {"badjson": " [badjson]", "fail400": " [fail:400]"}
FAILURES = {"fail500": "ServerError", "badjson": "MalformedResponseError", "fail400": "InvalidRequestError"}
ATTEMPTS = {"good": 1, "flaky": 3, "429": 2, "fail500": 3, "badjson": 3, "fail400": 1}  # a malformed 200 is retried


async def test_batch_mixes_good_retried_and_failing_rows(ws_up: Workspace, up: FakeUpstream) -> None:
    kinds = KINDS[:]
    random.Random(7).shuffle(kinds)
    prompts = [f"row {i}: ticket text{MARKERS[kind]}" for i, kind in enumerate(kinds)]
    requests = [ask(p, max_tokens=32) for p in prompts]

    report = await run_batch(ws_up.model("up"), requests, progress=False)

    assert [row.index for row in report.rows] == list(range(60))
    for row, kind, prompt in zip(report.rows, kinds, prompts, strict=True):
        if kind in FAILURES:
            assert not row.ok, (kind, prompt)
            assert row.error_type == FAILURES[kind], (row.error_type, row.error)
            assert row.error and "up" in row.error
        else:
            assert row.ok, (kind, row.error)
            assert row.result is not None
            assert row.result.text == f"echo: {prompt}"
            assert row.result.endpoint == "up"
            assert row.result.cost_usd == pytest.approx(
                (row.result.usage.input_tokens * 1.0 + row.result.usage.output_tokens * 2.0) / 1e6
            )
    assert report.errors == 10
    assert report.calls == 60
    assert up.requests == sum(ATTEMPTS[k] for k in kinds) == 89, "only retryable errors are retried"
    assert up.rejected_429 == 5

    records = ws_up.store.usage()
    assert len(records) == 60, "one usage record per row-call, after retries"
    assert all(r.endpoint == "up" for r in records)
    ok = [r for r in records if r.status == "ok"]
    errors = [r for r in records if r.status == "error"]
    assert len(ok) == 50 and len(errors) == 10
    assert sorted(e.error.split(":")[0] for e in errors if e.error) == sorted(
        FAILURES[k] for k in kinds if k in FAILURES
    )
    assert all(r.model == "fake-gpt" and not r.tokens_estimated and r.input_tokens > 0 for r in ok)
    assert sum(r.input_tokens for r in ok) == report.input_tokens
    assert sum(r.output_tokens for r in ok) == report.output_tokens
    assert sum(r.cost_usd for r in records) == pytest.approx(report.cost_usd)
    assert all(r.cost_usd == 0 for r in errors)

    for record in records:
        assert_no_key(repr(record))
    for row in report.rows:
        assert_no_key(row.error or "")


async def test_refused_key_in_a_batch_never_reaches_the_ledger(ws_up: Workspace) -> None:
    report = await run_batch(ws_up.model("up"), [ask("fine"), ask("bad key [fail:401]")], progress=False)
    assert report.rows[0].ok
    assert report.rows[1].error_type == "ProviderError"
    assert_no_key(report.rows[1].error or "")
    (failure,) = [r for r in ws_up.store.usage() if r.status == "error"]
    assert failure.error and "[401]" in failure.error
    assert_no_key(failure.error)


async def test_missing_key_variable_is_named(workspace: Workspace, up: FakeUpstream) -> None:
    workspace.config_path.write_text(endpoint_toml("up", up.base_url), encoding="utf-8")
    ws = Workspace(workspace.path, env={})
    with pytest.raises(MissingKeyError, match=KEY_ENV):
        ws.model("up")
    assert ws.registry.readiness("up") == f"no key (${KEY_ENV})"
    await ws.aclose()


async def test_fallback_to_backup_over_http(workspace: Workspace) -> None:
    def overloaded(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        error = {"message": "The server is overloaded.", "type": "server_error", "param": None, "code": None}
        return 503, {"Retry-After": "0.01"}, {"error": error}

    with FakeUpstream(scenario=overloaded) as primary, FakeUpstream(model="backup-gpt") as backup:
        toml = endpoint_toml(
            "primary", primary.base_url, max_retries=1, fallbacks=["backup"], price_input_per_1m=5.0
        ) + endpoint_toml("backup", backup.base_url, max_retries=0, price_input_per_1m=1.0, price_output_per_1m=1.0)
        ws = configured(workspace, toml)
        try:
            prompts = [f"question {i}" for i in range(5)]
            report = await run_batch(ws.model("primary"), [ask(p) for p in prompts], progress=False)
        finally:
            await ws.aclose()

        assert report.errors == 0
        for row, prompt in zip(report.rows, prompts, strict=True):
            assert row.result is not None
            assert row.result.text == f"echo: {prompt}"
            assert row.result.endpoint == "backup"
            assert row.result.model == "backup-gpt"
        assert primary.requests == 10, "one retry on the primary before falling back"
        assert primary.completed == 0
        assert backup.requests == 5

    records = Workspace(workspace.path, env={}).store.usage()
    ok = [r for r in records if r.status == "ok"]
    assert len(ok) == 5 and all(r.endpoint == "backup" for r in ok)
    assert sum(r.cost_usd for r in ok) == pytest.approx(report.cost_usd) and report.cost_usd > 0
    primary_records = [r for r in records if r.endpoint == "primary"]
    assert len(primary_records) == 5
    assert all(r.status == "error" and r.cost_usd == 0 for r in primary_records)


async def test_client_side_rpm_keeps_the_upstream_from_saying_429(workspace: Workspace) -> None:
    arrivals: list[float] = []
    lock = threading.Lock()

    def clock(body: dict[str, Any]) -> None:
        with lock:
            arrivals.append(time.monotonic())
        return None

    with FakeUpstream(rpm_limit=600, scenario=clock) as up:
        ws = configured(workspace, endpoint_toml("up", up.base_url, rpm=600, max_retries=0))
        try:
            report = await run_batch(ws.model("up"), [ask(f"paced {i}") for i in range(15)], progress=False)
        finally:
            await ws.aclose()
        assert report.errors == 0
        assert up.rejected_429 == 0
        assert up.requests == 15

    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    assert len(gaps) == 14
    # 600 rpm is one request every 0.1 s. A busy machine can delay a wake-up and bunch two arrivals,
    # so check the span and the typical gap rather than the smallest one.
    assert arrivals[-1] - arrivals[0] >= 14 * 0.1 * 0.9
    assert gaps[len(gaps) // 2] >= 0.08
