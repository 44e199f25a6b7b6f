"""`brickyard batch list|status|resume|results`: provider batch jobs of the workspace."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from brickyard._cli_common import WorkspaceOpt, out, run_and_close
from brickyard.batch_api.jobs import BatchJobs, JobStatus
from brickyard.workspace import Workspace

batch_app = typer.Typer(
    no_args_is_help=True, help="Provider batch jobs (OpenAI Batch API, Anthropic Message Batches): half price."
)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _counts(status: JobStatus) -> str:
    c = status.counts
    return f"{c['ok']} ok, {c['error']} errors, {c['pending']} pending, {c['unfinished']} unfinished"


@batch_app.command("list")
def batch_list(workspace: WorkspaceOpt = None) -> None:
    """Every batch job of the workspace, newest first."""
    ws = Workspace(workspace)
    table = Table("job", "endpoint", "provider", "status", "rows", "progress", "USD (batch)", "deadline")
    for s in BatchJobs(ws).list():
        table.add_row(
            s.job_id,
            s.endpoint,
            s.provider,
            s.status,
            str(s.rows),
            _counts(s),
            f"{s.batch_cost_usd:.4f}",
            _when(s.deadline),
        )
    out.print(table)


def _print_status(s: JobStatus) -> None:
    out.print(f"job {s.job_id}: {s.status} · endpoint {s.endpoint} ({s.provider}) · {s.rows} rows: {_counts(s)}")
    out.print(
        f"cost: {s.batch_cost_usd:.6f} USD at the batch price (interactively {s.interactive_cost_usd:.6f}), "
        f"{s.direct_cost_usd:.6f} USD sent directly"
    )
    if s.note:
        out.print(s.note)
    table = Table("chunk", "state", "provider batch", "provider status")
    for chunk, state, batch_id, provider_status in s.chunks:
        table.add_row(str(chunk), state, batch_id or "-", provider_status or "-")
    out.print(table)


@batch_app.command("status")
def batch_status(job: Annotated[str, typer.Argument(help="job id")], workspace: WorkspaceOpt = None) -> None:
    """A job's rows per state, chunks and cost."""
    _print_status(BatchJobs(Workspace(workspace)).status(job))


@batch_app.command("resume")
def batch_resume(
    job: Annotated[str, typer.Argument(help="job id")],
    wait: Annotated[bool, typer.Option(help="wait until the job is done or its deadline passes")] = True,
    poll: Annotated[float, typer.Option(help="longest pause between status reads, seconds")] = 30.0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Carry on a job after a crash or restart: no row is sent to the batch API twice."""
    ws = Workspace(workspace)
    status = asyncio.run(run_and_close(ws, BatchJobs(ws, poll_s=poll).run(job, wait=wait)))
    _print_status(status)


@batch_app.command("results")
def batch_results(
    job: Annotated[str, typer.Argument(help="job id")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write JSONL here instead of stdout")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Every row as JSON lines (partial while the job runs: pending rows have no answer yet)."""
    rows = BatchJobs(Workspace(workspace)).results(job)
    lines = [
        json.dumps(
            {
                "row": r.row,
                "custom_id": r.custom_id,
                "state": r.state,
                "text": r.text,
                "json": r.json,
                "error": r.error,
                "via": r.via,
                "cost_usd": r.cost_usd,
            },
            ensure_ascii=False,
        )
        for r in rows
    ]
    if output is None:
        for line in lines:
            print(line)
        return
    output.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out.print(f"wrote {len(lines)} rows to {output}")
