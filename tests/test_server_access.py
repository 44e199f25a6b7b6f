"""Who may call what, how fast and for how much: keys, scopes, rpm/tpm, budgets, and the error shapes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from conftest import InFlight, make_key

from brickyard import ChatRequest, ChatResult, FunctionModel, Usage, UserError, Workspace
from brickyard.config import EndpointConfig, Window
from brickyard.server.auth import Authenticator
from brickyard.server.keys import KEYS_NAME, KeyStore
from brickyard.server.runner import check_exposure

Serve = Callable[[Any], Any]
PRICE = EndpointConfig(model="x:paid", price_input_per_1m=1000.0, price_output_per_1m=1000.0, cache=False)
"""1 token = 0.001 USD, so budgets are small round numbers."""


def exact(inp: int = 10, out: int = 10, delay_s: float = 0.0, text: str = "ok") -> FunctionModel:
    """A model whose usage (and so cost) is exact: (inp + out) tokens = (inp + out) / 1000 USD."""

    async def fn(request: ChatRequest) -> ChatResult:
        if delay_s:
            await asyncio.sleep(delay_s)
        return ChatResult(text=text, model="function:exact", usage=Usage(inp, out))

    return FunctionModel(fn, name="function:exact", max_concurrency=100)


def post(server: Any, key: str | None, body: dict[str, Any], path: str = "/v1/chat/completions") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + path, json=body, headers=headers, timeout=30)


def chat(model: str = "det", text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def assert_error(response: httpx.Response, status: int, code: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"]
    return dict(error)


def test_missing_wrong_and_revoked_keys_get_401(server_workspace: Workspace, serve: Serve) -> None:
    key = make_key(server_workspace, "team-a")
    server = serve(server_workspace)
    missing = post(server, None, chat())
    assert_error(missing, 401, "missing_api_key")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(post(server, key + "x", chat()), 401, "invalid_api_key")
    assert post(server, key, chat()).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="bky-nope", max_retries=0).models.list()
    store = KeyStore(server_workspace.path / KEYS_NAME)
    store.revoke("team-a")
    store.close()
    deadline = time.monotonic() + 3.0
    while post(server, key, chat()).status_code == 200:  # the server caches a verified key for about 1 s
        assert time.monotonic() < deadline, "a revoked key was still accepted after 3 s"
        time.sleep(0.1)
    error = assert_error(post(server, key, chat()), 401, "revoked_api_key")
    assert key not in error["message"]


def test_scopes_cover_endpoints_aliases_and_agents(server_workspace: Workspace, serve: Serve) -> None:
    key = make_key(server_workspace, "narrow", ("det",))
    server = serve(server_workspace)
    assert post(server, key, chat("det")).status_code == 200
    assert post(server, key, chat("fast")).status_code == 200  # alias of det
    error = assert_error(post(server, key, chat("emb")), 403, "model_not_allowed")
    assert "narrow" in error["message"] and error["param"] == "model"
    assert_error(post(server, key, chat("agent:any")), 403, "model_not_allowed")
    assert_error(post(server, key, {"model": "emb", "input": "x"}, "/v1/embeddings"), 403, "model_not_allowed")
    assert_error(post(server, key, {"query": "SELECT 1"}, "/api/sql"), 403, "sql_not_allowed")
    wide = make_key(server_workspace, "wide")
    assert_error(post(server, wide, chat("gtp-5")), 404, "model_not_found")
    raw = assert_error(post(server, wide, chat("function:os:getcwd")), 404, "model_not_found")
    assert "model ids" in raw["message"]  # raw provider ids are never served


def test_rpm_limit_gives_429_with_retry_after(server_workspace: Workspace, serve: Serve) -> None:
    key = make_key(server_workspace, "slow", rpm=3)
    server = serve(server_workspace)
    statuses = [post(server, key, chat()).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    refused = post(server, key, chat())
    error = assert_error(refused, 429, "rate_limit_exceeded")
    assert error["type"] == "rate_limit_error" and "3 requests per minute" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 20  # one request refills in 60/3 = 20 s
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="det", messages=[{"role": "user", "content": "x"}]
        )
    assert [r.status for r in server_workspace.store.usage(key="slow")] == ["ok"] * 3  # refused calls never ran


def test_tpm_counts_real_tokens(server_workspace: Workspace, serve: Serve) -> None:
    server_workspace.registry.register("paid", exact(inp=40, out=40), PRICE)
    key = make_key(server_workspace, "tokens", tpm=100)
    server = serve(server_workspace)
    assert post(server, key, chat("paid")).status_code == 200  # 80 of 100 tokens used
    second = post(server, key, chat("paid", "hi", max_tokens=50))  # needs 51 tokens, 20 are left
    error = assert_error(second, 429, "rate_limit_exceeded")
    assert "100 tokens per minute" in error["message"] and int(second.headers["retry-after"]) >= 1


def test_budget_refuses_clearly_and_says_when_it_resets(server_workspace: Workspace, serve: Serve) -> None:
    # "hello" is 2 prompt tokens; with max_tokens=10 a call reserves and costs exactly 0.012 USD
    server_workspace.registry.register("paid", exact(inp=2, out=10), PRICE)
    key = make_key(server_workspace, "capped", budget=(0.05, Window.day))
    server = serve(server_workspace)
    statuses = [post(server, key, chat("paid", max_tokens=10)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    refused = post(server, key, chat("paid", max_tokens=10))
    error = assert_error(refused, 429, "budget_exceeded")
    assert error["type"] == "insufficient_quota" and "capped" in error["message"] and "day" in error["message"]
    assert refused.headers["x-should-retry"] == "false"
    assert 1 <= int(refused.headers["retry-after"]) <= 86400
    spent = server_workspace.store.spent_usd(since=0, key="capped")
    assert spent == pytest.approx(0.048) and spent <= 0.05  # never over
    # Without max_tokens the call would reserve a whole context of output: refused, and the message says why.
    unbounded = assert_error(post(server, key, chat("paid")), 429, "budget_exceeded")
    assert "set max_tokens" in unbounded["message"]


@pytest.mark.parametrize("max_tokens", [10, None])
def test_parallel_requests_overshoot_a_budget_by_at_most_what_was_in_flight(
    server_workspace: Workspace, serve: Serve, max_tokens: int | None
) -> None:
    """40 requests at once against a 0.11 USD budget, 0.02 USD each (10+10 tokens), each taking 0.2 s.

    With `max_tokens` the reservation (prompt + max_tokens) is the call's cost, so no call may start that
    could pass the budget: 5 run. Without it a whole context of output is reserved, which this budget never
    admits: every call is refused, and nothing is spent.
    """
    body = InFlight(delay_s=0.2, answer="ok")

    async def fn(request: ChatRequest) -> ChatResult:
        await body(request)
        return ChatResult(text="ok", model="function:exact", usage=Usage(10, 10))

    server_workspace.registry.register("paid", FunctionModel(fn, max_concurrency=100), PRICE)
    key = make_key(server_workspace, "shared", budget=(0.11, Window.month))
    server = serve(server_workspace)
    extra = {"max_tokens": max_tokens} if max_tokens else {}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as http:
            replies = await asyncio.gather(
                *(
                    http.post("/v1/chat/completions", json=chat("paid", "x" * 40, **extra), timeout=30)
                    for _ in range(40)
                )
            )
        return [r.status_code for r in replies]

    statuses = asyncio.run(burst())
    ok = statuses.count(200)
    assert statuses.count(429) == 40 - ok
    spent = server_workspace.store.spent_usd(since=0, key="shared")
    assert spent == pytest.approx(0.02 * ok)
    if max_tokens:
        assert spent <= 0.11 and ok == 5
    else:
        assert spent == 0.0 and ok == 0
    if max_tokens:
        assert post(server, key, chat("paid", "x" * 40, max_tokens=10)).status_code == 429  # nothing more fits


def test_open_server_only_without_keys_and_only_on_loopback(server_workspace: Workspace, serve: Serve) -> None:
    server = serve(server_workspace)
    assert post(server, None, chat()).status_code == 200  # no keys yet: open, loopback only
    check_exposure(server_workspace.path, "127.0.0.1")
    with pytest.raises(UserError, match="no API keys"):
        check_exposure(server_workspace.path, "0.0.0.0")
    store = KeyStore(server_workspace.path / KEYS_NAME)
    auth = Authenticator(store)
    with pytest.raises(Exception, match="loopback") as refused:
        auth.authenticate(None, "10.0.0.7")
    assert getattr(refused.value, "status", None) == 401
    store.create("first", ("*",))
    store.revoke("first")  # revoking every key never reopens the server
    store.close()
    time.sleep(1.1)
    assert_error(post(server, None, chat()), 401, "missing_api_key")
    check_exposure(server_workspace.path, "0.0.0.0")  # keys exist: a network bind is allowed


def test_bad_input_gets_openai_error_shapes(server_workspace: Workspace, serve: Serve) -> None:
    key = make_key(server_workspace, "team-a")
    server = serve(server_workspace)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    broken = httpx.post(server.url + "/v1/chat/completions", content=b'{"model": "det", "mess', headers=headers)
    assert_error(broken, 400, "invalid_json")
    typed = assert_error(post(server, key, {"model": "det", "messages": "hi"}), 400, "invalid_value")
    assert typed["param"] == "messages"
    assert assert_error(post(server, key, {"messages": []}), 400, "invalid_value")["param"] == "model"
    role = assert_error(post(server, key, {"model": "det", "messages": [{"content": "x"}]}), 400, "invalid_value")
    assert role["param"] == "messages.0.role"
    empty = assert_error(post(server, key, chat("det", "   ")), 400, "invalid_value")
    assert "empty" in empty["message"]
    huge = "x" * 1_100_000
    assert_error(post(server, key, chat("det", huge)), 413, "request_too_large")
    chunked = httpx.post(
        server.url + "/v1/chat/completions",
        content=iter([b'{"model": "det", "x": "', b"y" * 1_100_000]),
        headers=headers,
    )
    assert_error(chunked, 413, "request_too_large")
    assert_error(httpx.get(server.url + "/v2/nothing"), 404, "not_found")
    assert httpx.get(server.url + "/v1/chat/completions").status_code == 405
    assert_error(post(server, key, {"model": "emb", "input": [1, 2, 3]}, "/v1/embeddings"), 400, "invalid_value")
    assert_error(
        post(server, key, {"model": "emb", "input": "x", "dimensions": 4}, "/v1/embeddings"),
        400,
        "unsupported_parameter",
    )
