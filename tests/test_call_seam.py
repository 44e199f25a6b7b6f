"""The one call seam: every wrapper's behaviour applies to chat, stream and embed alike.

Each test drives one behaviour through all three call kinds (the `KIND` parameter) and asserts the same
effect, so a wrapper that forgot a kind fails here. The structural test checks that no model class can
override the per-kind entry points (the way the first wave's `BudgetedModel` silently lacked `embed`).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import write_config

import brickyard
from brickyard import FakeModel, Workspace
from brickyard._errors import (
    BudgetExceededError,
    CallerRateLimitedError,
    CostCapError,
    GuardrailError,
    ServerError,
)
from brickyard.config import EndpointConfig
from brickyard.models._types import ChatRequest
from brickyard.models.base import Model, WrapperModel
from brickyard.models.budget import CostCap
from brickyard.models.calls import Caller, CallerBudget, CallerRate
from brickyard.models.limits import LimitedModel
from brickyard.models.routing import FallbackModel, SplitModel

KINDS = ["chat", "stream", "embed"]
PRICED = EndpointConfig(model="x:m", price_input_per_1m=1000.0, price_output_per_1m=1000.0, max_tokens=8)


def call(model: Model, kind: str, text: str = "hello there", caller: Caller | None = None) -> Awaitable[Any]:
    """One call of `kind` through `model`, read to the end; returns text (chat, stream) or vectors (embed)."""
    who = caller or Caller()

    async def run() -> Any:
        if kind == "chat":
            return (await model.complete(ChatRequest.from_prompt(text, max_tokens=8), caller=who)).text
        if kind == "stream":
            return "".join([p async for p in model.stream(ChatRequest.from_prompt(text, max_tokens=8), caller=who)])
        return (await model.embed([text], caller=who)).vectors

    return run()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


# -- structure ------------------------------------------------------------------------------------------


def _model_classes() -> list[type[Model]]:
    for info in pkgutil.walk_packages(brickyard.__path__, "brickyard."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed
            continue
    seen: list[type[Model]] = []
    todo = [Model]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen and sub.__module__.startswith("brickyard."):
                seen.append(sub)
                todo.append(sub)
    return seen


def test_no_model_class_overrides_the_per_kind_entry_points() -> None:
    classes = _model_classes()
    assert len(classes) >= 20  # the wrappers and providers were found
    for cls in classes:
        for name in ("complete", "stream", "open_stream", "embed"):
            assert name not in cls.__dict__, f"{cls.__name__}.{name} bypasses the seam"
    wrappers = [c for c in classes if issubclass(c, WrapperModel)]
    assert all("handle" in c.__dict__ or c.handle is not WrapperModel.handle for c in wrappers)


def test_a_class_that_overrides_an_entry_point_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="implement `handle"):

        class Sneaky(WrapperModel):
            async def embed(self, texts: list[str], **kw: Any) -> Any:  # type: ignore[override]
                return await self.inner.embed(texts)


def test_capabilities_are_one_frozen_object() -> None:
    model = LimitedModel(FakeModel())
    caps = model.capabilities
    assert caps == FakeModel().capabilities and caps.embeddings and caps.json_schema
    with pytest.raises(AttributeError):
        caps.chat = False  # type: ignore[misc]


# -- behaviours × kinds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_metering_records_every_kind(ws: Workspace, kind: str) -> None:
    model = ws.registry.register("ep", FakeModel(["an answer"]), PRICED)
    await call(model, kind, caller=Caller(key="team-a", tag="t", query="q1"))
    [record] = ws.store.usage()
    assert (record.endpoint, record.status, record.key, record.tag) == ("ep", "ok", "team-a", "t")
    assert record.extra == {"kind": kind, "query": "q1"}
    assert record.input_tokens > 0 and record.cost_usd > 0


@pytest.mark.parametrize("kind", KINDS)
async def test_an_endpoint_budget_refuses_every_kind(ws: Workspace, kind: str) -> None:
    ws = write_config(
        ws,
        "[endpoints.ep]\nmodel = 'x:m'\nprice_input_per_1m = 1000\nmax_tokens = 8\n"
        "[[budgets]]\nendpoint = 'ep'\nlimit_usd = 0.0001\n",
    )
    inner = FakeModel(["an answer"])
    model = ws.registry.register("ep", inner, ws.settings.endpoints["ep"])
    with pytest.raises(BudgetExceededError, match="endpoint ep"):  # one token in is $0.001
        await call(model, kind, "hi")
    assert inner._turn == 0
    assert [r.status for r in ws.store.usage()] == ["budget_exceeded"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_job_cap_refuses_every_kind_and_counts_what_each_cost(ws: Workspace, kind: str) -> None:
    inner = FakeModel(["an answer"])
    model = ws.registry.register("ep", inner, PRICED)
    cap = CostCap(0.05, kind="sweep")
    capped = cap.bind(model, ws.store)
    await call(capped, kind, "one two three four")  # about $0.004-$0.013
    assert 0 < cap.spent_usd <= 0.05
    with pytest.raises(CostCapError):
        for i in range(20):
            await call(capped, kind, f"call number {i} " * 20)
    assert cap.reached and cap.spent_usd <= 0.05


@pytest.mark.parametrize("kind", KINDS)
async def test_a_key_budget_brought_by_the_caller_refuses_every_kind(ws: Workspace, kind: str) -> None:
    model = ws.registry.register("ep", FakeModel(["an answer"]), PRICED)
    key = Caller(key="k", budgets=(CallerBudget("key:k", 0.02, "day"),))
    spent = 0
    with pytest.raises(BudgetExceededError, match="key k") as refused:
        for i in range(50):
            await call(model, kind, f"question {i}", caller=key)
            spent += 1
    assert spent >= 1 and refused.value.retry_after is not None
    assert ws.store.spent_usd(since=0, key="k") <= 0.02


@pytest.mark.parametrize("kind", KINDS)
async def test_a_caller_rate_refuses_every_kind(ws: Workspace, kind: str) -> None:
    model = ws.registry.register("ep", FakeModel(["an answer"]), PRICED)
    key = Caller(key="k", rate=CallerRate("key:k", rpm=3))
    for i in range(3):
        await call(model, kind, f"q{i}", caller=key)
    with pytest.raises(CallerRateLimitedError) as refused:
        await call(model, kind, "one too many", caller=key)
    assert 0 < refused.value.retry_after <= 20


@pytest.mark.parametrize("kind", KINDS)
async def test_the_cache_serves_every_kind(ws: Workspace, kind: str) -> None:
    inner = FakeModel(["an answer"])
    model = ws.registry.register("ep", inner, PRICED)
    first = await call(model, kind, "same question")
    second = await call(model, kind, "same question")
    assert first == second
    assert len(inner.calls) + len(inner.embed_calls) == 1
    costs = [r.cost_usd for r in ws.store.usage()]
    assert costs[0] > 0 and costs[1] == 0.0 and ws.store.usage()[1].cache_hit


@pytest.mark.parametrize("kind", KINDS)
async def test_retries_and_fallbacks_apply_to_every_kind(ws: Workspace, kind: str) -> None:
    down = ServerError("down", status=503, retry_after=0.0)
    backup = FakeModel(["from backup"])
    ws.registry.register("backup", backup, EndpointConfig(model="x:b", max_retries=0, cache=False))
    primary = FakeModel([down, down, "recovered"], cycle=False)
    config = EndpointConfig(model="x:p", max_retries=1, fallbacks=["backup"], cache=False)
    model = ws.registry.register("primary", primary, config)
    answer = await call(model, kind)  # two failures: one retry, then the fallback answers
    assert answer == "from backup" if kind != "embed" else len(answer) == 1
    assert (primary._turn, backup._turn) == (2, 1)
    assert [(r.endpoint, r.status) for r in ws.store.usage()] == [("primary", "error"), ("backup", "ok")]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_budget_refusal_falls_through_to_the_fallback(ws: Workspace, kind: str) -> None:
    ws = write_config(
        ws,
        "[endpoints.backup]\nmodel = 'x:b'\ncache = false\n"
        "[endpoints.primary]\nmodel = 'x:p'\nfallbacks = ['backup']\nprice_input_per_1m = 1\ncache = false\n"
        "max_tokens = 8\n[[budgets]]\nendpoint = 'primary'\nlimit_usd = 1e-9\n",
    )
    backup = FakeModel(["from backup"])
    ws.registry.register("backup", backup, ws.settings.endpoints["backup"])
    primary = FakeModel(["from primary"])
    model = ws.registry.register("primary", primary, ws.settings.endpoints["primary"])
    await call(model, kind)
    assert (primary._turn, backup._turn) == (0, 1)


@pytest.mark.parametrize("kind", KINDS)
async def test_guardrails_mask_the_input_of_every_kind(ws: Workspace, kind: str) -> None:
    from brickyard.config import GuardrailsConfig, PiiAction

    inner = FakeModel(["fine"])
    guarded = EndpointConfig(model="x:g", cache=False, guardrails=GuardrailsConfig(input_pii=PiiAction.mask))
    model = ws.registry.register("g", inner, guarded)
    await call(model, kind, "write to jane.doe@example.com")
    sent = inner.calls[0].prompt_text() if kind != "embed" else inner.embed_calls[0][0]
    assert "jane.doe@example.com" not in sent and "[EMAIL]" in sent
    blocking = EndpointConfig(model="x:g2", cache=False, guardrails=GuardrailsConfig(blocked_keywords=["secret"]))
    model2 = ws.registry.register("g2", FakeModel(["fine"]), blocking)
    with pytest.raises(GuardrailError):
        await call(model2, kind, "tell me the secret")


@pytest.mark.parametrize("kind", KINDS)
async def test_payload_logs_cover_every_kind(tmp_path: Path, kind: str) -> None:
    import json

    ws = Workspace.init(tmp_path / "ws")
    model = ws.registry.register("ep", FakeModel(["an answer"]), EndpointConfig(model="x:m", cache=False))
    await call(model, kind, caller=Caller(key="team-a"))
    ws.payloads.close()  # type: ignore[union-attr]
    lines = [json.loads(x) for p in ws.payloads_dir.iterdir() for x in p.read_text().splitlines()]
    assert [(r["kind"], r["key"], r["status"]) for r in lines] == [(kind, "team-a", "ok")]


@pytest.mark.parametrize("kind", KINDS)
async def test_the_concurrency_cap_holds_for_every_kind(kind: str) -> None:
    inner = FakeModel(["ok"], delay_s=0.02)
    peak = 0
    in_flight = 0
    original: Callable[..., Any] = inner.handle

    async def counting(c: Any) -> Any:
        nonlocal peak, in_flight
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            reply = await original(c)
            if kind == "stream":
                await asyncio.sleep(0.01)  # the stream is still open after `handle` returned
            return reply
        finally:
            in_flight -= 1

    inner.handle = counting  # type: ignore[method-assign]
    model = LimitedModel(inner, max_concurrency=2)
    await asyncio.gather(*(call(model, kind, f"q{i}") for i in range(8)))
    assert peak == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_split_and_caller_stamp_route_every_kind(ws: Workspace, kind: str) -> None:
    a, b = FakeModel(["a"]), FakeModel(["b"])
    model = SplitModel([(1.0, a), (1.0, b)], name="ab", seed=3)
    await asyncio.gather(*(call(model, kind, f"q{i}") for i in range(20)))
    assert a._turn > 0 and b._turn > 0 and a._turn + b._turn == 20
    only = FallbackModel([FakeModel([ServerError("x", status=500)]), FakeModel(["ok"])])
    assert await call(only, kind) is not None


def test_every_entry_point_is_async() -> None:
    for name in ("complete", "open_stream", "embed", "handle"):
        assert inspect.iscoroutinefunction(getattr(Model, name))
