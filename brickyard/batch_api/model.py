"""`brickyard sql --batch` for every AI function: a model wrapper whose rows go through a provider batch job.

`run_rows` (the functions' one path to the batch engine) hands the whole list of a function's requests to
`BatchJobModel.run_batch_job` instead of calling the model row by row. Single calls (`handle`) still go to the
endpoint interactively, and rows a batch API cannot carry (logprobs, tools) run interactively.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from brickyard.batch import BatchReport, RowResult, run_batch
from brickyard.batch_api.jobs import BatchJobs
from brickyard.models._types import ChatRequest, ChatResult, Usage
from brickyard.models.base import Model, WrapperModel
from brickyard.models.budget import CostCap
from brickyard.models.calls import Call, Reply
from brickyard.workspace import Workspace


class BatchJobModel(WrapperModel):
    """An endpoint's model whose row lists are sent as one batch job (blocking until done or its deadline)."""

    def __init__(
        self,
        inner: Model,
        workspace: Workspace,
        endpoint: str,
        *,
        tag: str = "sql",
        cap: CostCap | None = None,
        poll_s: float = 30.0,
    ) -> None:
        super().__init__(inner)
        self.supports_logprobs = False  # functions then choose mechanisms a batch API can carry
        self.supports_tools = False
        self._ws, self._endpoint, self._tag, self._cap, self._poll_s = workspace, endpoint, tag, cap, poll_s

    async def handle(self, call: Call) -> Reply:
        """A single call (chat, stream or embed) is not a batch: the endpoint answers it interactively."""
        return await self.inner.handle(call)

    async def run_batch_job(self, requests: Sequence[ChatRequest], *, description: str = "rows") -> BatchReport:
        """Every request's answer or error, in order, like `run_batch`; a re-run with the same rows resumes or
        reads the job already submitted."""
        started = time.perf_counter()
        rows: list[RowResult | None] = [None] * len(requests)
        batchable = [i for i, r in enumerate(requests) if not (r.logprobs or r.tools)]
        in_batch = set(batchable)
        others = [i for i in range(len(requests)) if i not in in_batch]
        if batchable:
            jobs = BatchJobs(self._ws, poll_s=self._poll_s)
            job = await jobs.submit(
                self._endpoint, [requests[i] for i in batchable], tag=self._tag, reuse=True, cap=self._cap
            )
            await jobs.run(job)
            for i, row in zip(batchable, jobs.results(job), strict=True):
                if row.state != "ok":
                    rows[i] = RowResult(i, error=f"{row.error or 'no answer'} (batch job {job})", error_type="batch")
                    continue
                result = ChatResult(
                    text=row.text or "",
                    model=self.inner.name,
                    usage=Usage(row.input_tokens, row.output_tokens),
                    json=row.json,
                    finish_reason=row.finish_reason,
                    endpoint=self._endpoint,
                    cost_usd=row.cost_usd,
                )
                rows[i] = RowResult(i, result=result)
        if others:
            direct = await run_batch(self.inner, [requests[i] for i in others], description=description)
            for i, answered in zip(others, direct.rows, strict=True):
                rows[i] = RowResult(i, result=answered.result, error=answered.error, error_type=answered.error_type)
        done = [r for r in rows if r is not None]
        return BatchReport(
            rows=done,
            distinct=len(done),
            calls=len(done),
            errors=sum(1 for r in done if not r.ok),
            input_tokens=sum(r.result.usage.input_tokens for r in done if r.result is not None),
            output_tokens=sum(r.result.usage.output_tokens for r in done if r.result is not None),
            cost_usd=sum(r.result.cost_usd for r in done if r.result is not None),
            elapsed_s=time.perf_counter() - started,
        )
