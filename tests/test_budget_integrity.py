"""Budgets attacked on every path: 64-way concurrency, fallbacks (priced and unpriced primaries), embeddings,
streams, several processes sharing one store, SQL and the Python API, and hostile numbers.

The promise under attack (README, "Budgets"): when `max_tokens` covers the answers, spend never exceeds the
limit, whoever calls and however many at once. Every upstream here reports exact token counts, so the
assertion is `spent <= limit` with no slack.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_config

from brickyard import Workspace
from brickyard._errors import BudgetExceededError, KeyBudgetExceededError
from brickyard.models._types import ChatRequest, ChatResult, Usage
from brickyard.models.calls import Caller, CallerBudget
from brickyard.testing.upstream import FakeUpstream

LIMIT = 0.34


def _down(body: dict[str, Any]) -> Any:
    """The model `down` always answers 503 (a primary that is out)."""
    return (503, {}, {"error": {"message": "down", "type": "server_error"}}) if body.get("model") == "down" else None


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(latency_s=0.02, scenario=_down, retry_after_s=0.0) as up:
        yield up


def gateway(upstream: FakeUpstream, extra: str = "") -> str:
    """`paid` ($1000/M both ways), `flaky` (always down, unpriced unless `extra` prices it) falling back to
    `paid`, and a priced embedder."""
    return f"""
[endpoints.paid]
model = "openai:fake-gpt"
base_url = "{upstream.base_url}"
cache = false
max_retries = 0
max_concurrency = 64
price_input_per_1m = 1000
price_output_per_1m = 1000

[endpoints.flaky]
model = "openai:down"
base_url = "{upstream.base_url}"
cache = false
max_retries = 1
max_concurrency = 64
fallbacks = ["paid"]
{extra}

[endpoints.emb]
model = "openai:fake-embed"
base_url = "{upstream.base_url}"
cache = false
max_retries = 0
price_input_per_1m = 1000
"""


def prompt(i: int, fail: bool = False) -> ChatRequest:
    # 40 characters in = 10 prompt tokens; "echo: " + 40 = 11 answer tokens: $0.021 at $1000/M, and the
    # reservation (10 prompt tokens estimated + max_tokens 11) is exactly that.
    text = (f"[fail:503] row {i:04d} " if fail else f"row {i:04d} ").ljust(40, "x")
    return ChatRequest.from_prompt(text, max_tokens=11)


async def flood(model: Any, n: int = 64, fail: bool = False, caller: Caller | None = None) -> list[Any]:
    who = caller or Caller()
    return list(
        await asyncio.gather(*(model.complete(prompt(i, fail), caller=who) for i in range(n)), return_exceptions=True)
    )


def settle(outcomes: list[Any]) -> tuple[int, int]:
    served = sum(isinstance(o, ChatResult) for o in outcomes)
    refused = sum(isinstance(o, BudgetExceededError) for o in outcomes)
    assert served + refused == len(outcomes), [o for o in outcomes if not isinstance(o, ChatResult | Exception)]
    return served, refused


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


async def test_endpoint_budget_holds_at_64_way_concurrency(ws: Workspace, upstream: FakeUpstream) -> None:
    ws = write_config(ws, gateway(upstream) + f"[[budgets]]\nendpoint = 'paid'\nlimit_usd = {LIMIT}\n")
    served, refused = settle(await flood(ws.registry.get("paid")))
    spent = ws.store.spent_usd(since=0, endpoint="paid")
    assert served == 16 and refused == 48  # 16 x 0.021 = 0.336 fits, a 17th would not
    assert spent == pytest.approx(16 * 0.021) and spent <= LIMIT
    await ws.aclose()


async def test_a_query_cap_holds_through_an_unpriced_failing_primary(ws: Workspace, upstream: FakeUpstream) -> None:
    """The first wave spent 4x a query's --max-cost here: the cap was priced at the (free) primary."""
    ws = write_config(ws, gateway(upstream))
    cap = Caller(query="q", budgets=(CallerBudget("query:q", LIMIT, "job"),))
    served, refused = settle(await flood(ws.registry.get("flaky"), caller=cap))
    assert served == 16 and refused == 48
    spent = ws.store.spent_usd(since=0, endpoint="paid")
    assert spent == pytest.approx(16 * 0.021) and spent <= LIMIT
    assert ws.store.spent_usd(since=0, endpoint="flaky") == 0.0
    await ws.aclose()


