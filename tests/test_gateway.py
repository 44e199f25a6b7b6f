"""Gateway behaviours (retry, limits, cache, metering, budgets, fallbacks, splits, registry).

Every behaviour is exercised through the real wrapper stack that `Registry` builds, with the public
test doubles `FakeModel` / `FunctionModel` standing in for providers. No test sleeps for real on a
retry, and timing assertions are lower bounds only.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import InFlight, write_config

from brickyard import (
    BudgetExceededError,
    ChatRequest,
    ChatResult,
    FakeModel,
    FunctionModel,
    InvalidRequestError,
    MalformedResponseError,
    MissingKeyError,
    ProviderError,
    RateLimitedError,
    ServerError,
    UnknownEndpointError,
    UpstreamTimeoutError,
    Usage,
    UserError,
    Workspace,
)
from brickyard.config import Window
from brickyard.models._types import estimate_tokens
from brickyard.models.calls import Caller
from brickyard.models.limits import CallerRateModel, LimitedModel
from brickyard.models.metering import Price, window_start
from brickyard.models.payloads import PayloadLogModel
from brickyard.models.retry import RetryModel
from brickyard.models.routing import FallbackModel, SplitModel
from brickyard.store.base import UsageRecord

# -- helpers -------------------------------------------------------------------------------------------


def unwrap(model: Any) -> Any:
    """The stack an endpoint serves, under the layers `Registry.get` adds (caller limits, payload log)."""
    while isinstance(model, CallerRateModel | PayloadLogModel):
        model = model.inner
    return model


def req(text: str = "hello", **options: Any) -> ChatRequest:
    return ChatRequest.from_prompt(text, **options)


class Sleeps:
    """A fake `sleep` for RetryModel: records every wait, never sleeps."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def priced(
    text: str = "answer", *, inp: int = 10, out: int = 10, model: str = "function:priced", delay_s: float = 0.0
) -> Callable[[ChatRequest], Awaitable[ChatResult]]:
    """A FunctionModel body that reports exact token counts (so costs are exact)."""

    async def fn(request: ChatRequest) -> ChatResult:
        if delay_s:
            await asyncio.sleep(delay_s)
        return ChatResult(text=text, model=model, usage=Usage(inp, out))

    return fn


def failing(exc: BaseException) -> Callable[[ChatRequest], str]:
    def fn(request: ChatRequest) -> str:
        raise exc

    return fn


@pytest.fixture
def make_ws(workspace: Workspace) -> Iterator[Callable[..., Workspace]]:
    """Write a brickyard.toml and open a fresh Workspace on it; closes every ledger it opened."""
    opened: list[Workspace] = []

    def make(text: str = "", *, env: dict[str, str] | None = None) -> Workspace:
        ws = write_config(workspace, text)
        if env is not None:
            ws = Workspace(ws.path, env=env)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        if "store" in ws.__dict__:
            ws.store.close()


def register(ws: Workspace, name: str, model: FakeModel | FunctionModel) -> Any:
    """Serve `model` as the endpoint `name` declared in the workspace's brickyard.toml."""
    return ws.registry.register(name, model, ws.settings.endpoints[name])


def records(ws: Workspace, **filters: Any) -> list[UsageRecord]:
    return ws.store.usage(**filters)


# -- retry ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        ServerError("boom", status=503, retry_after=1.5),
        RateLimitedError("slow down", status=429, retry_after=1.5),
        UpstreamTimeoutError("timed out", retry_after=1.5),
    ],
    ids=["5xx", "429", "timeout"],
)
async def test_retry_retries_retryable_errors_then_succeeds(error: ProviderError) -> None:
    inner = FakeModel([error, error, "fine"], cycle=False)
    sleeps = Sleeps()
    model = RetryModel(inner, max_retries=4, sleep=sleeps)

    result = await model.complete(req())

    assert result.text == "fine"
    assert len(inner.calls) == 3
    assert sleeps.waits == [1.5, 1.5]


async def test_retry_honours_retry_after_per_error_and_caps_it() -> None:
    script = [
        RateLimitedError("a", status=429, retry_after=2.0),
        ServerError("b", status=503, retry_after=0.25),
        RateLimitedError("c", status=429, retry_after=120.0),  # longer than max_wait_s
        RateLimitedError("d", status=429, retry_after=-3.0),  # nonsense: never negative
        "ok",
    ]
    sleeps = Sleeps()
    model = RetryModel(FakeModel(script, cycle=False), max_retries=5, max_wait_s=10.0, sleep=sleeps)

    assert (await model.complete(req())).text == "ok"
    assert sleeps.waits == [2.0, 0.25, 10.0, 0.0]


async def test_retry_without_retry_after_backs_off_exponentially_with_jitter() -> None:
    sleeps = Sleeps()
    inner = FakeModel([ServerError("x", status=500)] * 3 + ["ok"], cycle=False)
    model = RetryModel(inner, max_retries=3, initial_s=0.5, max_wait_s=30.0, sleep=sleeps)

    assert (await model.complete(req())).text == "ok"
    assert len(sleeps.waits) == 3
    # initial * 2**(attempt-1) plus jitter in [0, initial]
    for attempt, wait in enumerate(sleeps.waits):
        base = 0.5 * 2**attempt
        assert base <= wait <= base + 0.5


