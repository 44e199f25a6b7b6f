"""Operations: usage and SQL APIs, health, timeouts, a client leaving mid-stream, payload logs, guardrails."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SERVER_CONFIG, make_key

from brickyard import ChatRequest, ChatResult, FunctionModel, Model, Usage, Workspace
from brickyard.config import EndpointConfig, Window
from brickyard.sql.duckdb import connect

Serve = Callable[[Any], Any]


def post(server: Any, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def get(server: Any, secret: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params, headers={"Authorization": f"Bearer {secret}"}, timeout=60)


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def workspace_with(tmp_path: Path, extra_toml: str) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.config_path.write_text(SERVER_CONFIG + extra_toml, encoding="utf-8")
    return Workspace(workspace.path)


def test_usage_api_filters_and_keeps_keys_apart(server_workspace: Workspace, serve: Serve) -> None:
    a, b = make_key(server_workspace, "a"), make_key(server_workspace, "b")
    admin = make_key(server_workspace, "ops", admin=True)
    server = serve(server_workspace)
    before = time.time()
    assert post(server, a, "/v1/chat/completions", chat("det", "one", tag="red")).status_code == 200
    assert post(server, a, "/v1/embeddings", {"model": "emb", "input": "two"}).status_code == 200
    assert post(server, b, "/v1/chat/completions", chat("fast", "three")).status_code == 200
    everything = get(server, admin, "/api/usage", group_by="key,endpoint").json()["summary"]
    assert {(r["key"], r["endpoint"], r["calls"]) for r in everything} == {
        ("a", "det", 1),
        ("a", "emb", 1),
        ("b", "det", 1),
    }
    own = get(server, a, "/api/usage", group_by="key").json()
    assert own["filters"]["key"] == "a" and [r["calls"] for r in own["summary"]] == [2]
    assert get(server, a, "/api/usage", key="b").status_code == 403
    red = get(server, admin, "/api/usage", tag="red", records="true").json()
    assert [(r["key"], r["tag"], r["endpoint"]) for r in red["records"]] == [("a", "red", "det")]
    later = get(server, admin, "/api/usage", since=str(time.time() + 60)).json()
    assert later["summary"] == []
    window = get(server, admin, "/api/usage", since=str(before - 1), until="2999-01-01T00:00:00", endpoint="emb").json()
    assert [r["calls"] for r in window["summary"]] == [1]
    assert get(server, admin, "/api/usage", since="yesterday").status_code == 400
    assert get(server, admin, "/api/usage", group_by="colour").status_code == 400
    assert get(server, admin, "/api/usage", limit="0").status_code == 400


def test_health_readiness_and_openapi(server_workspace: Workspace, serve: Serve) -> None:
    server = serve(server_workspace)
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["open"] is True
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/api/sql", "/api/usage"} <= set(spec["paths"])
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionBody"}
    assert "messages" in spec["components"]["schemas"]["ChatCompletionBody"]["required"]


def test_sql_api_runs_ai_functions_read_only(tmp_path: Path, serve: Serve) -> None:
    ws = workspace_with(tmp_path, "\n[server]\nsql_row_limit = 2\nsql_timeout_s = 0.5\n")
    with connect(ws) as con:
        con.execute("CREATE TABLE reviews AS SELECT * FROM (VALUES ('a lovely film'), ('dull'), ('fine')) t(body)")
    key = make_key(ws, "analyst", ("det",), sql=True)
    server = serve(ws)
    query = "SELECT body, ai_classify(body, ARRAY['good', 'bad']) AS label FROM reviews ORDER BY body"
    result = post(server, key, "/api/sql", {"query": query}).json()
    assert result["columns"] == ["body", "label"] and result["truncated"] is True and result["row_count"] == 2
    assert [r[0] for r in result["rows"]] == ["a lovely film", "dull"]
    assert all(label in ("good", "bad") for _, label in result["rows"])
    assert {r.key for r in ws.store.usage(endpoint="det")} == {"analyst"}  # the AI calls are the key's
    for bad, word in (
        ("DELETE FROM reviews", "DELETE"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("SELECT * FROM nowhere", "nowhere"),
    ):
        refused = post(server, key, "/api/sql", {"query": bad})
        assert refused.status_code == 400 and word in refused.json()["error"]["message"], refused.text
    slow = post(
        server, key, "/api/sql", {"query": "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"}
    )
    assert slow.status_code == 504 and "0.5 s" in slow.json()["error"]["message"]
    import duckdb

    writer = duckdb.connect(str(ws.path / "warehouse.duckdb"))  # someone holds the warehouse for writing
    try:
        busy = post(server, key, "/api/sql", {"query": "SELECT 1"})
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "warehouse_busy"
        assert busy.headers["retry-after"] == "1"
    finally:
        writer.close()
    assert post(server, key, "/api/sql", {"query": "SELECT 42 AS answer"}).json()["rows"] == [[42]]


PAID = """
[endpoints.paid]
model = "function:brickyard.testing.deterministic:answer"
price_input_per_1m = 1000.0
price_output_per_1m = 1000.0
cache = false
max_tokens = 16
"""


def test_sql_api_charges_failed_queries_and_serves_no_raw_model_ids(tmp_path: Path, serve: Serve) -> None:
    ws = workspace_with(tmp_path, PAID)
    with connect(ws) as con:
        con.execute("CREATE TABLE t AS SELECT 'review number ' || range AS body FROM range(40)")
    key = make_key(ws, "analyst", ("*",), sql=True, budget=(0.05, Window.day))
    server = serve(ws)
    for _ in range(4):  # each query runs into the key's remaining budget and fails at the cap
        capped = post(server, key, "/api/sql", {"query": "SELECT ai_query('paid', body) FROM t"})
        assert capped.status_code in (400, 429), capped.text
    spent = sum(r.cost_usd for r in ws.store.usage(key="analyst"))
    one_call = max(r.cost_usd for r in ws.store.usage(key="analyst"))
    assert 0 < spent <= 0.05 + 4 * one_call  # the failed queries were charged: the budget binds
    for raw in ("function:builtins:repr", "fake:x", "openai:gpt-5"):
        refused = post(server, key, "/api/sql", {"query": f"SELECT ai_query('{raw}', body) FROM t LIMIT 1"})
        assert refused.status_code == 400 and "not an endpoint of this server" in refused.text, refused.text


def test_a_slow_call_times_out_with_504(tmp_path: Path, serve: Serve) -> None:
    ws = workspace_with(tmp_path, "\n[server]\nrequest_timeout_s = 0.3\n")

    async def slow(request: ChatRequest) -> str:
        await asyncio.sleep(5)
        return "late"

    ws.registry.register("slow", FunctionModel(slow), EndpointConfig(model="x:slow", cache=False))
    key = make_key(ws, "team-a")
    server = serve(ws)
    started = time.monotonic()
    reply = post(server, key, "/v1/chat/completions", chat("slow", "hi"))
    assert reply.status_code == 504 and reply.json()["error"]["type"] == "timeout_error"
    assert time.monotonic() - started < 3
    streamed = post(server, key, "/v1/chat/completions", chat("slow", "hi", stream=True))
    assert streamed.status_code == 504


class Dribble(Model):
    """Streams 100 pieces, one every 50 ms; records when its stream is closed and how far it got."""

    name = "test:dribble"

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.produced = 0

    async def _complete(self, request: ChatRequest) -> ChatResult:
        return ChatResult(text="whole", model=self.name, usage=Usage(1, 1))

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str]:
        try:
            for i in range(100):
                self.produced = i + 1
                yield f"piece{i} "
                await asyncio.sleep(0.05)
        finally:
            self.closed.set()


def test_a_client_leaving_mid_stream_cancels_the_upstream_and_is_charged(
    server_workspace: Workspace, serve: Serve
) -> None:
    dribble = Dribble()
    server_workspace.registry.register("dribble", dribble, EndpointConfig(model="x:dribble", cache=False))
    key = make_key(server_workspace, "team-a")
    server = serve(server_workspace)
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST",
            server.url + "/v1/chat/completions",
            json=chat("dribble", "go", stream=True),
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]  # three events and their blank lines
    assert sum(line.startswith("data:") for line in received) == 3
    assert dribble.closed.wait(3), "the upstream stream was not closed when the client left"
    assert dribble.produced < 20
    deadline = time.monotonic() + 3
    while not server_workspace.store.usage(key="team-a"):
        assert time.monotonic() < deadline, "no usage record for the cancelled stream"
        time.sleep(0.05)
    (record,) = server_workspace.store.usage(key="team-a")
    assert record.status == "cancelled" and record.output_tokens > 0 and record.endpoint == "dribble"


def test_payload_logs_name_the_key_never_the_secret(server_workspace: Workspace, serve: Serve) -> None:
    key = make_key(server_workspace, "team-a")
    server = serve(server_workspace)
    assert post(server, key, "/v1/chat/completions", chat("det", "log me")).status_code == 200
    server.stop()  # flush everything
    text = "".join(p.read_text() for p in server_workspace.payloads_dir.glob("*.jsonl"))
    assert "log me" in text and '"team-a"' in text
    assert key not in text and key[4:20] not in text and "authorization" not in text.lower()


def test_guardrails_block_pii_through_the_server(tmp_path: Path, serve: Serve) -> None:
    ws = workspace_with(
        tmp_path,
        """
