"""Provider batch APIs against the fake upstream: 10,000 rows through OpenAI's Batch API and Anthropic's Message
Batches (official SDKs, real HTTP on 127.0.0.1), a crash between "provider accepted" and "recorded" then a resume,
an expiry with the rest sent directly, and the same rows sent interactively for the cost and time comparison.

Rows sent are counted by the upstream itself (`FakeUpstream.batches.sent`, per custom_id); costs are read from
the usage ledger. Endpoint prices: $1.25 in / $10 out per million tokens (batch: half, the default).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.common import fresh_workspace, save
from brickyard.batch import run_batch
from brickyard.batch_api import BatchJobs
from brickyard.models._types import ChatRequest
from brickyard.testing.upstream import FakeUpstream
from brickyard.workspace import Workspace

ROWS = 10_000
CHUNK = 2_500
FAIL_EVERY = 100  # 1% of rows carry `[fail:400]`: per-row errors the provider reports


ENV = {"BENCH_FAKE_ANTHROPIC_KEY": "sk-ant-bench-not-a-real-key"}


class _Crash(Exception):
    pass


def _workspace(up: FakeUpstream) -> Workspace:
    return Workspace(fresh_workspace(_config(up)).path, env=ENV)


def _config(up: FakeUpstream) -> str:
    return (
        f'[endpoints.gpt]\nmodel = "openai:fake-gpt"\nbase_url = "{up.base_url}"\ncache = false\n'
        'price_input_per_1m = 1.25\nprice_output_per_1m = 10.0\noptions = { batch_api = "openai" }\n'
        f'\n[endpoints.claude]\nmodel = "anthropic:claude-fake"\nbase_url = "http://127.0.0.1:{up.port}"\n'
        'api_key_env = "BENCH_FAKE_ANTHROPIC_KEY"\ncache = false\n'
        "price_input_per_1m = 1.25\nprice_output_per_1m = 10.0\n"
    )


def _rows() -> list[str]:
    return [f"review {i}: the film was " + ("[fail:400]" if i % FAIL_EVERY == 7 else "fine") for i in range(ROWS)]


def _lost(jobs: BatchJobs, job: str) -> int:
    """Rows with neither an answer nor an error."""
    return sum(1 for r in jobs.results(job) if r.state not in ("ok", "error"))


def _ledger(ws: Workspace) -> dict[str, Any]:
    records = ws.store.usage()
    batch = [r for r in records if r.extra.get("batch")]
    direct = [r for r in records if not r.extra.get("batch")]
    return {
        "batch_records": len(batch),
        "batch_usd": sum(r.cost_usd for r in batch),
        "direct_records": len(direct),
        "direct_usd": sum(r.cost_usd for r in direct),
    }


async def _batch_run(up: FakeUpstream, endpoint: str, *, crash_at: int | None = None) -> dict[str, Any]:
    """One job of ROWS rows; with `crash_at`, the runner dies after the provider accepted that chunk."""
    up.batches.sent.clear()
    up.batches.created.clear()
    ws = _workspace(up)
    crashed = False

    def hook(event: str, details: dict[str, Any]) -> None:
        if event == "after_create" and details["chunk"] == crash_at:
            raise _Crash

    started = time.perf_counter()
    jobs = BatchJobs(ws, poll_s=0.05, hook=hook)
    job = await jobs.submit(endpoint, _rows(), chunk_size=CHUNK)
    try:
        status = await jobs.run(job)
    except _Crash:
        crashed = True
        await ws.aclose()
        ws = Workspace(ws.path, env=ENV)  # a restart: the state is read back from the workspace
        jobs = BatchJobs(ws, poll_s=0.05)
        status = await jobs.run(job)
    seconds = time.perf_counter() - started
    ledger = _ledger(ws)
    figures = {
        "endpoint": endpoint,
        "rows": ROWS,
        "crashed_and_resumed": crashed,
        "status": status.status,
        "ok": status.counts["ok"],
        "errors": status.counts["error"],
        "rows_lost": _lost(jobs, job),
        "rows_sent_twice": sum(1 for n in up.batches.sent.values() if n > 1),
        "rows_sent": len(up.batches.sent),
        "provider_batches": len(up.batches.created),
        "batch_usd": status.batch_cost_usd,
        "interactive_usd_same_tokens": status.interactive_cost_usd,
        "seconds": seconds,
        **ledger,
    }
    await ws.aclose()
    return figures


async def _expiry_run(up: FakeUpstream) -> dict[str, Any]:
    """One provider batch that expires after 6,000 rows: the other 4,000 go directly through the model stack."""
    up.batches.sent.clear()
    up.batches.expire_after = 6_000
    up.reset()
    ws = _workspace(up)
    started = time.perf_counter()
    jobs = BatchJobs(ws, poll_s=0.05)
    job = await jobs.submit("gpt", _rows())
    status = await jobs.run(job)
    results = jobs.results(job)
    up.batches.expire_after = None
    figures = {
        "rows": ROWS,
        "expire_after": 6_000,
        "status": status.status,
        "via_batch": sum(1 for r in results if r.via == "batch"),
        "via_direct": sum(1 for r in results if r.via == "direct"),
        "direct_calls_at_upstream": len(up.received_bodies),
        "rows_lost": _lost(jobs, job),
        "rows_sent_twice": sum(1 for n in up.batches.sent.values() if n > 1),
        "seconds": time.perf_counter() - started,
        **_ledger(ws),
    }
    await ws.aclose()
    return figures


async def _interactive_run(up: FakeUpstream) -> dict[str, Any]:
    """The same rows as direct calls through the normal model stack (the batch engine)."""
    ws = _workspace(up)
    started = time.perf_counter()
    requests = [ChatRequest.from_prompt(p) for p in _rows()]
    report = await run_batch(ws.model("gpt"), requests)
    seconds = time.perf_counter() - started
    figures = {
        "rows": ROWS,
        "ok": sum(1 for r in report.rows if r.ok),
        "errors": sum(1 for r in report.rows if not r.ok),
        "seconds": seconds,
        **_ledger(ws),
    }
    await ws.aclose()
    return figures


async def _main() -> dict[str, Any]:
    load_before = os.getloadavg()
    with FakeUpstream() as up:
        openai_plain = await _batch_run(up, "gpt")
        openai_crash = await _batch_run(up, "gpt", crash_at=2)
        anthropic_crash = await _batch_run(up, "claude", crash_at=1)
        expiry = await _expiry_run(up)
        interactive = await _interactive_run(up)
    return {
        "rows": ROWS,
        "chunk": CHUNK,
        "failing_rows": ROWS // FAIL_EVERY,
        "price": {"input_per_1m": 1.25, "output_per_1m": 10.0, "batch": "half (default)"},
        "openai": openai_plain,
        "openai_crash_resume": openai_crash,
        "anthropic_crash_resume": anthropic_crash,
        "expiry_fallback": expiry,
        "interactive": interactive,
        "batch_over_interactive_cost": openai_plain["batch_usd"] / interactive["direct_usd"]
        if interactive["direct_usd"]
        else None,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def run() -> dict[str, Any]:
    figures = asyncio.run(_main())
    save("batch_api", figures)
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
