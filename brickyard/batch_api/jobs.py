"""Batch jobs: rows for a remote endpoint sent through its provider's batch API, durable in the workspace.

`BatchJobs(ws).submit(endpoint, requests)` stores the job and reserves its worst-case cost at the batch price
(refusing a job that does not fit a budget, before anything is sent); `run(job_id)` submits its chunks, polls
them, stores every row's answer or error, meters each row at the batch price, and, when the job is not done
by its deadline (or a provider batch expired, failed or was cancelled), sends the rows left directly through
the endpoint's normal model stack (`on_deadline="direct"`) or leaves them as a clear partial result
(`"partial"`). `run` again resumes a job after a crash or restart; no row is sent to the batch API twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from brickyard._errors import (
    BrickyardError,
    BudgetExceededError,
    RateLimitedError,
    ServerError,
    UpstreamTimeoutError,
    UserError,
)
from brickyard.batch import run_batch
from brickyard.batch_api._providers import BatchProvider, provider_for, result_dict
from brickyard.models._types import ChatRequest
from brickyard.models.budget import UNKNOWN_OUTPUT_TOKENS, CostCap, Price
from brickyard.models.calls import ChatCall
from brickyard.store.base import Hold, UsageRecord
from brickyard.store.batch_jobs import JobRecord, RowOutcome, RowRecord
from brickyard.workspace import Workspace

log = logging.getLogger(__name__)
OnDeadline = Literal["direct", "partial"]
Hook = Callable[[str, dict[str, Any]], None]
"""Called at named points of a run (`before_create`, `after_create`, `recorded`, `collected`) with details; a
test raises from it to simulate a crash at that point."""

BATCH_DISCOUNT = 0.5
"""OpenAI's and Anthropic's batch prices: half the interactive price (unless the endpoint sets a batch price)."""
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024
JOB_RESERVATION_TTL_S = 25 * 3600.0
"""A job's budget hold outlives the provider's 24 h completion window."""
CANCEL_WAIT_S = 900.0
"""After the deadline, how long to wait for cancelled provider batches to stop (OpenAI's `cancelling` takes up to
10 minutes); rows still running there are never also sent directly. Past it the job stays `running`."""
FIRST_POLL_S = 0.5
LEASE_S = 120.0
"""A run holds its job this long past its last renewal (renewed every quarter of it while it runs)."""


@dataclass(frozen=True)
class JobStatus:
    """A job's progress: rows per state, chunks, and what it cost (at the batch price and directly)."""

    job_id: str
    endpoint: str
    provider: str
    status: str
    """`running`, `done` (every row answered or errored) or `partial` (some rows unfinished, kept that way)."""
    rows: int
    counts: dict[str, int]
    chunks: list[tuple[int, str, str | None, str | None]]
    """(chunk, state, provider batch id, provider status)."""
    batch_cost_usd: float
    direct_cost_usd: float
    interactive_cost_usd: float
    """What the rows answered by the batch API would have cost at the interactive price."""
    deadline: float | None
    note: str | None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "partial")


@dataclass(frozen=True)
class RowResult:
    """One row of a job: its answer (`text`, `json`) or its error, and how it was answered (`batch`/`direct`)."""

    row: int
    custom_id: str
    state: str
    text: str | None
    json: Any
    finish_reason: str | None
    error: str | None
    via: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float


def _chunks(sizes: Sequence[int], max_rows: int, max_bytes: int) -> list[int]:
    """The chunk of each row: consecutive rows, at most `max_rows` and `max_bytes` (the sum of `sizes`) a chunk."""
    out: list[int] = []
    chunk = rows = used = 0
    for size in sizes:
        if size > max_bytes:
            raise UserError(f"row {len(out) + 1} is {size:,} bytes, over one provider batch ({max_bytes:,} bytes)")
        if rows and (rows == max_rows or used + size > max_bytes):
            chunk, rows, used = chunk + 1, 0, 0
        out.append(chunk)
        rows, used = rows + 1, used + size
    return out


