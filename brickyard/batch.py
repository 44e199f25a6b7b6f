"""The batch engine: many requests for one endpoint, run well.

Identical requests are sent once, cached answers are served by the model stack, the rest run
with bounded concurrency under the endpoint's limits, a progress bar shows rows, rate, tokens
and cost, and results come back in input order with a per-row error for every failed row.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from brickyard.models._types import ChatRequest, ChatResult, estimate_tokens
from brickyard.models.base import Model
from brickyard.models.metering import Price
from brickyard.store.base import Store

DEFAULT_OUTPUT_TOKENS = 256
"""Output tokens assumed per call by estimates when a request sets no `max_tokens`."""


@dataclass(frozen=True)
class RowResult:
    """One input row's outcome: a result, or the error that row met."""

    index: int
    result: ChatResult | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass
class BatchReport:
    """All rows in input order, plus what the batch cost."""

    rows: list[RowResult]
    distinct: int = 0
    calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0

    @property
    def results(self) -> list[ChatResult | None]:
        return [row.result for row in self.rows]

    @property
    def rows_per_s(self) -> float:
        return len(self.rows) / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "rows": len(self.rows),
            "distinct": self.distinct,
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "elapsed_s": round(self.elapsed_s, 3),
            "rows_per_s": round(self.rows_per_s, 2),
        }


@dataclass(frozen=True)
class BatchEstimate:
    """What a batch would cost before it runs."""

    rows: int
    distinct: int
    cached: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    notes: list[str] = field(default_factory=list)


def estimate_batch(
    requests: Sequence[ChatRequest],
    *,
    price: Price,
    endpoint: str | None = None,
    store: Store | None = None,
) -> BatchEstimate:
    """Dry run: count distinct requests, cache hits (when a store is given) and estimated tokens and USD."""
    distinct = _group(requests)
    cached = 0
    input_tokens = output_tokens = 0
    for _key, indices in distinct.items():
        request = requests[indices[0]]
        if store is not None and endpoint is not None and store.cache_get(request.cache_key(endpoint)) is not None:
            cached += 1
            continue
        input_tokens += estimate_tokens(request.prompt_text())
        output_tokens += request.max_tokens or DEFAULT_OUTPUT_TOKENS
    cost = (input_tokens * price.input_per_1m + output_tokens * price.output_per_1m) / 1e6
    notes = [f"output tokens assume max_tokens, or {DEFAULT_OUTPUT_TOKENS} per call when unset"]
    return BatchEstimate(
        rows=len(requests),
        distinct=len(distinct),
        cached=cached,
        calls=len(distinct) - cached,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        notes=notes,
    )


def _group(requests: Sequence[ChatRequest]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(request.dedup_key(), []).append(index)
    return groups


async def run_batch(
    model: Model,
    requests: Sequence[ChatRequest],
    *,
    concurrency: int | None = None,
    progress: bool | None = None,
    description: str = "rows",
    on_result: Callable[[int, RowResult], None] | None = None,
) -> BatchReport:
    """Run every request; never drops a row. `progress=None` shows a bar only on a terminal."""
    started = time.perf_counter()
    groups = list(_group(requests).values())
    rows: list[RowResult | None] = [None] * len(requests)
    report = BatchReport(rows=[], distinct=len(groups))
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for indices in groups:
        queue.put_nowait(indices)
    workers = max(1, min(concurrency or model.max_concurrency, len(groups) or 1))
    show = sys.stderr.isatty() if progress is None else progress
    bar = _progress_bar(show)
    task = bar.add_task(description, total=len(requests), stats="")

    async def worker() -> None:
        while True:
            try:
                indices = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            outcome = await _run_one(model, requests[indices[0]])
            _account(report, outcome)
            for index in indices:
                row = RowResult(index, outcome.result, outcome.error, outcome.error_type)
                rows[index] = row
                if on_result is not None:
                    on_result(index, row)
            bar.update(task, advance=len(indices), stats=_stats(report, started))

    with bar:
        await asyncio.gather(*(worker() for _ in range(workers)))
    report.rows = [
        row if row is not None else RowResult(i, error="row was not run", error_type="Lost")
        for i, row in enumerate(rows)
    ]
    report.errors = sum(1 for row in report.rows if not row.ok)
    report.elapsed_s = time.perf_counter() - started
    return report


async def _run_one(model: Model, request: ChatRequest) -> RowResult:
    try:
        return RowResult(-1, result=await model.complete(request))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a failing row becomes that row's error
        return RowResult(-1, error=str(exc) or type(exc).__name__, error_type=type(exc).__name__)


def _account(report: BatchReport, outcome: RowResult) -> None:
    result = outcome.result
    if result is None:
        report.calls += 1
        return
    if result.cached:
        report.cache_hits += 1
        return
    report.calls += 1
    report.input_tokens += result.usage.input_tokens
    report.output_tokens += result.usage.output_tokens
    report.cost_usd += result.cost_usd


def _stats(report: BatchReport, started: float) -> str:
    elapsed = max(time.perf_counter() - started, 1e-9)
    done = report.calls + report.cache_hits
    return (
        f"{done / elapsed:6.1f} calls/s  {report.input_tokens + report.output_tokens:,} tok  "
        f"${report.cost_usd:.4f}  {report.cache_hits} cached"
    )


def _progress_bar(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
        disable=not show,
        transient=False,
    )


def run_batch_sync(model: Model, requests: Sequence[ChatRequest], **options: Any) -> BatchReport:
    """`run_batch` for code without an event loop."""
    return asyncio.run(run_batch(model, requests, **options))
