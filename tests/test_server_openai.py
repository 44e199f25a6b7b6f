"""`brickyard serve` with the official openai SDK as the client: endpoints, streams, tools, JSON, embeddings, agents.

Each test runs the real server (uvicorn on 127.0.0.1, a free port) over a workspace whose endpoints are test
doubles (exact answers), a FakeUpstream reached over real HTTP, or a real local embedder.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import SERVER_CONFIG, make_key

from brickyard import ChatRequest, ChatResult, FunctionModel, Usage, Workspace
from brickyard.agents.runner import Agents
from brickyard.agents.spec import AgentKind, AgentSpec
from brickyard.config import EndpointConfig
from brickyard.knowledge.base import KnowledgeBase
from brickyard.models.local import LocalEmbedder
from brickyard.models.testing import FakeModel
from brickyard.testing.upstream import FakeUpstream

Serve = Callable[[Any], Any]


@pytest.fixture
def upstream() -> Any:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def ws(tmp_path: Path, upstream: FakeUpstream) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.config_path.write_text(
        SERVER_CONFIG
        + f"""
[endpoints.up]
model = "openai:fake-gpt"
base_url = "{upstream.base_url}"
max_retries = 0
cache = false
price_input_per_1m = 1.0
price_output_per_1m = 1.0

[endpoints.flaky]
model = "openai:fake-gpt"
base_url = "{upstream.base_url}"
max_retries = 0
cache = false
fallbacks = ["det"]
""",
        encoding="utf-8",
    )
    return Workspace(workspace.path)


@pytest.fixture
def server(ws: Workspace, serve: Serve) -> Any:
    return serve(ws)


def client(server: Any, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_sync_chat_through_an_alias_charges_the_key(ws: Workspace, server: Any) -> None:
    key = make_key(ws, "team-a")
    reply = client(server, key).chat.completions.create(model="fast", messages=ask("hello brave new world"))
    assert reply.choices[0].message.content == "echo: hello brave new world"
    assert reply.model == "fast" and reply.choices[0].finish_reason == "stop"
    extra = reply.model_extra["brickyard"]  # type: ignore[index]
    assert extra["endpoint"] == "det" and extra["served_model"].startswith("function:")
    assert reply.usage is not None and reply.usage.total_tokens > 0
    # price: 1 USD per 1M input, 2 USD per 1M output
    expected = (reply.usage.prompt_tokens * 1.0 + reply.usage.completion_tokens * 2.0) / 1e6
    assert extra["cost_usd"] == pytest.approx(expected)
    (record,) = ws.store.usage(key="team-a")
    assert (record.endpoint, record.status) == ("det", "ok")
    assert record.cost_usd == pytest.approx(expected)


def test_sync_stream_ends_with_a_usage_chunk(ws: Workspace, server: Any) -> None:
    key = make_key(ws, "team-a")
    chunks = list(
        client(server, key).chat.completions.create(
            model="det", messages=ask("stream me please"), stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me please"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [r.key for r in ws.store.usage(endpoint="det")] == ["team-a"]


async def test_async_sdk_against_a_real_http_upstream(ws: Workspace, server: Any, upstream: FakeUpstream) -> None:
    key = make_key(ws, "team-a")
    aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    whole, stream = await asyncio.gather(
        aclient.chat.completions.create(model="up", messages=ask("one"), max_tokens=20, temperature=0.1),
        aclient.chat.completions.create(model="up", messages=ask("two"), stream=True),
    )
    assert whole.choices[0].message.content == "echo: one"
    assert whole.usage is not None and not whole.model_extra["brickyard"]["tokens_estimated"]  # type: ignore[index]
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == "echo: two"
    sent = {b["messages"][-1]["content"]: b for b in upstream.received_bodies}
    assert sent["one"]["max_tokens"] == 20 and sent["one"]["temperature"] == 0.1
    assert all(h.get("authorization", "").endswith("not-needed") for h in upstream.received_headers)  # never our key
    await aclient.close()


def test_json_schema_response_format_and_json_object(ws: Workspace, server: Any) -> None:
    key = make_key(ws, "team-a")
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}
    reply = client(server, key).chat.completions.create(
        model="det",
        messages=ask("Paris is lovely"),
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    assert json.loads(reply.choices[0].message.content or "") == {"city": "Paris", "n": len("Paris is lovely")}
    loose = client(server, key).chat.completions.create(
        model="det", messages=ask("x y"), response_format={"type": "json_object"}
    )
    assert json.loads(loose.choices[0].message.content or "") == {}


def test_tools_are_passed_through_and_tool_calls_come_back(ws: Workspace, server: Any) -> None:
    seen: list[ChatRequest] = []
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}

    def fn(request: ChatRequest) -> ChatResult:
        seen.append(request)
        return ChatResult(
            text="", model="function:tools", usage=Usage(5, 3), finish_reason="tool_calls", tool_calls=[call]
        )

    ws.registry.register(
        "tooly", FunctionModel(fn, name="function:tools"), EndpointConfig(model="x:tooly", cache=False)
    )
    key = make_key(ws, "team-a")
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    reply = client(server, key).chat.completions.create(
        model="tooly",
        messages=ask("weather in Oslo?"),
        tools=tools,
        tool_choice="auto",  # type: ignore[arg-type]
    )
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls" and message.tool_calls is not None
    assert message.tool_calls[0].function.name == "weather"  # type: ignore[union-attr]
    assert seen[0].tools == tools and seen[0].tool_choice == "auto"
    streamed = list(
        client(server, key).chat.completions.create(model="tooly", messages=ask("again"), tools=tools, stream=True)  # type: ignore[arg-type]
    )
    deltas = [c.choices[0].delta for c in streamed if c.choices]
    assert any(d.tool_calls and d.tool_calls[0].function.name == "weather" for d in deltas)  # type: ignore[union-attr]


def test_unsupported_parameters_are_passed_dropped_or_rejected(ws: Workspace, server: Any) -> None:
    seen: list[ChatRequest] = []
    ws.registry.register(
        "rec", FunctionModel(lambda r: seen.append(r) or "ok", name="function:rec"), EndpointConfig(model="x:rec")
    )
    key = make_key(ws, "team-a")
    raw = httpx.post(
        server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "rec", "messages": ask("hi"), "top_p": 0.5, "grammar": "root ::= x", "user": "u1", "n": 1},
    )
    assert raw.status_code == 200, raw.text
    assert raw.headers["x-brickyard-dropped-params"] == "user,n"
    assert seen[0].extra == {"top_p": 0.5, "grammar": "root ::= x"}
    for body, param in (
        ({"n": 3}, "n"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ):
        bad = httpx.post(
            server.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "rec", "messages": ask("hi"), **body},
        )
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["param"] == param and bad.json()["error"]["code"] == "unsupported_parameter"


def test_fallback_serves_and_the_key_pays_the_model_that_served(ws: Workspace, server: Any) -> None:
    key = make_key(ws, "team-a")
    reply = client(server, key).chat.completions.create(model="flaky", messages=ask("[fail:503] hi"))
    assert reply.model_extra["brickyard"]["endpoint"] == "det"  # type: ignore[index]
    records = ws.store.usage(key="team-a")
    assert [(r.endpoint, r.status) for r in records] == [("flaky", "error"), ("det", "ok")]
    assert records[1].cost_usd == pytest.approx(reply.model_extra["brickyard"]["cost_usd"])  # type: ignore[index]


def test_embeddings_float_and_base64(ws: Workspace, server: Any) -> None:
    key = make_key(ws, "team-a")
    expected = asyncio.run(FakeModel(name="fake:emb").embed(["red apple", "green pear"])).vectors
    sdk = client(server, key).embeddings.create(model="emb", input=["red apple", "green pear"])  # base64 on the wire
    for got, want in zip([d.embedding for d in sdk.data], expected, strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    plain = httpx.post(
        server.url + "/v1/embeddings",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "emb", "input": "red apple", "encoding_format": "float"},
    ).json()
    assert plain["data"][0]["embedding"] == pytest.approx(expected[0]) and plain["usage"]["prompt_tokens"] > 0
    assert [r.key for r in ws.store.usage(endpoint="emb")] == ["team-a", "team-a"]
    with pytest.raises(openai.NotFoundError, match="no agent `nobody`"):
        client(server, key).embeddings.create(model="agent:nobody", input="x")


def test_models_lists_only_what_the_key_may_use(ws: Workspace, server: Any) -> None:
    Agents(ws).create(AgentSpec(name="sentiment", kind=AgentKind.classify, labels=["good", "bad"]))
    everything = {m.id for m in client(server, make_key(ws, "all")).models.list()}
    assert {"det", "emb", "fast", "up", "agent:sentiment"} <= everything
    narrow = {m.id for m in client(server, make_key(ws, "narrow", ("det", "agent:sentiment"))).models.list()}
    assert narrow == {"det", "fast", "agent:sentiment"}  # an alias of an allowed endpoint is allowed
    assert client(server, make_key(ws, "one", ("fast",))).models.retrieve("fast").id == "fast"


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def test_agents_by_chat_completions_and_invocations(ws: Workspace, server: Any, embedder: LocalEmbedder) -> None:
    docs = ws.path.parent / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text("# Refunds\n\nRefunds are paid within 14 days of the return.\n")
    (docs / "shipping.md").write_text("# Shipping\n\nParcels ship from Rotterdam every weekday.\n")
    ws.registry.register("e5-small", embedder)
    with KnowledgeBase(ws, "docs", embedding="e5-small") as kb:
        kb.ingest(str(docs))
    ws.registry.register(
        "writer", FunctionModel(lambda r: "Refunds are paid within 14 days [1].", name="function:writer")
    )
    agents = Agents(ws)
    agents.create(AgentSpec(name="kb", kind=AgentKind.knowledge, knowledge_base="docs", endpoint="writer", top_k=2))
    agents.create(AgentSpec(name="sentiment", kind=AgentKind.classify, labels=["good", "bad"]))
    key = make_key(ws, "team-a", ("agent:kb", "agent:sentiment"))

    reply = client(server, key).chat.completions.create(model="agent:kb", messages=ask("How long do refunds take?"))
    message = reply.choices[0].message
    assert message.content == "Refunds are paid within 14 days [1]."
    citations = message.model_extra["citations"]  # type: ignore[index]
    assert [c["number"] for c in citations] == [1] and citations[0]["source_path"].endswith("refunds.md")
    streamed = list(
        client(server, key).chat.completions.create(
            model="agent:kb", messages=ask("How long do refunds take?"), stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == message.content
    assert streamed[-1].choices[0].delta.model_extra["citations"] == citations  # type: ignore[index]

    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    invoked = http.post("/api/agents/kb/invocations", json={"input": "How long do refunds take?"}).json()
    assert invoked["messages"][0]["content"] == message.content
    assert invoked["output"][0]["content"][0]["text"] == message.content
    assert invoked["custom_outputs"]["citations"] == citations and invoked["custom_outputs"]["version"] == 1
    label = http.post(
        "/api/agents/sentiment/invocations", json={"messages": [{"role": "user", "content": "What a lovely film"}]}
    ).json()
    assert label["custom_outputs"]["result"] in ("good", "bad")
    assert label["messages"][0]["content"] == label["custom_outputs"]["result"]
    # the agents' model calls are charged to the key that invoked them
    assert {r.endpoint for r in ws.store.usage(key="team-a")} >= {"writer", "det"}
    missing = http.post("/api/agents/nope/invocations", json={"input": "x"})
    assert missing.status_code == 403  # out of this key's scopes before it is looked up
    assert http.post("/api/agents/kb/invocations", json={"input": "x", "messages": []}).status_code == 400
    with pytest.raises(openai.BadRequestError, match="cannot call tools"):
        client(server, key).chat.completions.create(
            model="agent:kb",
            messages=ask("x"),
            tools=[{"type": "function", "function": {"name": "f"}}],  # type: ignore[list-item]
        )


def test_upstream_failures_map_to_statuses(ws: Workspace, server: Any) -> None:
    key = make_key(ws, "team-a")
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    # (marker, status, code, also as a stream: a stream failing before its first piece gets the status too)
    cases = [
        ("[fail:500] x", 502, "upstream_error", True),
        ("[fail:429] x", 429, "upstream_rate_limited", True),
        ("[fail:400] x", 400, "invalid_value", True),
        ("[fail:401] x", 502, "upstream_error", True),  # the gateway's own upstream key: not the caller's fault
        ("[ctx] x", 400, "context_length_exceeded", True),
        ("[badjson] x", 502, "malformed_response", False),  # streamed, the SDK sees no events: an empty answer
    ]
    for text, status, code, streams in cases:
        for stream in (False, True) if streams else (False,):
            reply = http.post("/v1/chat/completions", json={"model": "up", "messages": ask(text), "stream": stream})
            assert reply.headers["content-type"] == "application/json", (text, stream, reply.text)
            assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), (text, stream, reply.text)
    limited = http.post("/v1/chat/completions", json={"model": "up", "messages": ask("[fail:429] x")})
    assert float(limited.headers["retry-after-ms"]) > 0
    assert "sk-te" not in http.post("/v1/chat/completions", json={"model": "up", "messages": ask("[fail:401] x")}).text
