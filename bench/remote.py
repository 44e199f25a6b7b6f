"""Benchmark 2: a remote endpoint with 200 ms latency and a 1,200 requests/minute limit.

A fake OpenAI-compatible upstream on 127.0.0.1 enforces the limit (429 + Retry-After past it).
brickyard's batch engine paces to the endpoint's `rpm` and keeps enough requests in flight to hide
the latency; the baseline is a one-by-one loop with the official `openai` SDK.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai

from bench.common import fresh_workspace, save
from brickyard import BatchReport, ChatRequest, run_batch
from brickyard.testing.upstream import FakeUpstream

LATENCY_S = 0.2
RPM = 1200


def run(requests: int = 2000, loop_requests: int = 100) -> dict[str, Any]:
    figures: dict[str, Any] = {"requests": requests, "latency_s": LATENCY_S, "rpm_limit": RPM}
    with FakeUpstream(latency_s=LATENCY_S, rpm_limit=RPM) as up:
        ws = fresh_workspace(
            f'[endpoints.remote]\nmodel = "openai:fake-gpt"\nbase_url = "{up.base_url}"\n'
            f"rpm = {RPM}\nmax_concurrency = 16\ncache = false\n"
        )
        batch = [ChatRequest.from_prompt(f"request {i}", max_tokens=16) for i in range(requests)]
        started = time.perf_counter()

        async def batch_run() -> BatchReport:
            try:
                return await run_batch(ws.model("remote"), batch, progress=False)
            finally:
                await ws.aclose()

        report = asyncio.run(batch_run())
        elapsed = time.perf_counter() - started
        rate_per_min = requests / elapsed * 60
        figures["brickyard"] = {
            "seconds": elapsed,
            "requests_per_min": rate_per_min,
            "share_of_limit": rate_per_min / RPM,
            "rows_returned": len(report.rows),
            "rows_ok": sum(r.ok for r in report.rows),
            "errors": report.errors,
            "upstream_429s": up.rejected_429,
            "upstream_requests": up.requests,
            "peak_in_flight": up.max_in_flight,
        }
        up.reset()
        client = openai.OpenAI(base_url=up.base_url, api_key="none", max_retries=5)
        started = time.perf_counter()
        ok = 0
        for i in range(loop_requests):
            reply = client.chat.completions.create(
                model="fake-gpt", messages=[{"role": "user", "content": f"request {i}"}], max_tokens=16
            )
            ok += bool(reply.choices[0].message.content)
        elapsed = time.perf_counter() - started
        figures["openai_sdk_loop"] = {
            "requests": loop_requests,
            "seconds": elapsed,
            "requests_per_min": loop_requests / elapsed * 60,
            "rows_ok": ok,
        }
        client.close()
    figures["ratio_vs_loop"] = figures["brickyard"]["requests_per_min"] / figures["openai_sdk_loop"]["requests_per_min"]
    figures["targets"] = {"share_of_limit": ">= 0.95", "rows_lost": 0}
    save("remote", figures)
    return figures
