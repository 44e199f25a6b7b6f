"""Evaluation pages: runs per agent, a run's leaderboard, plot and cases, one case with its label, and export."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from rich.console import Console as RichConsole
from starlette.responses import Response

from brickyard.evals import evaluate, rerun
from brickyard.store.evals import Label
from brickyard.web import evals
from brickyard.web.console import Console, Refused, Viewer
from brickyard.web.home_pages import guarded
from brickyard.web.jobs import SQLJob

VERDICTS = ("", "pass", "fail")


def router(console: Console) -> APIRouter:
    web = APIRouter(include_in_schema=False)
    workspace = console.workspace
    page = guarded(console)

    def run_for(viewer: Viewer, run_id: str) -> dict[str, Any]:
        rec = workspace.eval_store.run(run_id)
        if rec is None or not viewer.may_see_agent(str(rec.get("agent"))):
            raise Refused(404, f"no evaluation run {run_id[:60]} that this key may see. Fix: pick one on /evals")
        return rec

    @web.get("/evals")
    @page
    async def runs(request: Request, agent: str | None = None, job: str | None = None) -> Response:
        viewer = console.require(request)
        current = eval_job(viewer, job) if job and viewer.admin else None
        records = await asyncio.to_thread(workspace.eval_store.runs, agent or None)
        visible = [r for r in records if viewer.may_see_agent(str(r.get("agent")))]
        agents = sorted({str(r.get("agent")) for r in visible})
        sets = await asyncio.to_thread(workspace.eval_store.names) if viewer.admin else []
        return console.page(
            request,
            "evals.html",
            viewer,
            runs=evals.summaries(visible),
            agents=agents,
            agent=agent or "",
            job=current,
            all_agents=await asyncio.to_thread(console.state.agents.store.names) if viewer.admin else [],
            sets=sets,
        )

    @web.get("/evals/{run_id}")
    @page
    async def run_page(request: Request, run_id: str, show: str = "all") -> Response:
        viewer = console.require(request)
        rec = await asyncio.to_thread(run_for, viewer, run_id)
        if show not in evals.FILTERS:
            raise Refused(400, f"show must be one of {list(evals.FILTERS)}, not {show[:40]!r}")
        dataset = rec["dataset"]

        def read() -> tuple[list[str], list[dict[str, Any]]]:
            labels = workspace.eval_store.labels(dataset["name"], dataset["version"])
            return evals.case_table(workspace, rec, labels)

        candidates, cases = await asyncio.to_thread(read)
        shown = [c for c in cases if evals.keep(c, show)]
        return console.page(
            request,
            "eval_run.html",
            viewer,
            rec=rec,
            plot=evals.plot(rec),
            words=evals.comparison_words(rec),
            candidates=candidates,
            cases=shown,
            total=len(cases),
            show=show,
            filters=evals.FILTERS,
        )

    @web.get("/evals/{run_id}/cases/{case_id}")
    @page
    async def case_page(request: Request, run_id: str, case_id: str, saved: bool = False) -> Response:
        viewer = console.require(request)
        rec = await asyncio.to_thread(run_for, viewer, run_id)
        return await _case(request, viewer, rec, case_id, saved=saved)

    async def _case(request: Request, viewer: Viewer, rec: dict[str, Any], case_id: str, **extra: Any) -> Response:
        dataset = rec["dataset"]

        def read() -> tuple[list[str], list[dict[str, Any]]]:
            labels = workspace.eval_store.labels(dataset["name"], dataset["version"])
            return evals.case_table(workspace, rec, labels)

        candidates, cases = await asyncio.to_thread(read)
        case = next((c for c in cases if c["id"] == case_id), None)
        if case is None:
            raise Refused(404, f"run {rec['run_id']} has no case {case_id[:60]}")
        return console.page(
            request, "eval_case.html", viewer, rec=rec, case=case, candidates=candidates, verdicts=VERDICTS, **extra
        )

    @web.post("/evals/{run_id}/cases/{case_id}/label")
    @page
    async def label(request: Request, run_id: str, case_id: str) -> Response:
        viewer, form = await console.check_post(request)
        rec = await asyncio.to_thread(run_for, viewer, run_id)
        verdict = form.get("verdict", "")
        if verdict not in VERDICTS:
            raise Refused(400, f"verdict must be pass, fail or empty, not {verdict[:20]!r}")
        candidate = form.get("candidate", "")
        if verdict and candidate not in [c["id"] for c in rec.get("candidates", [])]:
            raise Refused(400, "say which candidate's output the verdict is about (field `candidate`)")
        _, cases = await asyncio.to_thread(evals.case_table, workspace, rec, {})
        case = next((c for c in cases if c["id"] == case_id), None)
        if case is None:
            raise Refused(404, f"run {run_id[:60]} has no case {case_id[:60]}")
        judged = case["outputs"].get(candidate, {}).get("output") if verdict else None
        stored = Label(
            verdict or None,
            evals.parse_corrected(form.get("corrected", "")),
            form.get("comment", "").strip()[:4000],
            judged,
            run_id,
            viewer.principal.name,
        )
        dataset = rec["dataset"]
        where = (dataset["name"], int(dataset["version"]), case_id)
        if stored.verdict is None and stored.corrected is None and not stored.comment:  # an empty label clears it
            await asyncio.to_thread(workspace.eval_store.delete_label, *where)
        else:
            await asyncio.to_thread(workspace.eval_store.set_label, *where, stored)
        return await _case(request, viewer, rec, case_id, saved=True)

    @web.post("/evals/launch")
    @page
    async def launch(request: Request) -> Response:
        viewer, form = await console.check_post(request, admin=True)
        agent, dataset = form.get("agent", "").strip(), form.get("dataset", "").strip()
        if not agent or not dataset:
            raise Refused(400, "agent and dataset: name both (an agent and one of its evaluation sets)")
        candidates = [c.strip() for c in form.get("candidates", "").split(",") if c.strip()] or None
        max_cost = _max_cost(form.get("max_cost", ""))

        async def sweep(log: Callable[[str], None]) -> dict[str, Any]:
            done = await evaluate(
                workspace,
                agent,
                dataset,
                candidates=candidates,
                max_cost_usd=max_cost,
                apply=False,
                console=_log_console(log),
            )
            return {"run_id": done.record["run_id"]}

        job = console.jobs.start_task(viewer.principal.name, "eval", f"evaluate {agent} on {dataset}", sweep)
        return _job_response(request, viewer, job)

    @web.post("/evals/{run_id}/rerun")
    @page
    async def rerun_run(request: Request, run_id: str) -> Response:
        viewer, _ = await console.check_post(request, admin=True)
        rec = await asyncio.to_thread(run_for, viewer, run_id)
        agent = str(rec["agent"])

        async def again(log: Callable[[str], None]) -> dict[str, Any]:
            done, info = await rerun(workspace, agent, console=_log_console(log))
            added = ", ".join(info.get("new_candidates") or []) or "none"
            log(f"new candidates: {added}; choice changed: {info.get('changed')}")
            return {"run_id": done.record["run_id"]}

        job = console.jobs.start_task(viewer.principal.name, "eval", f"rerun the evaluation of {agent}", again)
        return _job_response(request, viewer, job)

    def _job_response(request: Request, viewer: Viewer, job: SQLJob) -> Response:
        response = console.page(request, "eval_job.html", viewer, job=job)
        response.headers["HX-Push-Url"] = f"/evals?job={job.id}"
        return response

    def eval_job(viewer: Viewer, job_id: str) -> SQLJob:
        job = console.jobs.get(job_id, with_rows=False)
        if job is None or job.kind != "eval" or (job.owner != viewer.principal.name and not viewer.admin):
            raise Refused(404, f"no evaluation job {job_id[:40]} (jobs are kept for an hour)")
        return job

    @web.get("/evals/jobs/{job_id}")
    @page
    async def follow(request: Request, job_id: str) -> Response:
        viewer = console.require(request, admin=True)
        return console.page(request, "eval_job.html", viewer, job=eval_job(viewer, job_id))

    @web.post("/evals/jobs/{job_id}/cancel")
    @page
    async def cancel(request: Request, job_id: str) -> Response:
        viewer, _ = await console.check_post(request, admin=True)
        job = eval_job(viewer, job_id)
        console.jobs.cancel(job.id)
        return console.page(request, "eval_job.html", viewer, job=job)

    @web.post("/evals/{run_id}/export")
    @page
    async def export(request: Request, run_id: str) -> Response:
        viewer, _ = await console.check_post(request)
        rec = await asyncio.to_thread(run_for, viewer, run_id)
        dataset = rec["dataset"]
        try:
            version, labelled = await asyncio.to_thread(
                evals.export,
                workspace.eval_store,
                dataset["name"],
                int(dataset["version"]),
                author=viewer.name,
            )
        except LookupError as exc:
            raise Refused(404, str(exc)) from None
        return console.page(
            request, "eval_export.html", viewer, rec=rec, version=version, labelled=labelled, name=dataset["name"]
        )

    return web


def _max_cost(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise Refused(400, f"max_cost: {text[:20]!r} is not a number of USD") from None
    if not value > 0 or value == float("inf"):
        raise Refused(400, "max_cost: give a positive number of USD, or leave it empty")
    return value


class _Lines(io.StringIO):
    """A text file that hands each complete line to `log` (what rich prints during a sweep)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log, self._buffer = log, ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._log(line)
        return len(text)


def _log_console(log: Callable[[str], None]) -> RichConsole:
    return RichConsole(file=_Lines(log), width=140, color_system=None, force_terminal=False, soft_wrap=True)