async def test_retry_is_bounded_and_reraises_the_last_error() -> None:
    script = [ServerError(f"failure {i}", status=500, retry_after=0.0) for i in range(10)]
    inner = FakeModel(script, cycle=False)
    sleeps = Sleeps()
    model = RetryModel(inner, max_retries=2, sleep=sleeps)

    with pytest.raises(ServerError) as caught:
        await model.complete(req())

    assert len(inner.calls) == 3  # max_retries + 1
    assert caught.value is script[2]
    assert len(sleeps.waits) == 2


async def test_retry_zero_retries_means_one_attempt() -> None:
    inner = FakeModel([RateLimitedError("no", status=429)], cycle=True)
    sleeps = Sleeps()
    with pytest.raises(RateLimitedError):
        await RetryModel(inner, max_retries=0, sleep=sleeps).complete(req())
    assert len(inner.calls) == 1
    assert sleeps.waits == []


async def test_a_malformed_200_is_a_passing_fault_and_is_retried() -> None:
    inner = FakeModel([MalformedResponseError("unexpected response shape", endpoint="x"), "ok"], cycle=False)
    sleeps = Sleeps()
    model = RetryModel(inner, max_retries=2, sleep=sleeps)
    assert (await model.complete(req())).text == "ok"
    assert len(inner.calls) == 2 and len(sleeps.waits) == 1


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("bad request"),
        MalformedResponseError("the answer's JSON is cut at max_tokens", endpoint="x", retryable=False),
        ProviderError("bad request", status=400),
    ],
    ids=["invalid-request", "malformed-content", "provider-400"],
)
async def test_retry_does_not_retry_non_retryable_errors(error: Exception) -> None:
    inner = FakeModel([error, "ok"], cycle=False)
    sleeps = Sleeps()
    with pytest.raises(type(error)) as caught:
        await RetryModel(inner, max_retries=4, sleep=sleeps).complete(req())
    assert caught.value is error
    assert len(inner.calls) == 1
    assert sleeps.waits == []


async def test_retry_also_covers_embeddings() -> None:
    attempts = []

    def embed(text: str) -> list[float]:
        attempts.append(text)
        if len(attempts) == 1:
            raise ServerError("busy", status=503, retry_after=0.5)
        return [1.0, 0.0]

    sleeps = Sleeps()
    model = RetryModel(FunctionModel(lambda r: "x", embed_fn=embed), max_retries=2, sleep=sleeps)
    result = await model.embed(["a"])
    assert result.vectors == [[1.0, 0.0]]
    assert attempts == ["a", "a"]
    assert sleeps.waits == [0.5]