def job_key(endpoint: str, requests: Sequence[ChatRequest], tag: str | None) -> str:
    """What identifies the same work: the endpoint, the tag and every request, in order."""
    digest = hashlib.sha256(f"{endpoint}\0{tag or ''}".encode())
    for request in requests:
        digest.update(b"\0" + request.model_dump_json().encode())
    return digest.hexdigest()


def batch_price(registry: Any, endpoint: str) -> tuple[Price, Price]:
    """(batch price, interactive price) of an endpoint: the configured batch price, else half the interactive."""
    config = registry.config_for(endpoint)
    interactive = Price(config.price_input_per_1m, config.price_output_per_1m)
    batch = Price(
        config.batch_price_input_per_1m
        if config.batch_price_input_per_1m is not None
        else interactive.input_per_1m * BATCH_DISCOUNT,
        config.batch_price_output_per_1m
        if config.batch_price_output_per_1m is not None
        else interactive.output_per_1m * BATCH_DISCOUNT,
    )
    return batch, interactive


class BatchJobs:
    """Submit, run, resume and read provider batch jobs of one workspace."""

    def __init__(self, workspace: Workspace, *, poll_s: float = 30.0, hook: Hook | None = None) -> None:
        """`poll_s`: the longest pause between status reads (they start at `FIRST_POLL_S` and back off)."""
        self.ws = workspace
        self.poll_s = poll_s
        self.hook = hook
        self.store = workspace.batch_jobs

    # -- submit ---------------------------------------------------------------------------------------
    async def submit(
        self,
        endpoint: str,
        requests: Sequence[ChatRequest | str],
        *,
        tag: str | None = None,
        deadline_s: float | None = None,
        on_deadline: OnDeadline = "direct",
        chunk_size: int | None = None,
        max_cost_usd: float | None = None,
        reuse: bool = False,
        cap: CostCap | None = None,
    ) -> str:
        """Store a job (nothing is sent yet) and reserve its worst-case batch cost; returns its id.

        `deadline_s`: seconds from now after which the rows left go `on_deadline`. `max_cost_usd` caps this
        job alone; `cap` is a query's `--max-cost`, shared with its other calls. With `reuse`, the same rows
        for the same endpoint submitted before give that job's id (run it to resume it or read it) instead of a
        new job: re-running a query after a crash sends nothing twice.
        Raises `BudgetExceededError` when the job does not fit a budget, a `UserError` when the endpoint's
        provider has no batch API."""
        if on_deadline not in ("direct", "partial"):
            raise UserError(f"on_deadline must be 'direct' or 'partial', not {on_deadline!r}")
        if not requests:
            raise UserError("a batch job needs at least one row. Fix: pass some requests")
        if deadline_s is not None and not deadline_s > 0:
            raise UserError(f"deadline_s must be a positive number of seconds, not {deadline_s!r}")
        if max_cost_usd is not None and not max_cost_usd > 0:
            raise UserError(f"max_cost_usd must be a positive amount, not {max_cost_usd!r}")
        registry = self.ws.registry
        name = registry.canonical(endpoint)
        provider = provider_for(registry, name)  # refuses endpoints without a batch API, before anything is stored
        try:
            size = chunk_size or provider.max_rows
            if not 0 < size <= provider.max_rows:
                raise UserError(f"chunk_size must be between 1 and {provider.max_rows} for {provider.name}")
            config = registry.config_for(name)
            rows = [r if isinstance(r, ChatRequest) else ChatRequest.from_prompt(r) for r in requests]
            key = job_key(name, rows, tag) if reuse else None
            earlier = self.store.by_key(key) if key else None
            if earlier is not None:
                return earlier
            for i, request in enumerate(rows):
                if not request.prompt_text().strip():
                    raise UserError(f"row {i + 1} of the batch job has an empty prompt. Fix: drop it or give it text")
                if request.logprobs or request.tools:
                    raise UserError(
                        f"row {i + 1} asks for logprobs or tools, which batch jobs do not send. Fix: drop them, or "
                        "send these rows interactively"
                    )
            price, _ = batch_price(registry, name)
            job_id = uuid.uuid4().hex[:12]
            default_out = config.max_tokens or (
                ANTHROPIC_DEFAULT_MAX_TOKENS if provider.name == "anthropic" else UNKNOWN_OUTPUT_TOKENS
            )
            worst = sum(price.estimate(ChatCall(r), r.max_tokens or default_out) for r in rows)
            dumped = [r.model_dump(mode="json") for r in rows]
            chunks = _chunks([len(json.dumps(d, ensure_ascii=False)) + 200 for d in dumped], size, provider.max_bytes)
            reservation = self._reserve(name, rows[0], tag, job_id, worst, max_cost_usd, cap)
            record = JobRecord(
                job_id=job_id,
                endpoint=name,
                provider=provider.name,
                model=str(config.model),
                created=time.time(),
                deadline=time.time() + deadline_s if deadline_s is not None else None,
                on_deadline=on_deadline,
                status="running",
                tag=tag,
                price_input_per_1m=price.input_per_1m,
                price_output_per_1m=price.output_per_1m,
                reservation=reservation,
                reserved_usd=worst if reservation else 0.0,
                settled=False,
                note=None,
            )
            try:
                self.store.create(
                    record,
                    [(f"{job_id}-{c}-{i}", c, d) for i, (c, d) in enumerate(zip(chunks, dumped, strict=True))],
                    key=key,
                )
            except BaseException:
                if reservation:  # nothing was stored: hold nothing either
                    self.ws.store.settle(reservation, 0.0)
                raise
        finally:
            await provider.aclose()
        return job_id

    def _reserve(
        self,
        endpoint: str,
        sample: ChatRequest,
        tag: str | None,
        job_id: str,
        amount: float,
        max_cost_usd: float | None,
        cap: CostCap | None,
    ) -> str | None:
        """Hold the job's worst case against every budget that applies; None when none does."""
        budgets = self.ws.registry.budgets.applying(endpoint, ChatCall(sample.model_copy(update={"tag": tag})))
        holds = [b.hold for b in budgets]
        labels = {b.hold: (b.label, b.window) for b in budgets}
        if max_cost_usd is not None:
            hold = Hold(f"batch:{job_id}", max_cost_usd, 0.0)
            holds.append(hold)
            labels[hold] = (f"batch job {job_id} (max_cost_usd)", "job")
        if cap is not None:
            hold = Hold(cap.scope, cap.limit_usd, 0.0)
            holds.append(hold)
            labels[hold] = ("this query (--max-cost)", "job")
        if not holds:
            return None
        got = self.ws.store.reserve(holds, amount, ttl_s=JOB_RESERVATION_TTL_S)
        if isinstance(got, str):
            return got
        label, window = labels[got.hold]
        raise BudgetExceededError(
            label,
            got.hold.limit_usd,
            got.spent_usd + got.held_usd,
            window,
            fix="send fewer rows, set max_tokens on the rows (the worst case is reserved), or raise the budget",
            estimate_usd=amount,
        )

    # -- run ------------------------------------------------------------------------------------------
    async def run(self, job_id: str, *, wait: bool = True) -> JobStatus:
        """Submit what is not submitted, collect what is done; with `wait`, until the job is finished or its
        deadline passes (then the rows left go `on_deadline`). Safe to call again after a crash."""
        if self.store.job(job_id).status != "running":
            return self.status(job_id)
        runner = uuid.uuid4().hex
        lease = await self._lease(job_id, runner)
        try:
            job = self.store.job(job_id)  # read again under the lease: another run may have finished it
            if job.status != "running":
                lease.cancel()
                self.store.release(job_id, runner)
                return self.status(job_id)
            provider = provider_for(self.ws.registry, job.endpoint)
        except BaseException:
            lease.cancel()
            self.store.release(job_id, runner)
            raise
        pause = min(FIRST_POLL_S, self.poll_s)
        try:
            while True:
                await self._reconcile(job, provider)
                await self._submit_new(job, provider)
                try:
                    await self._collect(job, provider)
                except (RateLimitedError, ServerError, UpstreamTimeoutError) as exc:
                    if not wait:
                        raise
                    log.warning("batch job %s: reading its batches failed (%s); trying again", job_id, exc)
                open_chunks = [c for c in self.store.chunks(job_id) if c.state != "collected"]
                late = job.deadline is not None and time.time() >= job.deadline
                if not open_chunks or late or not wait:
                    break
                left = job.deadline - time.time() if job.deadline is not None else pause
                await asyncio.sleep(max(min(pause, left), 0.0))
                pause = min(pause * 1.5, self.poll_s)  # back off from FIRST_POLL_S to poll_s
            if open_chunks and late:
                await self._cancel(job, provider)
            if not [c for c in self.store.chunks(job_id) if c.state != "collected"]:
                await self._finish(job)
        finally:
            lease.cancel()
            self.store.release(job_id, runner)
            await provider.aclose()
        return self.status(job_id)

    async def _lease(self, job_id: str, runner: str) -> asyncio.Task[None]:
        """Claim the job for this run (refusing when another process runs it) and keep the claim renewed."""
        holder = self.store.claim(job_id, runner, ttl_s=LEASE_S)
        if holder is not None:
            raise UserError(
                f"batch job {job_id} is being run by another process ({holder}). Fix: wait for it to finish, or "
                f"run `brickyard batch resume {job_id}` once it has stopped"
            )

        async def renew() -> None:
            while True:
                await asyncio.sleep(LEASE_S / 4)
                await asyncio.to_thread(self.store.claim, job_id, runner, ttl_s=LEASE_S)

        return asyncio.create_task(renew())

    async def _reconcile(self, job: JobRecord, provider: BatchProvider) -> None:
        """A chunk left `submitting` by a crash: adopt the provider's batch for it if there is one."""
        for chunk in self.store.chunks(job.job_id):
            if chunk.state != "submitting":
                continue
            size = len(self.store.rows(job.job_id, chunk=chunk.chunk))
            found = await provider.find(
                job.job_id, chunk.chunk, size, chunk.submitting_at or job.created, self.store.known_provider_batches()
            )
            if found is not None:
                self.store.mark_submitted(job.job_id, chunk.chunk, found, "reconciled", state="adopted")
                self._event("reconciled", job=job.job_id, chunk=chunk.chunk, provider_batch_id=found)
            else:
                self.store.mark_chunk(job.job_id, chunk.chunk, "new")

    async def _submit_new(self, job: JobRecord, provider: BatchProvider) -> None:
        for chunk in self.store.chunks(job.job_id):
            if chunk.state != "new":
                continue
            if job.deadline is not None and time.time() >= job.deadline:
                return  # too late to start a batch: the rows go `on_deadline`
            rows = self.store.rows(job.job_id, chunk=chunk.chunk, states=("pending",))
            if not rows:
                self.store.mark_chunk(job.job_id, chunk.chunk, "collected")
                continue
            requests = [(r.custom_id, ChatRequest.model_validate_json(r.request_json)) for r in rows]
            self._event("before_create", job=job.job_id, chunk=chunk.chunk)
            self.store.mark_submitting(job.job_id, chunk.chunk)  # committed before the provider hears of it
            batch_id, status = await provider.create(job.job_id, chunk.chunk, requests)
            self._event("after_create", job=job.job_id, chunk=chunk.chunk, provider_batch_id=batch_id)
            self.store.mark_submitted(job.job_id, chunk.chunk, batch_id, status)
            self._event("recorded", job=job.job_id, chunk=chunk.chunk, provider_batch_id=batch_id)

    async def _collect(self, job: JobRecord, provider: BatchProvider) -> None:
        for chunk in self.store.chunks(job.job_id):
            if chunk.state not in ("submitted", "adopted") or chunk.provider_batch_id is None:
                continue
            poll = await provider.poll(chunk.provider_batch_id)
            if not poll.ended:
                self.store.mark_chunk(job.job_id, chunk.chunk, chunk.state, poll.status)
                continue
            adopted = chunk.state == "adopted"
            await self._read_chunk(job, provider, chunk.chunk, chunk.provider_batch_id, poll.status, adopted=adopted)

    async def _read_chunk(
        self, job: JobRecord, provider: BatchProvider, chunk: int, batch_id: str, status: str, *, adopted: bool
    ) -> None:
        """Store a finished provider batch's rows. A batch adopted on resume whose results name none of the chunk's
        custom_ids was another batch (Anthropic's are matched by time and size): the chunk is sent again. Our own
        batch with an unreadable output leaves its rows unfinished instead (never sent to the batch API twice)."""
        rows = self.store.rows(job.job_id, chunk=chunk)
        requests = {r.custom_id: ChatRequest.model_validate_json(r.request_json) for r in rows}
        outcomes = await provider.results(batch_id, requests)
        if not outcomes and adopted:
            self.store.mark_chunk(job.job_id, chunk, "new", f"{status}; not this chunk's batch")
            return
        price = Price(job.price_input_per_1m, job.price_output_per_1m)
        priced = [
            RowOutcome(
                o.custom_id,
                o.state,
                o.result,
                o.error,
                o.input_tokens,
                o.output_tokens,
                price.input_per_1m * o.input_tokens / 1e6 + price.output_per_1m * o.output_tokens / 1e6,
            )
            for o in outcomes
        ]
        answered = {o.custom_id for o in priced}
        priced += [
            RowOutcome(r.custom_id, "unfinished", error=f"the provider batch ended ({status}) without this row")
            for r in rows
            if r.custom_id not in answered and r.state == "pending"
        ]
        self.store.record_rows(job.job_id, priced)
        self._meter(job, chunk, batch_id)
        self.store.mark_chunk(job.job_id, chunk, "collected", status)
        self._event("collected", job=job.job_id, chunk=chunk, provider_batch_id=batch_id, status=status)

    def _meter(self, job: JobRecord, chunk: int, batch_id: str) -> None:
        """One usage record per answered row at the batch price (`extra.batch`), then mark the rows metered."""
        rows = [r for r in self.store.rows(job.job_id, chunk=chunk, states=("ok", "error")) if not r.metered]
        now = time.time()
        for r in rows:
            self.ws.store.record_usage(
                UsageRecord(
                    ts=now,
                    endpoint=job.endpoint,
                    model=(r.result or {}).get("model") or job.model,
                    status="ok" if r.state == "ok" else "error",
                    tag=job.tag,
                    input_tokens=r.input_tokens,
                    output_tokens=r.output_tokens,
                    cost_usd=r.cost_usd,
                    error=(r.error or "")[:500] or None,
                    extra={"kind": "chat", "batch": True, "job": job.job_id, "provider_batch": batch_id},
                )
            )
        self.ws.store.flush()  # written before the rows are marked: a crash in between counts twice, never zero
        self.store.mark_metered(job.job_id, [r.row for r in rows])

    async def _cancel(self, job: JobRecord, provider: BatchProvider) -> None:
        """The deadline passed: cancel the provider batches still running and read what they answered."""
        for chunk in self.store.chunks(job.job_id):
            if chunk.state == "new" or chunk.state == "submitting":
                self.store.mark_chunk(job.job_id, chunk.chunk, "collected", "not submitted before the deadline")
                rows = self.store.rows(job.job_id, chunk=chunk.chunk, states=("pending",))
                self.store.record_rows(
                    job.job_id,
                    [RowOutcome(r.custom_id, "unfinished", error="not sent before the deadline") for r in rows],
                )
            elif chunk.state in ("submitted", "adopted") and chunk.provider_batch_id:
                try:
                    await provider.cancel(chunk.provider_batch_id)
                except BrickyardError as exc:  # e.g. it ended meanwhile, or a resumed run cancels it again
                    log.warning("batch job %s: cancelling %s failed (%s)", job.job_id, chunk.provider_batch_id, exc)
        give_up = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < give_up:  # a row still running at the provider must not also be sent directly
            await self._collect(job, provider)
            if all(c.state == "collected" for c in self.store.chunks(job.job_id)):
                return
            await asyncio.sleep(min(self.poll_s, 1.0))

    async def _finish(self, job: JobRecord) -> None:
        """Every chunk is collected: settle the budget hold, then send or keep the rows left."""
        job = self.store.job(job.job_id)
        if job.reservation and not job.settled:
            self.ws.store.settle(job.reservation, self.store.cost(job.job_id, "batch"))
            self.store.update_job(job.job_id, settled=1)
        left = self.store.rows(job.job_id, states=("pending", "unfinished"))
        if left and job.on_deadline == "direct":
            await self._direct(job, left)
            left = self.store.rows(job.job_id, states=("pending", "unfinished"))
        note = f"{len(left)} rows unfinished (kept as a partial result)" if left else None
        self.store.update_job(job.job_id, status="partial" if left else "done", note=note)

    async def _direct(self, job: JobRecord, rows: list[RowRecord]) -> None:
        """Send rows the batch API did not answer through the endpoint's normal stack (metered there)."""
        self._event("direct", job=job.job_id, rows=len(rows))
        model = self.ws.registry.get(job.endpoint)
        requests = [ChatRequest.model_validate_json(r.request_json).model_copy(update={"tag": job.tag}) for r in rows]
        report = await run_batch(model, requests, description="batch fallback")
        outcomes = []
        for r, row in zip(rows, report.rows, strict=True):
            if row.result is None:
                outcomes.append(RowOutcome(r.custom_id, "error", error=row.error, via="direct"))
                continue
            usage = row.result.usage
            outcomes.append(
                RowOutcome(
                    r.custom_id,
                    "ok",
                    result_dict(row.result),
                    None,
                    usage.input_tokens,
                    usage.output_tokens,
                    row.result.cost_usd or 0.0,
                    via="direct",
                )
            )
        self.store.record_rows(job.job_id, outcomes)
        self.store.mark_metered(job.job_id, [r.row for r in rows])  # the model stack metered these calls

    # -- read -----------------------------------------------------------------------------------------
    def status(self, job_id: str) -> JobStatus:
        job = self.store.job(job_id)
        counts = self.store.counts(job_id)
        interactive = batch_price(self.ws.registry, job.endpoint)[1] if self._known(job.endpoint) else Price()
        batch_rows = [r for r in self.store.rows(job_id, states=("ok", "error")) if r.via == "batch"]
        interactive_cost = sum(
            (r.input_tokens * interactive.input_per_1m + r.output_tokens * interactive.output_per_1m) / 1e6
            for r in batch_rows
        )
        return JobStatus(
            job_id=job.job_id,
            endpoint=job.endpoint,
            provider=job.provider,
            status=job.status,
            rows=sum(counts.values()),
            counts=counts,
            chunks=[(c.chunk, c.state, c.provider_batch_id, c.provider_status) for c in self.store.chunks(job_id)],
            batch_cost_usd=self.store.cost(job_id, "batch"),
            direct_cost_usd=self.store.cost(job_id, "direct"),
            interactive_cost_usd=interactive_cost,
            deadline=job.deadline,
            note=job.note,
        )

    def results(self, job_id: str) -> list[RowResult]:
        """Every row in order, answered or not (readable while the job runs: pending rows have no answer yet)."""
        self.store.job(job_id)
        return [
            RowResult(
                row=r.row,
                custom_id=r.custom_id,
                state=r.state,
                text=(r.result or {}).get("text"),
                json=(r.result or {}).get("json"),
                finish_reason=(r.result or {}).get("finish_reason"),
                error=r.error,
                via=r.via,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                cost_usd=r.cost_usd,
            )
            for r in self.store.rows(job_id)
        ]

    def list(self) -> list[JobStatus]:
        return [self.status(j.job_id) for j in self.store.jobs()]

    def _known(self, endpoint: str) -> bool:
        try:
            self.ws.registry.config_for(endpoint)
        except UserError:
            return False
        return True

    def _event(self, name: str, **details: Any) -> None:
        if self.hook is not None:
            self.hook(name, details)