async def test_a_key_budget_holds_through_an_unpriced_failing_primary(ws: Workspace, upstream: FakeUpstream) -> None:
    """The first wave spent 3x a key's budget here (64 clients)."""
    ws = write_config(ws, gateway(upstream))
    key = Caller(key="team", budgets=(CallerBudget("key:team", LIMIT, "day"),))
    outcomes = await flood(ws.registry.get("flaky"), caller=key)
    served, _ = settle(outcomes)
    assert served == 16 and all(isinstance(o, ChatResult | KeyBudgetExceededError) for o in outcomes)
    spent = ws.store.spent_usd(since=0, key="team")
    assert spent == pytest.approx(16 * 0.021) and spent <= LIMIT
    await ws.aclose()


async def test_a_refusal_at_a_budgeted_primary_falls_through_to_the_fallback(
    ws: Workspace, upstream: FakeUpstream
) -> None:
    """The first wave refused 171 of 200 rows at a failing primary's budget while it had spent nothing."""
    config = gateway(upstream, "price_input_per_1m = 1000\n")
    ws = write_config(ws, config + "[[budgets]]\nendpoint = 'flaky'\nlimit_usd = 0.001\n")
    outcomes = await flood(ws.registry.get("flaky"), n=20)
    assert all(isinstance(o, ChatResult) for o in outcomes)  # the primary refused, `paid` served every row
    assert {r.endpoint for r in ws.store.usage() if r.status == "ok"} == {"paid"}
    assert upstream.scenario is _down
    await ws.aclose()


async def test_embeddings_are_budgeted(ws: Workspace, upstream: FakeUpstream) -> None:
    """The first wave embedded 10 of 10 rows past a $0.035 budget."""
    ws = write_config(ws, gateway(upstream) + "[[budgets]]\nendpoint = 'emb'\nlimit_usd = 0.035\n")
    model = ws.registry.get("emb")
    texts = ["forty characters of text to embed, xxxxx"]  # 10 tokens: $0.01 a call
    outcomes = await asyncio.gather(*(model.embed(texts) for _ in range(10)), return_exceptions=True)
    served = sum(not isinstance(o, Exception) for o in outcomes)
    assert served == 3 and all(isinstance(o, BudgetExceededError) for o in outcomes if isinstance(o, Exception))
    assert ws.store.spent_usd(since=0, endpoint="emb") == pytest.approx(0.03)
    await ws.aclose()


async def test_streams_are_budgeted_and_charged_the_reported_usage(ws: Workspace, upstream: FakeUpstream) -> None:
    ws = write_config(ws, gateway(upstream) + f"[[budgets]]\nendpoint = 'paid'\nlimit_usd = {LIMIT}\n")
    model = ws.registry.get("paid")

    async def one(i: int) -> str:
        return "".join([p async for p in model.stream(prompt(i))])

    outcomes = await asyncio.gather(*(one(i) for i in range(64)), return_exceptions=True)
    served = [o for o in outcomes if isinstance(o, str)]
    assert len(served) == 16 and all(o.startswith("echo: row") for o in served)
    records = [r for r in ws.store.usage() if r.status == "ok"]
    assert all((r.input_tokens, r.output_tokens, r.tokens_estimated) == (10, 11, False) for r in records)
    assert ws.store.spent_usd(since=0, endpoint="paid") <= LIMIT
    await ws.aclose()


async def test_an_upstream_that_ignores_stream_is_read_not_left_empty(ws: Workspace, upstream: FakeUpstream) -> None:
    ws = write_config(ws, gateway(upstream))
    text = "".join([p async for p in ws.registry.get("paid").stream(ChatRequest.from_prompt("[nostream] hi there"))])
    assert text == "echo: [nostream] hi there"
    [record] = ws.store.usage()
    assert record.status == "ok" and record.output_tokens > 0 and not record.tokens_estimated
    await ws.aclose()


# -- several processes sharing one store -----------------------------------------------------------------


def _worker(path: str, base_url: str, results: Any) -> None:
    async def run() -> int:
        ws = Workspace(path)
        outcomes = await flood(ws.registry.get("paid"), n=16)
        await ws.aclose()
        return sum(isinstance(o, ChatResult) for o in outcomes)

    results.put(asyncio.run(run()))