async def test_registry_stack_retries_and_records_one_usage_row(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("[endpoints.ep]\nmodel = 'fake:ep'\nmax_retries = 2\n")
    inner = FakeModel([ServerError("flaky", status=502, retry_after=0.0), "recovered"], cycle=False)
    model = register(ws, "ep", inner)

    result = await model.complete(req())

    assert result.text == "recovered"
    assert len(inner.calls) == 2
    [record] = records(ws)
    assert record.status == "ok"
    assert record.endpoint == "ep"


# -- rate limits ---------------------------------------------------------------------------------------


async def test_concurrency_cap_is_observed() -> None:
    body = InFlight(delay_s=0.02, answer="ok")
    model = LimitedModel(FunctionModel(body), max_concurrency=3)

    results = await asyncio.gather(*(model.complete(req(f"q{i}")) for i in range(20)))

    assert [r.text for r in results] == ["ok"] * 20
    assert body.peak == 3
    assert model.max_concurrency == 3


async def test_concurrency_cap_defaults_to_the_inner_models() -> None:
    body = InFlight(delay_s=0.02, answer="ok")
    model = LimitedModel(FunctionModel(body, max_concurrency=2))
    await asyncio.gather(*(model.complete(req(f"q{i}")) for i in range(10)))
    assert body.peak == 2


async def test_concurrency_cap_from_config(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("[endpoints.ep]\nmodel = 'fake:ep'\nmax_concurrency = 2\ncache = false\n")
    body = InFlight(delay_s=0.02, answer="ok")
    model = register(ws, "ep", FunctionModel(body))
    await asyncio.gather(*(model.complete(req(f"q{i}")) for i in range(12)))
    assert body.peak == 2


async def test_rpm_pacing_spaces_requests(make_ws: Callable[..., Workspace]) -> None:
    loop = asyncio.get_running_loop()
    ws = make_ws("[endpoints.ep]\nmodel = 'fake:ep'\nrpm = 1200\ncache = false\n")  # one request every 50 ms
    model = register(ws, "ep", FakeModel(["ok"]))
    started = loop.time()
    await asyncio.gather(*(model.complete(req(f"q{i}")) for i in range(11)))
    assert loop.time() - started >= 0.45  # 10 intervals of 50 ms; lower bound only


async def test_tpm_pacing_spaces_tokens(make_ws: Callable[..., Workspace]) -> None:
    loop = asyncio.get_running_loop()
    # 60,000 tokens a minute = 1,000 a second, with about one second of burst.
    ws = make_ws("[endpoints.ep]\nmodel = 'fake:ep'\ntpm = 60000\ncache = false\n")
    model = register(ws, "ep", FakeModel(["ok"]))
    # Each request books estimate_tokens("abcd") + max_tokens = 1 + 499 = 500 tokens (0.5 s of budget).
    requests = [req("abcd", max_tokens=499) for _ in range(4)]
    assert estimate_tokens(requests[0].prompt_text()) + 499 == 500
    started = loop.time()
    await asyncio.gather(*(model.complete(r) for r in requests))
    # 2,000 tokens at 1,000/s minus the ~1 s burst: the last one waits ~0.5 s. Lower bound only.
    assert loop.time() - started >= 0.45


# -- cache ---------------------------------------------------------------------------------------------


CACHED_EP = "[endpoints.ep]\nmodel = 'fake:ep'\nprice_input_per_1m = 1000\nprice_output_per_1m = 1000\n"


async def test_cache_serves_an_identical_request_without_calling_the_model(
    make_ws: Callable[..., Workspace],
) -> None:
    ws = make_ws(CACHED_EP)
    inner = FunctionModel(priced("the answer", inp=7, out=3))
    model = register(ws, "ep", inner)

    first = await model.complete(req("what is it?"))
    second = await model.complete(req("what is it?"))

    assert len(inner.calls) == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.text == first.text == "the answer"
    assert second.usage == first.usage == Usage(7, 3)
    assert second.endpoint == "ep"
    assert first.cost_usd == pytest.approx(10 * 1000 / 1e6)
    assert second.cost_usd == 0.0


async def test_failures_are_never_cached(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(CACHED_EP)
    inner = FakeModel([MalformedResponseError("garbled", endpoint="ep", retryable=False), "good"], cycle=False)
    model = register(ws, "ep", inner)

    with pytest.raises(MalformedResponseError):
        await model.complete(req("q"))
    assert ws.store.cache_get(req("q").cache_key("ep")) is None

    again = await model.complete(req("q"))
    assert (again.text, again.cached) == ("good", False)
    third = await model.complete(req("q"))
    assert (third.text, third.cached) == ("good", True)
    assert len(inner.calls) == 2


async def test_cache_false_in_extra_bypasses_read_and_write(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(CACHED_EP)
    inner = FunctionModel(lambda r: f"answer {len(inner.calls)}")
    model = register(ws, "ep", inner)
    fresh = req("q", extra={"cache": False})

    one = await model.complete(fresh)
    two = await model.complete(fresh)

    assert len(inner.calls) == 2
    assert (one.text, two.text) == ("answer 1", "answer 2")
    assert not one.cached and not two.cached
    assert ws.store.cache_get(fresh.cache_key("ep")) is None
    # ...and an ordinary request is still cached as usual.
    await model.complete(req("q"))
    assert (await model.complete(req("q"))).cached
    assert len(inner.calls) == 3


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"temperature": 0.0}, {"temperature": 0.7}),
        ({"max_tokens": 10}, {"max_tokens": 20}),
        ({}, {"seed": 1}),
        ({}, {"system": "be brief"}),
    ],
    ids=["temperature", "max_tokens", "seed", "messages"],
)
async def test_different_parameters_are_different_cache_keys(
    make_ws: Callable[..., Workspace], first: dict[str, Any], second: dict[str, Any]
) -> None:
    ws = make_ws(CACHED_EP)
    inner = FunctionModel(lambda r: "x")
    model = register(ws, "ep", inner)

    assert not (await model.complete(req("q", **first))).cached
    assert not (await model.complete(req("q", **second))).cached
    assert (await model.complete(req("q", **first))).cached
    assert (await model.complete(req("q", **second))).cached
    assert len(inner.calls) == 2


