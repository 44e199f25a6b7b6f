"""`brickyard serve` as a real process: several workers sharing limits, budgets and usage; graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import SERVER_CONFIG, make_key

from brickyard import Workspace
from brickyard.config import Window
from brickyard.testing.upstream import FakeUpstream

BRICKYARD = str(Path(sys.executable).parent / "brickyard")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def brickyard_serve(workspace: Workspace, workers: int, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [BRICKYARD, "serve", "--port", str(port), "--workers", str(workers), "--workspace", str(workspace.path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(latency_s=0.3) as up:
        yield up


def workspace_for(tmp_path: Path, upstream: FakeUpstream) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.config_path.write_text(
        SERVER_CONFIG
        + f"""
[endpoints.up]
model = "openai:fake-gpt"
base_url = "{upstream.base_url}"
cache = false
max_retries = 0
price_input_per_1m = 1000
price_output_per_1m = 1000
""",
        encoding="utf-8",
    )
    return Workspace(workspace.path)


async def burst(url: str, key: str, n: int, text: str, **extra: object) -> list[int]:
    """`n` requests at once, each on its own connection (so both workers take some)."""

    async def one() -> int:
        async with httpx.AsyncClient(timeout=60) as http:
            reply = await http.post(
                url + "/v1/chat/completions",
                json={"model": "up", "messages": [{"role": "user", "content": text}], **extra},
                headers={"Authorization": f"Bearer {key}"},
            )
            return reply.status_code

    return list(await asyncio.gather(*(one() for _ in range(n))))


def test_two_workers_share_rate_limits_budgets_and_usage(tmp_path: Path, upstream: FakeUpstream) -> None:
    ws = workspace_for(tmp_path, upstream)
    limited = make_key(ws, "limited", ("up",), rpm=10)
    # FakeUpstream counts len(text) // 4 tokens: 40 characters in, "echo: " + 40 out = 10 + 11 tokens = 0.021 USD,
    # and the estimate (10 prompt tokens + max_tokens 11) is exactly that.
    budgeted = make_key(ws, "budgeted", ("up",), budget=(0.1, Window.month))
    with brickyard_serve(ws, 2, tmp_path / "serve.log") as (proc, url):
        pids = set()
        for _ in range(60):
            pids.add(httpx.get(url + "/readyz", timeout=5).json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, "both workers should answer"

        statuses = asyncio.run(burst(url, limited, 16, "hello"))
        assert sorted(statuses) == [200] * 10 + [429] * 6  # one rpm limit, shared by both workers

        statuses = asyncio.run(burst(url, budgeted, 24, "x" * 40, max_tokens=11))
        ok = statuses.count(200)
        # reservations are shared by both workers through the store: 4 x 0.021 fit in 0.1, a fifth never starts
        assert ok == 4 and statuses.count(429) == 20
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    records = ws.store.usage()
    assert sum(r.key == "limited" for r in records) == 10
    assert sum(r.key == "budgeted" and r.status == "ok" for r in records) == ok
    assert sum(r.key == "budgeted" and r.status == "budget_exceeded" for r in records) == 20  # refusals are recorded
    spent = ws.store.spent_usd(since=0, key="budgeted")
    assert spent == pytest.approx(0.021 * ok) and spent <= 0.1
    assert upstream.completed == 10 + ok  # every call the upstream served is in the ledger


def test_four_workers_hold_a_key_budget_through_a_priced_fallback_for_64_clients(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """The first wave spent 3x a key's budget here: an unpriced primary that fails, a priced fallback, 64 clients."""
    ws = workspace_for(tmp_path, upstream)
    ws.config_path.write_text(
        ws.config_path.read_text()
        + f"""
[endpoints.down]
model = "openai:fake-down"
base_url = "{upstream.base_url}"
cache = false
max_retries = 0
fallbacks = ["up"]
""",
        encoding="utf-8",
    )
    upstream.scenario = lambda body: (
        (503, {}, {"error": {"message": "down", "type": "server_error"}}) if body.get("model") == "fake-down" else None
    )
    key = make_key(ws, "team", ("down",), budget=(0.34, Window.day))
    with brickyard_serve(ws, 4, tmp_path / "serve.log") as (proc, url):

        async def flood() -> list[int]:
            async def one() -> int:
                async with httpx.AsyncClient(timeout=60) as http:
                    reply = await http.post(
                        url + "/v1/chat/completions",
                        json={"model": "down", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 11},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    if reply.status_code == 429:
                        assert reply.headers["x-should-retry"] == "false" and "retry-after" in reply.headers
                    return reply.status_code

            return list(await asyncio.gather(*(one() for _ in range(64))))

        statuses = asyncio.run(flood())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    # 0.021 a call at the fallback's price: 16 fit in 0.34, and no worker lets a 17th start
    assert statuses.count(200) == 16 and statuses.count(429) == 48
    spent = ws.store.spent_usd(since=0, key="team")
    assert spent == pytest.approx(16 * 0.021) and spent <= 0.34
    assert {r.endpoint for r in ws.store.usage(key="team") if r.status == "ok"} == {"up"}


def test_graceful_shutdown_finishes_in_flight_requests_and_flushes_usage(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    ws = workspace_for(tmp_path, upstream)
    key = make_key(ws, "team-a", ("up",))
    with brickyard_serve(ws, 1, tmp_path / "serve.log") as (proc, url):
        results: list[int] = []

        def slow_call() -> None:
            reply = httpx.post(
                url + "/v1/chat/completions",
                json={"model": "up", "messages": [{"role": "user", "content": "[slow:1.5] finish me"}]},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            results.append(reply.status_code)

        caller = threading.Thread(target=slow_call)
        caller.start()
        deadline = time.monotonic() + 10
        while upstream.in_flight == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        caller.join(30)
        assert results == [200]
        assert proc.wait(30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/healthz", timeout=2)
    (record,) = ws.store.usage(key="team-a")
    assert record.status == "ok" and record.endpoint == "up"
    assert "error" not in (tmp_path / "serve.log").read_text().lower()


def test_serve_refuses_an_open_network_bind(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    done = subprocess.run(
        [BRICKYARD, "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--workspace", str(ws.path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 1 and "no API keys" in done.stderr and "keys create" in done.stderr