[endpoints.guarded]
model = "function:brickyard.testing.deterministic:answer"
cache = false
[endpoints.guarded.guardrails]
input_pii = "block"
""",
    )
    key = make_key(ws, "team-a")
    server = serve(ws)
    blocked = post(server, key, "/v1/chat/completions", chat("guarded", "mail me at jane.doe@example.com"))
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_blocked"
    assert "jane.doe@example.com" not in blocked.text
    assert post(server, key, "/v1/chat/completions", chat("guarded", "no personal data")).status_code == 200


@pytest.mark.local_model
def test_one_real_local_model_streams_through_the_server(
    workspace: Workspace, serve: Serve, smollm2_path: Path
) -> None:
    """The bundled SmolLM2 behind the server (no assertion on wording)."""
    pytest.importorskip("xllamacpp")
    key = make_key(workspace, "team-a", ("smollm2",))
    server = serve(workspace)
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    assert [r.key for r in workspace.store.usage(endpoint="smollm2")] == ["team-a"]


def test_serve_demo_calls_an_endpoint_and_an_agent_and_prints_usage(server_workspace: Workspace) -> None:
    import io

    from rich.console import Console

    from brickyard.agents.runner import Agents
    from brickyard.agents.spec import AgentKind, AgentSpec
    from brickyard.server.demo import serve_demo
    from brickyard.server.keys import KEYS_NAME, KeyStore

    agents = Agents(server_workspace)
    agents.create(AgentSpec(name="sentiment", kind=AgentKind.classify, labels=["good", "bad"]))
    agents.close()
    buffer = io.StringIO()
    serve_demo(server_workspace.path, Console(file=buffer, width=160), agent_input="What a lovely film")
    text = buffer.getvalue()
    assert "echo: Name one colour" in text and "agent:sentiment" in text and "GET /api/usage" in text
    assert "own words" not in text  # the caption is for the bundled small models' raw chat only
    assert "server stopped" in text
    store = KeyStore(server_workspace.path / KEYS_NAME)
    (key,) = store.listing()
    store.close()
    assert key.name.startswith("demo-") and not key.active  # the demo key is revoked afterwards
    assert {r.key for r in server_workspace.store.usage()} == {key.name}


def test_the_demo_says_a_bundled_models_raw_chat_is_not_what_the_functions_rely_on() -> None:
    from brickyard.server.demo import raw_answer_caption

    caption = raw_answer_caption("local:smollm2-135m")
    assert caption is not None and "smollm2-135m's own words" in caption and "[defaults] chat" in caption
    assert raw_answer_caption("echo") is None and raw_answer_caption("openai:gpt-5-mini") is None