async def test_the_endpoint_is_part_of_the_cache_key(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("[endpoints.a]\nmodel = 'fake:a'\n[endpoints.b]\nmodel = 'fake:b'\n")
    shared = FunctionModel(lambda r: "same")
    a, b = register(ws, "a", shared), register(ws, "b", shared)

    assert not (await a.complete(req("q"))).cached
    result_b = await b.complete(req("q"))
    assert not result_b.cached
    assert result_b.endpoint == "b"
    assert (await a.complete(req("q"))).cached
    assert (await b.complete(req("q"))).cached
    assert len(shared.calls) == 2


async def test_tag_is_not_part_of_the_cache_key(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(CACHED_EP)
    inner = FunctionModel(lambda r: "x")
    model = register(ws, "ep", inner)

    await model.complete(req("q", tag="team-a"))
    hit = await model.complete(req("q", tag="team-b"))

    assert hit.cached
    assert len(inner.calls) == 1
    assert [(r.tag, r.cache_hit) for r in records(ws)] == [("team-a", False), ("team-b", True)]


async def test_cache_persists_across_workspace_objects(make_ws: Callable[..., Workspace]) -> None:
    ws1 = make_ws(CACHED_EP)
    first_model = FunctionModel(lambda r: "remembered")
    await register(ws1, "ep", first_model).complete(req("persist me"))
    await ws1.aclose()

    ws2 = Workspace(ws1.path, env={})
    try:
        second_model = FunctionModel(lambda r: "a different answer")
        result = await register(ws2, "ep", second_model).complete(req("persist me"))
        assert (result.text, result.cached) == ("remembered", True)
        assert second_model.calls == []
    finally:
        await ws2.aclose()


async def test_workspace_cache_off_disables_the_cache(workspace: Workspace) -> None:
    ws = Workspace(workspace.path, env={}, cache=False)
    try:
        inner = FunctionModel(lambda r: "x")
        model = ws.registry.register("ep", inner)
        await model.complete(req("q"))
        assert not (await model.complete(req("q"))).cached
        assert len(inner.calls) == 2
    finally:
        await ws.aclose()


async def test_endpoint_cache_false_disables_the_cache(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("[endpoints.ep]\nmodel = 'fake:ep'\ncache = false\n")
    inner = FunctionModel(lambda r: "x")
    model = register(ws, "ep", inner)
    await model.complete(req("q"))
    await model.complete(req("q"))
    assert len(inner.calls) == 2


# -- metering ------------------------------------------------------------------------------------------


METERED = "[endpoints.ep]\nmodel = 'fake:ep'\nprice_input_per_1m = 2.0\nprice_output_per_1m = 8.0\ncache = false\n"


async def test_one_usage_record_per_call_with_exact_cost(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(METERED)
    model = register(ws, "ep", FunctionModel(priced("hi", inp=1000, out=250, model="served:v1", delay_s=0.02)))

    result = await model.complete(req("q", tag="team-a"))
    await model.complete(req("q2"))

    expected_cost = (1000 * 2.0 + 250 * 8.0) / 1e6
    assert result.cost_usd == pytest.approx(expected_cost)
    assert result.endpoint == "ep"
    first, second = records(ws)
    assert (first.endpoint, first.model, first.tag, first.status) == ("ep", "served:v1", "team-a", "ok")
    assert (first.input_tokens, first.output_tokens, first.tokens_estimated) == (1000, 250, False)
    assert first.cost_usd == pytest.approx(expected_cost)
    assert first.latency_s >= 0.02
    assert not first.cache_hit
    assert first.error is None
    assert second.tag is None


async def test_failures_are_recorded_with_status_error(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(METERED)
    model = register(ws, "ep", FunctionModel(failing(InvalidRequestError("no such thing")), name="function:bad"))

    with pytest.raises(InvalidRequestError):
        await model.complete(req("q", tag="t"))

    [record] = records(ws)
    assert (record.endpoint, record.status, record.tag, record.cost_usd) == ("ep", "error", "t", 0.0)
    assert record.model == "function:bad"
    assert record.error is not None and "InvalidRequestError" in record.error and "no such thing" in record.error
    assert (record.input_tokens, record.output_tokens) == (0, 0)


async def test_cache_hits_are_recorded_with_zero_cost(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(CACHED_EP)
    model = register(ws, "ep", FunctionModel(priced("x", inp=40, out=60)))

    await model.complete(req("q"))
    await model.complete(req("q"))

    miss, hit = records(ws)
    assert (miss.cache_hit, miss.cost_usd) == (False, pytest.approx(100 * 1000 / 1e6))
    assert (hit.cache_hit, hit.cost_usd, hit.status) == (True, 0.0, "ok")
    assert (hit.input_tokens, hit.output_tokens) == (40, 60)
    assert ws.store.spent_usd(since=0, endpoint="ep") == pytest.approx(0.1)


async def test_tokens_are_estimated_when_the_model_reports_none(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(METERED)
    text = "an answer of some length"
    model = register(ws, "ep", FunctionModel(lambda r: ChatResult(text=text, model="m", usage=Usage())))
    prompt = "a prompt that is forty characters long!!"

    result = await model.complete(req(prompt))

    expected = Usage(estimate_tokens(prompt), estimate_tokens(text), estimated=True)
    assert expected.input_tokens == 10
    assert result.usage == expected
    [record] = records(ws)
    assert record.tokens_estimated
    assert (record.input_tokens, record.output_tokens) == (expected.input_tokens, expected.output_tokens)
    assert record.cost_usd == pytest.approx((expected.input_tokens * 2.0 + expected.output_tokens * 8.0) / 1e6)


async def test_streaming_is_metered(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(METERED)
    model = register(ws, "ep", FakeModel(["streamed answer"]))
    pieces = [piece async for piece in model.stream(req("q", tag="s"))]
    assert "".join(pieces) == "streamed answer"
    [record] = records(ws)
    assert (record.endpoint, record.tag, record.status, record.tokens_estimated) == ("ep", "s", "ok", True)
    assert record.output_tokens == estimate_tokens("streamed answer")


async def test_summarize_by_endpoint_tag_and_day(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(
        "[endpoints.a]\nmodel = 'fake:a'\nprice_input_per_1m = 1000\nprice_output_per_1m = 1000\n"
        "[endpoints.b]\nmodel = 'fake:b'\nprice_input_per_1m = 1000\nprice_output_per_1m = 1000\n"
    )
    a = register(ws, "a", FunctionModel(priced(inp=5, out=5)))
    b = register(ws, "b", FunctionModel(failing(InvalidRequestError("nope"))))
    await a.complete(req("1", tag="x"))
    await a.complete(req("2", tag="x"))
    await a.complete(req("1", tag="y"))  # a cache hit
    with pytest.raises(InvalidRequestError):
        await b.complete(req("3", tag="y"))
    # Two older rows on fixed days (UTC) to exercise grouping by day.
    ws.store.record_usage(UsageRecord(ts=86_400 * 2 + 10, endpoint="a", model="m", cost_usd=1.0))
    ws.store.record_usage(UsageRecord(ts=86_400 * 2 + 20, endpoint="a", model="m", cost_usd=2.0))

    by_endpoint = {row.group: row for row in ws.store.summarize(["endpoint"])}
    assert set(by_endpoint) == {("a",), ("b",)}
    assert (by_endpoint[("a",)].calls, by_endpoint[("a",)].cache_hits, by_endpoint[("a",)].errors) == (5, 1, 0)
    assert by_endpoint[("a",)].input_tokens == 15
    assert by_endpoint[("a",)].cost_usd == pytest.approx(3.0 + 2 * 0.01)
    assert (by_endpoint[("b",)].calls, by_endpoint[("b",)].errors) == (1, 1)

    by_tag = {row.group: (row.calls, row.errors, row.cache_hits) for row in ws.store.summarize(["tag"])}
    assert by_tag == {("-",): (2, 0, 0), ("x",): (2, 0, 0), ("y",): (2, 1, 1)}

    by_day = {row.group: row.calls for row in ws.store.summarize(["day"])}
    assert by_day.pop(("1970-01-03",)) == 2
    assert sum(by_day.values()) == 4  # today's calls, on one (or, at midnight, two) days

    recent = ws.store.summarize(["endpoint", "tag"], since=86_400 * 3)
    assert [(row.group, row.calls) for row in recent] == [(("a", "x"), 2), (("a", "y"), 1), (("b", "y"), 1)]

    with pytest.raises(UserError, match="cannot group usage by"):
        ws.store.summarize(["colour"])


# -- budgets -------------------------------------------------------------------------------------------

# $0.001 a token both ways. `priced(inp=1, out=10)` with max_tokens=10 costs exactly what it reserves: $0.011.
PAID = "[endpoints.paid]\nmodel = 'fake:paid'\nprice_input_per_1m = 1000\nprice_output_per_1m = 1000\ncache = false\n"
EXACT = 0.011


def capped(text: str, **options: Any) -> ChatRequest:
    """A request whose reservation covers its answer: a one-token prompt and max_tokens=10."""
    return req(text, max_tokens=10, **options)


async def test_endpoint_budget_refuses_before_calling_the_model(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(PAID + "[[budgets]]\nendpoint = 'paid'\nlimit_usd = 0.05\n")
    inner = FunctionModel(priced(inp=1, out=10))
    model = register(ws, "paid", inner)

    for i in range(4):  # 0.011 each: the fifth would reach 0.055
        await model.complete(capped(f"q{i}"))
    assert ws.store.spent_usd(since=0, endpoint="paid") == pytest.approx(4 * EXACT)

    with pytest.raises(BudgetExceededError) as caught:
        await model.complete(capped("q4"))

    assert len(inner.calls) == 4
    err = caught.value
    assert (err.scope, err.limit_usd, err.window) == ("endpoint paid", 0.05, "month")
    assert err.spent_usd == pytest.approx(4 * EXACT)
    assert err.retry_after is not None and 0 < err.retry_after <= 31 * 86400  # when the month starts again
    message = str(err)
    assert "endpoint paid" in message
    assert "Fix:" in message and "limit_usd" in message and "brickyard.toml" in message
    assert records(ws)[-1].status == "budget_exceeded"
    assert ws.store.spent_usd(since=0, endpoint="paid") <= 0.05


async def test_a_call_without_max_tokens_reserves_the_endpoints_default_or_the_context(
    make_ws: Callable[..., Workspace],
) -> None:
    ws = make_ws(PAID + "[[budgets]]\nendpoint = 'paid'\nlimit_usd = 0.05\n")
    inner = FunctionModel(priced(inp=1, out=10))
    model = register(ws, "paid", inner)
    # No max_tokens and no known context window: 32,768 output tokens are reserved ($32.77), which no
    # $0.05 budget admits. The refusal says how much was needed.
    with pytest.raises(BudgetExceededError, match=r"about 32\.77 USD"):
        await model.complete(req("q"))
    assert inner.calls == []
    # With the endpoint's default max_tokens the reservation is what the call may cost at most.
    ws2 = make_ws(PAID + "max_tokens = 10\n[[budgets]]\nendpoint = 'paid'\nlimit_usd = 0.05\n")
    inner2 = FunctionModel(priced(inp=1, out=10))
    model2 = register(ws2, "paid", inner2)
    for i in range(4):
        await model2.complete(req(f"q{i}"))
    assert [c.max_tokens for c in inner2.calls] == [10] * 4  # the default reached the upstream
    with pytest.raises(BudgetExceededError):
        await model2.complete(req("q4"))


async def test_budget_also_refuses_when_the_estimate_would_cross_the_limit(
    make_ws: Callable[..., Workspace],
) -> None:
    ws = make_ws(PAID + "[[budgets]]\nendpoint = 'paid'\nlimit_usd = 0.05\n")
    inner = FunctionModel(priced(inp=1, out=10))
    model = register(ws, "paid", inner)
    await model.complete(capped("q"))  # spent 0.011

    # Reserved at 1 prompt token + 100 output tokens = $0.101: over what is left.
    with pytest.raises(BudgetExceededError):
        await model.complete(req("x", max_tokens=100))
    assert len(inner.calls) == 1
    await model.complete(req("y", max_tokens=5))  # $0.006 fits
    assert len(inner.calls) == 2


async def test_tag_budget_spans_endpoints_and_spares_other_tags(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(
        PAID
        + "[endpoints.other]\nmodel = 'fake:o'\nprice_input_per_1m = 1000\nprice_output_per_1m = 1000\n"
        + "cache = false\n[[budgets]]\ntag = 'team-a'\nlimit_usd = 0.03\nwindow = 'day'\n"
    )
    paid_inner, other_inner = FunctionModel(priced(inp=1, out=10)), FunctionModel(priced(inp=1, out=10))
    paid, other = register(ws, "paid", paid_inner), register(ws, "other", other_inner)

    await paid.complete(capped("1", tag="team-a"))  # 0.011
    await other.complete(capped("2", tag="team-a"))  # 0.022 over both endpoints
    with pytest.raises(BudgetExceededError) as caught:
        await paid.complete(capped("3", tag="team-a"))
    with pytest.raises(BudgetExceededError):  # the tag may also come with the caller
        await other.complete(capped("4"), caller=Caller(tag="team-a"))
    assert (len(paid_inner.calls), len(other_inner.calls)) == (1, 1)
    assert caught.value.scope == "tag team-a"
    assert "tag team-a" in str(caught.value) and "day" in str(caught.value)

    # Other tags and untagged calls are not limited by team-a's budget.
    await paid.complete(capped("5", tag="team-b"))
    await paid.complete(capped("6"))
    assert len(paid_inner.calls) == 3


async def test_day_budget_ignores_spend_before_today(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(PAID + "[[budgets]]\nendpoint = 'paid'\nlimit_usd = 1.0\nwindow = 'day'\n")
    inner = FunctionModel(priced(inp=1, out=10))
    model = register(ws, "paid", inner)
    today = window_start(Window.day)
    ws.store.record_usage(UsageRecord(ts=today - 60, endpoint="paid", model="m", cost_usd=50.0))
    ws.store.record_usage(UsageRecord(ts=today + 1, endpoint="paid", model="m", cost_usd=0.98))

    await model.complete(capped("q"))  # yesterday's $50 does not count; today's $0.98 does (seeded)
    with pytest.raises(BudgetExceededError):
        await model.complete(capped("q2"))
    assert len(inner.calls) == 1


async def test_cache_hits_are_served_when_the_budget_is_spent(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(
        "[endpoints.paid]\nmodel = 'fake:paid'\nprice_input_per_1m = 1000\nprice_output_per_1m = 1000\n"
        "[[budgets]]\nendpoint = 'paid'\nlimit_usd = 0.015\n"
    )
    inner = FunctionModel(priced(inp=1, out=10))
    model = register(ws, "paid", inner)
    await model.complete(capped("q"))  # 0.011: the next call does not fit
    with pytest.raises(BudgetExceededError):
        await model.complete(capped("new question"))
    assert (await model.complete(capped("q"))).cached
    assert len(inner.calls) == 1


async def test_budget_holds_under_64_concurrent_calls(make_ws: Callable[..., Workspace]) -> None:
    limit = 0.10  # nine calls of $0.011 fit
    ws = make_ws(PAID + f"max_concurrency = 64\n[[budgets]]\nendpoint = 'paid'\nlimit_usd = {limit}\n")
    inner = FunctionModel(priced(inp=1, out=10, delay_s=0.02))
    model = register(ws, "paid", inner)

    outcomes = await asyncio.gather(*(model.complete(capped(f"q{i}")) for i in range(64)), return_exceptions=True)

    served = [o for o in outcomes if isinstance(o, ChatResult)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert len(served) + len(refused) == 64
    assert len(inner.calls) == len(served) == 9
    spent = ws.store.spent_usd(since=0, endpoint="paid")
    assert spent == pytest.approx(EXACT * 9)
    assert spent <= limit  # never over: every answer was covered by its reservation


# -- fallbacks -----------------------------------------------------------------------------------------

FALLBACK = (
    "[endpoints.primary]\nmodel = 'fake:p'\nmax_retries = 2\nfallbacks = ['backup']\ncache = false\n"
    "price_input_per_1m = 1000\nprice_output_per_1m = 1000\n"
    "[endpoints.backup]\nmodel = 'fake:b'\nmax_retries = 0\ncache = false\n"
    "price_input_per_1m = 2000\nprice_output_per_1m = 2000\n"
)


def fallback_pair(ws: Workspace, primary_error: BaseException, backup_answer: Any) -> tuple[Any, Any, Any]:
    # The backup must be registered first: the primary's stack picks up its fallbacks when it is built.
    backup = FunctionModel(backup_answer if callable(backup_answer) else (lambda r: backup_answer))
    register(ws, "backup", backup)
    primary = FunctionModel(failing(primary_error))
    model = register(ws, "primary", primary)
    return model, primary, backup


@pytest.mark.parametrize(
    "error",
    [
        RateLimitedError("slow down", status=429, retry_after=0.0),
        ServerError("down", status=503, retry_after=0.0),
        UpstreamTimeoutError("no answer", retry_after=0.0),
    ],
    ids=["429", "503", "timeout"],
)
async def test_fallback_answers_after_the_primary_exhausts_its_retries(
    make_ws: Callable[..., Workspace], error: ProviderError
) -> None:
    ws = make_ws(FALLBACK)
    model, primary, backup = fallback_pair(ws, error, priced("from backup", model="function:backup"))
    assert isinstance(unwrap(model), FallbackModel)  # under the caller's limits and the payload log

    result = await model.complete(req("q", tag="team"))

    assert result.text == "from backup"
    assert result.endpoint == "backup"
    assert len(primary.calls) == 3  # max_retries = 2
    assert len(backup.calls) == 1
    failed, served = records(ws)
    assert (failed.endpoint, failed.status, failed.cost_usd) == ("primary", "error", 0.0)
    assert (served.endpoint, served.status, served.model, served.tag) == ("backup", "ok", "function:backup", "team")
    assert served.cost_usd == pytest.approx(20 * 2000 / 1e6)


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("bad request"),
        ProviderError("bad request", status=400),
        MalformedResponseError("garbled JSON content", retryable=False),
    ],
    ids=["invalid-request", "provider-400", "malformed-content"],
)
async def test_no_fallback_on_errors_another_endpoint_would_repeat(
    make_ws: Callable[..., Workspace], error: Exception
) -> None:
    ws = make_ws(FALLBACK)
    model, primary, backup = fallback_pair(ws, error, "from backup")

    with pytest.raises(type(error)) as caught:
        await model.complete(req("q"))

    assert caught.value is error
    assert len(primary.calls) == 1
    assert backup.calls == []


async def test_all_fallbacks_failing_raises_the_last_error(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(FALLBACK)
    last = RateLimitedError("backup is busy too", endpoint="backup", status=429, retry_after=0.0)
    model, primary, backup = fallback_pair(ws, ServerError("down", status=500, retry_after=0.0), failing(last))

    with pytest.raises(RateLimitedError) as caught:
        await model.complete(req("q"))

    assert caught.value is last
    assert (len(primary.calls), len(backup.calls)) == (3, 1)
    assert [(r.endpoint, r.status) for r in records(ws)] == [("primary", "error"), ("backup", "error")]


async def test_fallback_spend_is_charged_where_it_was_served(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(FALLBACK + "[[budgets]]\nendpoint = 'backup'\nlimit_usd = 0.03\n")
    model, primary, backup = fallback_pair(
        ws, RateLimitedError("busy", status=429, retry_after=0.0), priced(inp=10, out=10)
    )

    await model.complete(req("q1", tag="team", max_tokens=10))  # 20 tokens at the backup's price: $0.04
    assert ws.store.spent_usd(since=0, endpoint="backup") == pytest.approx(0.04)
    assert ws.store.spent_usd(since=0, endpoint="primary") == 0.0
    assert len(primary.calls) == 3
    assert ws.store.spent_usd(since=0, tag="team") == pytest.approx(0.04)

    # The backup's budget is now short: the fallback is refused before it is called (at its own price).
    with pytest.raises(BudgetExceededError, match="endpoint backup"):
        await model.complete(req("q2", tag="team", max_tokens=10))
    assert len(backup.calls) == 1


async def test_fallback_model_directly() -> None:
    first = FakeModel([ServerError("x", status=500)], name="fake:first")
    second = FakeModel(["second"], name="fake:second")
    model = FallbackModel([first, second])
    assert model.name == "fake:first"
    assert (await model.complete(req())).text == "second"
    with pytest.raises(ValueError):
        FallbackModel([])


async def test_fallback_loops_are_reported(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(
        "[endpoints.a]\nmodel = 'fake:a'\nfallbacks = ['b']\n[endpoints.b]\nmodel = 'fake:b'\nfallbacks = ['a']\n"
    )
    with pytest.raises(UserError, match="loop: a -> b -> a"):
        ws.registry.get("a")


# -- split ---------------------------------------------------------------------------------------------

SPLIT = (
    "[endpoints.a]\nmodel = 'fake:a'\ncache = false\n"
    "[endpoints.b]\nmodel = 'fake:b'\ncache = false\n"
    "[endpoints.ab]\nsplit = { a = 80, b = 20 }\n"
)


async def test_split_shares_follow_the_weights(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(SPLIT)
    model = ws.registry.get("ab")
    assert isinstance(unwrap(model), SplitModel)  # under the caller's limits and the payload log

    results = await asyncio.gather(*(model.complete(req(f"q{i}")) for i in range(1000)))

    served = collections.Counter(r.endpoint for r in results)
    assert set(served) == {"a", "b"}
    assert 0.7 <= served["a"] / 1000 <= 0.9
    assert served["a"] + served["b"] == 1000
    by_endpoint = {row.group[0]: row.calls for row in ws.store.summarize(["endpoint"])}
    assert by_endpoint == {"a": served["a"], "b": served["b"]}


async def test_seeded_split_is_reproducible() -> None:
    def picks(seed: int) -> list[str]:
        a, b = FakeModel(["a"], name="fake:a"), FakeModel(["b"], name="fake:b")
        split = SplitModel([(80, a), (20, b)], name="ab", seed=seed)
        return [split.pick().name for _ in range(1000)]

    first = picks(1234)
    assert first == picks(1234)
    share = first.count("fake:a") / 1000
    assert 0.7 <= share <= 0.9


# -- registry ------------------------------------------------------------------------------------------


async def test_aliases_resolve_to_the_endpoint(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("[endpoints.ep]\nmodel = 'fake:ep'\n[aliases]\nfast = 'ep'\nquick = 'fast'\ncheap = 'fake:cheap'\n")
    assert ws.registry.canonical("quick") == "ep"
    assert ws.registry.get("quick") is ws.registry.get("ep") is ws.registry.get("fast")
    result = await ws.registry.get("quick").complete(req())
    assert (result.text, result.endpoint) == ("ok", "ep")
    assert (await ws.registry.get("cheap").complete(req())).endpoint == "fake:cheap"


def test_alias_loops_error_clearly(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("[aliases]\na = 'b'\nb = 'c'\nc = 'a'\n")
    with pytest.raises(UserError) as caught:
        ws.registry.get("a")
    assert "aliases loop: a -> b -> c -> a" in str(caught.value)
    assert "Fix:" in str(caught.value)


async def test_model_ids_work_without_config(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("")
    model = ws.model("fake:anything")
    result = await model.complete(req())
    assert (result.text, result.model, result.endpoint) == ("ok", "fake:anything", "fake:anything")
    assert records(ws)[0].endpoint == "fake:anything"


def test_bad_model_ids_and_unknown_providers(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("")
    with pytest.raises(UserError, match="is not a model id"):
        ws.registry.get("fake:")
    with pytest.raises(UserError, match="no provider `nope`"):
        ws.registry.get("nope:model")


def test_unknown_endpoint_suggests_close_names(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("[endpoints.gpt-mini]\nmodel = 'fake:g'\n[aliases]\nsummariser = 'gpt-mini'\n")
    with pytest.raises(UnknownEndpointError) as caught:
        ws.registry.get("gpt-mnii")
    message = str(caught.value)
    assert "unknown endpoint `gpt-mnii`" in message
    assert "did you mean gpt-mini" in message
    assert str(ws.config_path) in message
    assert "Fix:" in message
    with pytest.raises(UnknownEndpointError, match="did you mean summariser"):
        ws.registry.get("sumariser")


def test_missing_key_names_the_variable(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws(
        "[endpoints.gpt]\nmodel = 'openai:gpt-5-mini'\n"
        "[endpoints.custom]\nmodel = 'openai:gpt-5-mini'\napi_key_env = 'MY_GATEWAY_KEY'\n",
        env={},
    )
    with pytest.raises(MissingKeyError) as caught:
        ws.registry.get("gpt")
    assert "$OPENAI_API_KEY" in str(caught.value)
    assert "Fix: export OPENAI_API_KEY=" in str(caught.value)
    with pytest.raises(MissingKeyError, match=r"\$MY_GATEWAY_KEY"):
        ws.registry.get("custom")


def test_a_key_in_the_workspace_env_is_used(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("[endpoints.gpt]\nmodel = 'openai:gpt-5-mini'\n", env={"OPENAI_API_KEY": "sk-test-not-real"})
    assert ws.registry.readiness("gpt") is None
    assert ws.registry.get("gpt").name  # builds without touching the network


def test_readiness_reasons(make_ws: Callable[..., Workspace], tmp_path: Path) -> None:
    models_dir = tmp_path / "empty-models"
    ws = make_ws(
        f"[local]\nmodels_dir = '{models_dir}'\n"
        "[endpoints.gpt]\nmodel = 'openai:gpt-5-mini'\n"
        "[endpoints.vllm]\nmodel = 'openai:some-model'\nbase_url = 'http://127.0.0.1:9/v1'\n"
        "[endpoints.fake]\nmodel = 'fake:f'\n"
        "[endpoints.mix]\nsplit = { gpt = 1, fake = 1 }\n"
        "[endpoints.gguf]\nmodel = 'local:/no/such/model.gguf'\n",
        env={},
    )
    registry = ws.registry
    assert registry.readiness("gpt") == "no key ($OPENAI_API_KEY)"
    assert registry.readiness("vllm") is None  # a keyless OpenAI-compatible server
    assert registry.readiness("fake") is None
    assert registry.readiness("mix") == "no key ($OPENAI_API_KEY)"
    assert registry.readiness("smollm2") == "not pulled (brickyard models pull smollm2-135m)"
    assert registry.readiness("e5-small") is None
    assert registry.readiness("gguf") == "file not found"
    reason = registry.readiness("nowhere")
    assert reason is not None and "unknown endpoint `nowhere`" in reason


def test_price_comes_from_the_endpoint_config(make_ws: Callable[..., Workspace]) -> None:
    ws = make_ws("[endpoints.ep]\nmodel = 'fake:ep'\nprice_input_per_1m = 0.25\nprice_output_per_1m = 2\n")
    assert ws.registry.price("ep") == Price(0.25, 2.0)
    assert ws.registry.price("fake:x") == Price(0.0, 0.0)
    assert Price(0.25, 2.0).cost(Usage(1_000_000, 500_000)) == pytest.approx(1.25)