def in_four_processes(ws: Workspace, upstream: FakeUpstream) -> int:
    """16 concurrent calls to `paid` from each of 4 processes on one workspace; how many were served."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(ws.path), upstream.base_url, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return sum(results.get(timeout=5) for _ in procs)


def test_four_processes_share_one_budget(ws: Workspace, upstream: FakeUpstream) -> None:
    ws = write_config(ws, gateway(upstream) + f"[[budgets]]\nendpoint = 'paid'\nlimit_usd = {LIMIT}\n")
    served = in_four_processes(ws, upstream)
    spent = ws.store.spent_usd(since=0, endpoint="paid")
    assert served == 16 and spent <= LIMIT  # 64 calls from 4 processes, one limit


# -- bad numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [10**400, -1, 0, 2**40])
def test_out_of_range_max_tokens_is_refused_before_anything(max_tokens: int) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ChatRequest.from_prompt("hi", max_tokens=max_tokens)


def test_usage_zero_from_upstream_is_estimated_not_free() -> None:
    from brickyard.models.budget import effective_usage
    from brickyard.models.calls import ChatCall

    result = ChatResult(text="an answer of some length", model="m", usage=Usage())
    usage = effective_usage(ChatCall(ChatRequest.from_prompt("a prompt")), result)
    assert usage.estimated and usage.input_tokens > 0 and usage.output_tokens > 0


# -- the same attacks against the PostgreSQL store (several hosts share it) --------------------------------


async def test_a_key_budget_holds_through_a_fallback_on_postgresql(
    ws: Workspace, upstream: FakeUpstream, postgres_url: str
) -> None:
    ws = write_config(ws, gateway(upstream) + f'[store]\nurl = "{postgres_url}"\n')
    assert type(ws.store).__name__ == "PostgresStore"
    key = Caller(key="team", budgets=(CallerBudget("key:team", LIMIT, "day"),))
    served, refused = settle(await flood(ws.registry.get("flaky"), caller=key))
    assert served == 16 and refused == 48
    spent = ws.store.spent_usd(since=0, key="team")
    assert spent == pytest.approx(16 * 0.021) and spent <= LIMIT
    await ws.aclose()


def test_four_processes_share_one_budget_on_postgresql(
    ws: Workspace, upstream: FakeUpstream, postgres_url: str
) -> None:
    ws = write_config(
        ws,
        gateway(upstream) + f'[[budgets]]\nendpoint = "paid"\nlimit_usd = {LIMIT}\n[store]\nurl = "{postgres_url}"\n',
    )
    served = in_four_processes(ws, upstream)
    spent = ws.store.spent_usd(since=0, endpoint="paid")
    assert served == 16 and spent <= LIMIT
    ws.store.close()


# -- through SQL (DuckDB): a query's --max-cost and endpoint budgets on 64 rows at once ------------------


def test_sql_max_cost_holds_through_an_unpriced_failing_primary(ws: Workspace, upstream: FakeUpstream) -> None:
    """`brickyard sql --max-cost 0.34` spent 1.36 USD here in the first wave."""
    from brickyard.sql.duckdb import connect

    ws = write_config(ws, gateway(upstream).replace("[endpoints.flaky]\n", "[endpoints.flaky]\nmax_tokens = 11\n"))
    with connect(ws, database=":memory:", max_cost_usd=LIMIT) as con:
        con.execute(
            "CREATE TABLE t AS SELECT 'row ' || lpad(range::VARCHAR, 4, '0') || ' ' || repeat('x', 31) AS txt"
            " FROM range(64)"
        )
        rows = con.execute("SELECT ai_query('flaky', txt, failOnError => false) AS r FROM t").fetchall()
    served = sum(1 for (r,) in rows if r["result"] is not None)
    assert len(rows) == 64 and served == 16  # every row is there: 16 answers, 48 per-row errors
    assert all("cost cap" in r["errorMessage"] for (r,) in rows if r["result"] is None)
    spent = Workspace(ws.path).store.spent_usd(since=0, endpoint="paid")
    assert spent == pytest.approx(16 * 0.021) and spent <= LIMIT


def test_sql_ai_embed_respects_an_endpoint_budget(ws: Workspace, upstream: FakeUpstream) -> None:
    """10 of 10 rows were embedded past a 0.035 USD budget in the first wave."""
    from brickyard.sql.duckdb import connect

    ws = write_config(ws, gateway(upstream) + "[[budgets]]\nendpoint = 'emb'\nlimit_usd = 0.035\n")
    with connect(ws, database=":memory:") as con:
        con.execute("CREATE TABLE t AS SELECT 'text ' || range || ' ' || repeat('x', 30) AS txt FROM range(10)")
        with pytest.raises(Exception, match="budget for endpoint emb"):
            con.execute("SELECT ai_embed(txt, endpoint := 'emb') FROM t").fetchall()
    assert Workspace(ws.path).store.spent_usd(since=0, endpoint="emb") <= 0.035
