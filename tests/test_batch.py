"""The batch engine: input order, dedup, cache hits, per-row errors, estimates, callbacks, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import InFlight, write_config

from brickyard import (
    BatchReport,
    ChatRequest,
    ChatResult,
    FunctionModel,
    InvalidRequestError,
    RowResult,
    Usage,
    Workspace,
    estimate_batch,
    run_batch,
    run_batch_sync,
)
from brickyard.batch import DEFAULT_OUTPUT_TOKENS
from brickyard.models._types import estimate_tokens
from brickyard.models.metering import Price


def req(text: str, **options: Any) -> ChatRequest:
    return ChatRequest.from_prompt(text, **options)


def echo(request: ChatRequest) -> str:
    return f"echo: {request.messages[-1]['content']}"


@pytest.fixture
def make_ws(workspace: Workspace) -> Iterator[Callable[[str], Workspace]]:
    opened: list[Workspace] = []

    def make(text: str) -> Workspace:
        ws = write_config(workspace, text)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        if "store" in ws.__dict__:
            ws.store.close()


def endpoint(ws: Workspace, name: str, model: FunctionModel) -> Any:
    return ws.registry.register(name, model, ws.settings.endpoints[name])


EP = "[endpoints.ep]\nmodel = 'fake:ep'\nprice_input_per_1m = 1000\nprice_output_per_1m = 2000\n"


# -- order, dedup, cache -------------------------------------------------------------------------------


async def test_results_come_back_in_input_order() -> None:
    async def slow_for_early_rows(request: ChatRequest) -> str:
        index = int(request.messages[-1]["content"].split()[-1])
        await asyncio.sleep(0.002 * (20 - index))  # early rows finish last
        return echo(request)

    model = FunctionModel(slow_for_early_rows, max_concurrency=20)
    report = await run_batch(model, [req(f"row {i}") for i in range(20)], progress=False)

    assert [row.index for row in report.rows] == list(range(20))
    assert [r.text for r in report.results if r is not None] == [f"echo: row {i}" for i in range(20)]
    assert report.errors == 0


async def test_duplicates_are_sent_once_and_a_second_run_is_all_cache_hits(
    make_ws: Callable[[str], Workspace],
) -> None:
    ws = make_ws(EP)
    inner = FunctionModel(lambda r: ChatResult(text=echo(r), model="function:m", usage=Usage(3, 2)))
    model = endpoint(ws, "ep", inner)
    requests = [req(f"text {i % 100}") for i in range(1000)]

    first = await run_batch(model, requests, progress=False)

    assert len(inner.calls) == 100
    assert (first.distinct, first.calls, first.cache_hits, first.errors) == (100, 100, 0, 0)
    assert len(first.rows) == 1000
    assert all(
        row.result is not None and row.result.text == f"echo: text {i % 100}" for i, row in enumerate(first.rows)
    )
    assert (first.input_tokens, first.output_tokens) == (300, 200)
    assert first.cost_usd == pytest.approx(100 * (3 * 1000 + 2 * 2000) / 1e6)

    second = await run_batch(model, requests, progress=False)

    assert len(inner.calls) == 100  # not one more model call
    assert (second.distinct, second.calls, second.cache_hits, second.errors) == (100, 0, 100, 0)
    assert second.cost_usd == 0.0
    assert all(row.result is not None and row.result.cached for row in second.rows)
    assert [r.text for r in second.results if r] == [r.text for r in first.results if r]
    usage = ws.store.summarize(["endpoint"])[0]
    assert (usage.calls, usage.cache_hits) == (200, 100)  # one record per call, not per row


async def test_requests_differing_only_in_parameters_are_not_merged() -> None:
    model = FunctionModel(lambda r: f"t={r.temperature}")
    requests = [req("q", temperature=0.0), req("q", temperature=1.0), req("q", temperature=0.0)]
    report = await run_batch(model, requests, progress=False)
    assert report.distinct == 2
    assert len(model.calls) == 2
    assert [r.text for r in report.results if r] == ["t=0.0", "t=1.0", "t=0.0"]


# -- per-row errors ------------------------------------------------------------------------------------


def flaky(request: ChatRequest) -> str:
    text = request.messages[-1]["content"]
    if text.startswith("invalid"):
        raise InvalidRequestError(f"cannot answer {text}")
    if text.startswith("crash"):
        raise RuntimeError("provider bug")
    return echo(request)


async def test_failing_rows_keep_their_place_with_an_error(make_ws: Callable[[str], Workspace]) -> None:
    ws = make_ws(EP)
    texts = ["good 0", "invalid 1", "good 2", "crash 3", "invalid 1", "good 5", "crash 6", "good 0"]
    model = endpoint(ws, "ep", FunctionModel(flaky))

    report = await run_batch(model, [req(t) for t in texts], progress=False)

    assert len(report.rows) == len(texts)
    assert [row.index for row in report.rows] == list(range(len(texts)))
    assert report.errors == 4
    assert [row.ok for row in report.rows] == [True, False, True, False, False, True, False, True]
    assert [row.error_type for row in report.rows] == [
        None,
        "InvalidRequestError",
        None,
        "RuntimeError",
        "InvalidRequestError",
        None,
        "RuntimeError",
        None,
    ]
    assert report.rows[1].error == "cannot answer invalid 1"
    assert report.rows[3].error == "provider bug"
    assert report.rows[2].result is not None and report.rows[2].result.text == "echo: good 2"
    assert (report.distinct, report.calls) == (6, 6)


async def test_an_empty_prompt_is_that_rows_error(make_ws: Callable[[str], Workspace]) -> None:
    ws = make_ws(EP)
    inner = FunctionModel(echo)
    model = endpoint(ws, "ep", inner)

    report = await run_batch(model, [req("first"), req("   "), req("third")], progress=False)

    assert [row.ok for row in report.rows] == [True, False, True]
    assert report.rows[1].error_type == "InvalidRequestError"
    assert report.rows[1].error is not None and "prompt is empty" in report.rows[1].error
    assert report.errors == 1
    assert len(inner.calls) == 2


# -- estimates -----------------------------------------------------------------------------------------


async def test_estimate_counts_distinct_cached_and_usd(make_ws: Callable[[str], Workspace]) -> None:
    ws = make_ws(EP)
    model = endpoint(ws, "ep", FunctionModel(echo))
    texts = ["alpha", "beta", "alpha", "gamma", "beta", "alpha"]
    requests = [req(t, max_tokens=20) for t in texts]
    await model.complete(req("alpha", max_tokens=20))  # now cached
    price = ws.registry.price("ep")
    assert price == Price(1000.0, 2000.0)

    estimate = estimate_batch(requests, price=price, endpoint="ep", store=ws.store)

    assert (estimate.rows, estimate.distinct, estimate.cached, estimate.calls) == (6, 3, 1, 2)
    assert estimate.input_tokens == estimate_tokens("beta") + estimate_tokens("gamma") == 3
    assert estimate.output_tokens == 40
    assert estimate.cost_usd == pytest.approx((3 * 1000 + 40 * 2000) / 1e6)
    assert estimate.notes

    report = await run_batch(model, requests, progress=False)
    assert (report.calls, report.cache_hits) == (estimate.calls, estimate.cached)


def test_estimate_without_a_store_and_without_max_tokens() -> None:
    requests = [req("12345678"), req("12345678"), req("abcd")]
    estimate = estimate_batch(requests, price=Price(2.0, 4.0))
    assert (estimate.rows, estimate.distinct, estimate.cached, estimate.calls) == (3, 2, 0, 2)
    assert estimate.input_tokens == 2 + 1
    assert estimate.output_tokens == 2 * DEFAULT_OUTPUT_TOKENS
    assert estimate.cost_usd == pytest.approx((3 * 2.0 + 2 * DEFAULT_OUTPUT_TOKENS * 4.0) / 1e6)


# -- callbacks, concurrency, edges ---------------------------------------------------------------------


async def test_on_result_sees_every_row_once() -> None:
    seen: list[tuple[int, RowResult]] = []
    texts = [f"t{i % 7}" for i in range(40)] + [""]
    report = await run_batch(
        FunctionModel(echo), [req(t) for t in texts], progress=False, on_result=lambda i, row: seen.append((i, row))
    )
    assert sorted(i for i, _ in seen) == list(range(41))
    assert all(row.index == i for i, row in seen)
    assert {i: row for i, row in seen} == {row.index: row for row in report.rows}
    assert not dict(seen)[40].ok


@pytest.mark.parametrize("concurrency", [1, 3, 5])
async def test_concurrency_bound_is_respected(concurrency: int) -> None:
    body = InFlight()
    report = await run_batch(
        FunctionModel(body, max_concurrency=50), [req(f"q{i}") for i in range(30)], concurrency=concurrency
    )
    assert body.peak == concurrency
    assert report.errors == 0


async def test_concurrency_defaults_to_the_models_and_the_endpoint_cap_wins(
    make_ws: Callable[[str], Workspace],
) -> None:
    body = InFlight()
    await run_batch(FunctionModel(body, max_concurrency=4), [req(f"q{i}") for i in range(30)], progress=False)
    assert body.peak == 4

    ws = make_ws("[endpoints.ep]\nmodel = 'fake:ep'\nmax_concurrency = 2\n")
    capped = InFlight()
    model = endpoint(ws, "ep", FunctionModel(capped))
    await run_batch(model, [req(f"q{i}") for i in range(30)], concurrency=10, progress=False)
    assert capped.peak == 2


async def test_an_empty_batch() -> None:
    model = FunctionModel(echo)
    report = await run_batch(model, [], progress=False)
    assert report.rows == []
    assert (report.distinct, report.calls, report.errors) == (0, 0, 0)
    assert model.calls == []


def test_run_batch_sync_and_the_summary() -> None:
    report = run_batch_sync(FunctionModel(echo), [req("a"), req("a"), req("b")], progress=False)
    assert isinstance(report, BatchReport)
    summary = report.summary()
    assert {k: summary[k] for k in ("rows", "distinct", "calls", "cache_hits", "errors")} == {
        "rows": 3,
        "distinct": 2,
        "calls": 2,
        "cache_hits": 0,
        "errors": 0,
    }
    assert report.rows_per_s > 0
