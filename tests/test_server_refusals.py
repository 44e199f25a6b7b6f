"""Refusals and hostile numbers over HTTP: every budget refusal says when to retry (or not to), numbers out of
range are 400s naming the field, and an upstream that ignores `stream: true` is read, never an empty success."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import SERVER_CONFIG, make_key
from typer.testing import CliRunner

from brickyard import Workspace
from brickyard.cli import app
from brickyard.testing.upstream import FakeUpstream

Serve = Callable[[Any], Any]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def workspace(tmp_path: Path, upstream: FakeUpstream, budgets: str = "") -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(
        SERVER_CONFIG
        + f"""
[endpoints.up]
model = "openai:fake-gpt"
base_url = "{upstream.base_url}"
cache = false
max_retries = 0
price_input_per_1m = 1000
price_output_per_1m = 1000
max_tokens = 11
{budgets}""",
        encoding="utf-8",
    )
    return Workspace(ws.path)


def post(server: Any, key: str, body: dict[str, Any] | bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if isinstance(body, bytes):
        return httpx.post(server.url + "/v1/chat/completions", content=body, headers=headers, timeout=30)
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def chat(text: str = "x" * 40, **extra: Any) -> dict[str, Any]:
    return {"model": "up", "messages": [{"role": "user", "content": text}], **extra}


@pytest.mark.parametrize(
    "budget",
    [
        "[[budgets]]\nendpoint = 'up'\nlimit_usd = 0.05\nwindow = 'day'\n",
        "[[budgets]]\ntag = 'ops'\nlimit_usd = 0.05\n",
    ],
    ids=["endpoint", "tag"],
)
def test_endpoint_and_tag_refusals_carry_retry_after_and_no_retry(
    tmp_path: Path, upstream: FakeUpstream, serve: Serve, budget: str
) -> None:
    ws = workspace(tmp_path, upstream, budget)
    key = make_key(ws, "team")
    server = serve(ws)
    statuses = [post(server, key, chat(tag="ops")).status_code for _ in range(3)]  # 0.021 each: two fit
    assert statuses == [200, 200, 429]
    refused = post(server, key, chat(tag="ops"))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.headers["x-should-retry"] == "false"
    assert 1 <= int(refused.headers["retry-after"]) <= 31 * 86400
    assert ws.store.spent_usd(since=0) <= 0.05


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"model":"up","messages":[{"role":"user","content":"hi"}],"max_tokens":1e400}', "max_tokens"),
        (b'{"model":"up","messages":[{"role":"user","content":"hi"}],"max_tokens":-5}', "max_tokens"),
        (b'{"model":"up","messages":[{"role":"user","content":"hi"}],"max_tokens":2.5}', "max_tokens"),
        (b'{"model":"up","messages":[{"role":"user","content":"hi"}],"max_tokens":99999999999}', "max_tokens"),
        (
            b'{"model":"up","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":1e400}',
            "max_completion_tokens",
        ),
        (b'{"model":"up","messages":[{"role":"user","content":"hi"}],"seed":1e400}', "seed"),
        (b'{"model":"up","messages":[{"role":"user","content":"hi"}],"temperature":1e400}', "temperature"),
    ],
)
def test_numbers_out_of_range_are_400s_naming_the_field(
    tmp_path: Path, upstream: FakeUpstream, serve: Serve, raw: bytes, field: str
) -> None:
    ws = workspace(tmp_path, upstream)
    key = make_key(ws, "team")
    server = serve(ws)
    reply = post(server, key, raw)
    assert reply.status_code == 400, reply.text
    assert field in reply.json()["error"]["message"] and reply.json()["error"]["param"] == field
    assert upstream.requests == 0


def test_an_upstream_that_ignores_stream_is_relayed_with_its_text_and_usage(
    tmp_path: Path, upstream: FakeUpstream, serve: Serve
) -> None:
    ws = workspace(tmp_path, upstream)
    key = make_key(ws, "team")
    server = serve(ws)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key)
    chunks = list(
        client.chat.completions.create(
            model="up",
            messages=[{"role": "user", "content": "[nostream] say something"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: [nostream] say something"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[0].completion_tokens > 0
    [record] = ws.store.usage(key="team")
    assert record.status == "ok" and record.output_tokens > 0 and not record.tokens_estimated


def test_ask_prints_the_answer_of_an_upstream_that_ignores_stream(tmp_path: Path, upstream: FakeUpstream) -> None:
    ws = workspace(tmp_path, upstream)
    done = CliRunner().invoke(app, ["ask", "[nostream] hello", "-m", "up", "--workspace", str(ws.path)])
    assert done.exit_code == 0, done.output
    assert "echo: [nostream] hello" in done.stdout
    [record] = Workspace(ws.path).store.usage()
    assert json.loads(json.dumps(record.extra)) == {"kind": "stream"} and record.output_tokens > 0


def test_embeddings_over_http_are_budgeted(tmp_path: Path, upstream: FakeUpstream, serve: Serve) -> None:
    """The first wave answered 20 of 20 `POST /v1/embeddings` past a 0.035 USD budget."""
    ws = workspace(tmp_path, upstream)
    ws.config_path.write_text(
        ws.config_path.read_text()
        + f"""
[endpoints.emb-paid]
model = "openai:fake-embed"
base_url = "{upstream.base_url}"
cache = false
max_retries = 0
price_input_per_1m = 1000

[[budgets]]
endpoint = "emb-paid"
limit_usd = 0.035
""",
        encoding="utf-8",
    )
    ws = Workspace(ws.path)
    key = make_key(ws, "team")
    server = serve(ws)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "emb-paid", "input": ["forty characters of text to embed, xxxxx"]}  # 10 tokens: 0.01 USD
    statuses = [
        httpx.post(server.url + "/v1/embeddings", json=body, headers=headers, timeout=30).status_code for _ in range(20)
    ]
    assert statuses == [200] * 3 + [429] * 17
    assert ws.store.spent_usd(since=0, endpoint="emb-paid") == pytest.approx(0.03)
