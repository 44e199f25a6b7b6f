"""The server's hot path: `POST /v1/chat/completions` and `/v1/embeddings` skip FastAPI's routing and middleware.

The same requests (good ones, and each kind of bad one) are sent to two apps over the same workspace: one
with the hot path, one forced through the full FastAPI stack (an app with a middleware never takes the hot
path). Statuses, error bodies and the headers a client reads must be the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_key
from starlette.types import ASGIApp, Receive, Scope, Send

from brickyard import FunctionModel, Workspace
from brickyard.models._types import ChatRequest
from brickyard.server.app import HOT_ROUTES, GatewayApp, create_app

Call = tuple[str, dict[str, str], bytes]


class Counting:
    """A pass-through ASGI middleware that counts the requests it sees."""

    seen = 0

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            Counting.seen += 1
        await self.app(scope, receive, send)


def _broken(request: ChatRequest) -> str:
    raise RuntimeError("a bug in the model")


def _app(ws: Workspace, *, full_stack: bool) -> GatewayApp:
    app = create_app(ws)
    assert isinstance(app, GatewayApp)
    ws.registry.register("broken", FunctionModel(_broken))
    if full_stack:
        app.add_middleware(Counting)
    return app


async def _send(app: GatewayApp, calls: list[Call]) -> list[tuple[int, dict[str, str], Any]]:
    out = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1"
    ) as client:
        for path, headers, body in calls:
            response = await client.post(path, headers=headers, content=body)
            data = response.json()
            for volatile in ("id", "created"):
                data.pop(volatile, None)
            for volatile in ("cached", "cost_usd"):  # the second app's call is answered from the cache
                data.get("brickyard", {}).pop(volatile, None)
            kept = {k: v for k, v in response.headers.items() if k in ("content-type", "www-authenticate")}
            kept |= {k: v for k, v in response.headers.items() if k.startswith(("x-brickyard", "retry-after"))}
            out.append((response.status_code, kept, data))
    return out


@pytest.fixture
def ws(server_workspace: Workspace) -> Workspace:
    return server_workspace


async def test_hot_routes_answer_exactly_as_the_full_stack_does(ws: Workspace, tmp_path: Path) -> None:
    key = make_key(ws, "team", scopes=("det", "emb", "broken"))
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def chat(**body: Any) -> bytes:
        return json.dumps({"messages": [{"role": "user", "content": "hello"}], **body}).encode()

    calls: list[Call] = [
        ("/v1/chat/completions", auth, chat(model="det", max_tokens=5, user="u1")),
        ("/v1/chat/completions", auth, chat(model="det", stream=True, stream_options={"include_usage": True})),
        ("/v1/embeddings", auth, json.dumps({"model": "emb", "input": ["a", "b"]}).encode()),
        ("/v1/chat/completions", {}, chat(model="det")),  # no key: 401
        ("/v1/chat/completions", auth, b"{not json"),  # 400 invalid_json
        ("/v1/chat/completions", auth, chat(model="nope")),  # 403 out of scope
        ("/v1/chat/completions", auth, chat(model="det", temperature="hot")),  # 400 wrong type
        ("/v1/chat/completions", auth, chat(model="det", n=3)),  # 400 unsupported
        ("/v1/chat/completions", auth, b"x" * (ws.settings.server.max_request_bytes + 1)),  # 413
        ("/v1/chat/completions", auth, chat(model="broken")),  # 500, no detail
        ("/v1/embeddings", auth, json.dumps({"model": "emb", "input": []}).encode()),  # 400
    ]
    streamed = calls.pop(1)
    hot, full = _app(ws, full_stack=False), _app(ws, full_stack=True)
    Counting.seen = 0
    hot_answers = await _send(hot, calls)
    assert Counting.seen == 0
    full_answers = await _send(full, calls)
    assert Counting.seen == len(calls), "the app with a middleware took the full stack"
    for call, a, b in zip(calls, hot_answers, full_answers, strict=True):
        assert a == b, call
    statuses = [status for status, _, _ in hot_answers]
    assert statuses == [200, 200, 401, 400, 403, 400, 400, 413, 500, 400]
    assert hot_answers[0][1]["x-brickyard-dropped-params"] == "user"
    assert hot_answers[8][2]["error"]["message"] == "internal server error (logged on the server)"

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hot), base_url="http://127.0.0.1") as client:
        response = await client.post(streamed[0], headers=streamed[1], content=streamed[2])
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.rstrip().endswith("data: [DONE]")


def test_hot_routes_are_the_openai_post_routes(ws: Workspace) -> None:
    app = create_app(ws)
    assert isinstance(app, GatewayApp)
    assert set(app.hot_routes or {}) == set(HOT_ROUTES)
    paths = app.openapi()["paths"]
    assert all("post" in paths[route] for route in HOT_ROUTES), "still documented in the OpenAPI document"
