"""Benchmark 3: 1,000 rows with 100 distinct texts, then the same batch again.

Counted at the upstream (a fake OpenAI-compatible server on 127.0.0.1), not inside brickyard.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import fresh_workspace, save
from brickyard import ChatRequest, run_batch
from brickyard.testing.upstream import FakeUpstream


def run(rows: int = 1000, distinct: int = 100) -> dict[str, Any]:
    figures: dict[str, Any] = {"rows": rows, "distinct_texts": distinct}
    with FakeUpstream(latency_s=0.01) as up:
        ws = fresh_workspace(f'[endpoints.remote]\nmodel = "openai:fake-gpt"\nbase_url = "{up.base_url}"\n')
        batch = [ChatRequest.from_prompt(f"review text number {i % distinct}", max_tokens=16) for i in range(rows)]

        async def both_runs() -> None:
            model = ws.model("remote")
            for label in ("first_run", "second_run"):
                before = up.requests
                started = time.perf_counter()
                report = await run_batch(model, batch, progress=False)
                figures[label] = {
                    "upstream_calls": up.requests - before,
                    "cache_hits": report.cache_hits,
                    "rows_returned": len(report.rows),
                    "errors": report.errors,
                    "seconds": time.perf_counter() - started,
                }
            await ws.aclose()

        asyncio.run(both_runs())
    figures["targets"] = {"first_run.upstream_calls": distinct, "second_run.upstream_calls": 0}
    save("dedup_cache", figures)
    return figures
