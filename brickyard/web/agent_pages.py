"""Agents: the list with kinds and versions, two versions of a spec side by side, a run, and runs with traces.

A key sees (and runs) the agents its scopes name (`agent:NAME` or `agent:*`; an admin all).
"""

from __future__ import annotations

import asyncio
import difflib
import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from brickyard._errors import BrickyardError, UserError
from brickyard.web.console import Console, Refused, Viewer
from brickyard.web.home_pages import guarded

MAX_INPUT = 20_000


def side_by_side(left: str, right: str) -> list[dict[str, Any]]:
    """Rows of a two-column diff: each with the left and right line (or None) and `same`/`changed`/`added`/`removed`."""
    a, b = left.splitlines(), right.splitlines()
    rows: list[dict[str, Any]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [{"left": a[i], "right": b[j1 + k], "kind": "same"} for k, i in enumerate(range(i1, i2))]
            continue
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            left_line = a[i1 + k] if i1 + k < i2 else None
            right_line = b[j1 + k] if j1 + k < j2 else None
            kind = (
                "changed"
                if left_line is not None and right_line is not None
                else "removed"
                if right_line is None
                else "added"
            )
            rows.append({"left": left_line, "right": right_line, "kind": kind})
    return rows


def router(console: Console) -> APIRouter:
    web = APIRouter(include_in_schema=False)
    state = console.state
    agents = state.agents
    timeout_s = state.settings.server.request_timeout_s
    page = guarded(console)

    def visible(viewer: Viewer, name: str) -> None:
        if not viewer.may_see_agent(name):
            raise Refused(404, f"no agent {name[:64]} that key {viewer.name} may use. Fix: pick one on /agents")

    @web.get("/agents")
    @page
    async def listing(request: Request) -> Response:
        viewer = console.require(request)
        rows = await asyncio.to_thread(agents.store.listing)
        shown = [r for r in rows if viewer.may_see_agent(r[0])]
        return console.page(request, "agents.html", viewer, agents=shown)

    @web.get("/agents/{name}")
    @page
    async def agent(request: Request, name: str, a: int | None = None, b: int | None = None) -> Response:
        viewer = console.require(request)
        visible(viewer, name)
        return await _agent(request, viewer, name, a, b)

    async def _agent(
        request: Request, viewer: Viewer, name: str, a: int | None, b: int | None, **extra: Any
    ) -> Response:
        try:
            latest_spec, latest = await asyncio.to_thread(agents.store.get, name)
        except UserError:
            raise Refused(404, f"no agent {name[:64]}. Fix: pick one on /agents") from None
        right = b if b is not None else latest
        left = a if a is not None else max(1, right - 1)
        try:
            spec_a, _ = await asyncio.to_thread(agents.store.get, name, left)
            spec_b, _ = await asyncio.to_thread(agents.store.get, name, right)
        except UserError:
            raise Refused(404, f"agent {name[:64]} has versions 1 to {latest}; choose among them") from None
        text_a = json.dumps(spec_a.model_dump(mode="json", exclude_defaults=True), indent=2, ensure_ascii=False)
        text_b = json.dumps(spec_b.model_dump(mode="json", exclude_defaults=True), indent=2, ensure_ascii=False)
        runs = await asyncio.to_thread(agents.store.runs, name, 20)
        return console.page(
            request,
            "agent.html",
            viewer,
            name=name,
            kind=latest_spec.kind.value,
            latest=latest,
            a=left,
            b=right,
            diff=side_by_side(text_a, text_b),
            runs=runs,
            **extra,
        )

    @web.post("/agents/{name}/run")
    @page
    async def run(request: Request, name: str) -> Response:
        viewer, form = await console.check_post(request)
        visible(viewer, name)
        text = form.get("input", "")
        if not text.strip():
            raise Refused(400, "input: write the text the agent should work on")
        if len(text) > MAX_INPUT:
            raise Refused(400, f"input: at most {MAX_INPUT:,} characters here; send longer inputs over the API")
        try:
            async with asyncio.timeout(timeout_s):
                done = await agents.run(name, text, caller=viewer.principal.caller("console"))
        except TimeoutError:
            raise Refused(
                504, f"the agent took longer than {timeout_s:g} s (`request_timeout_s` under [server])"
            ) from None
        except BrickyardError as exc:
            raise Refused(400, f"the run failed: {exc}") from None
        return await _agent(request, viewer, name, None, None, ran=done.trace.to_dict())

    @web.get("/agents/runs/{run_id}")
    @page
    async def trace(request: Request, run_id: str) -> Response:
        viewer = console.require(request)
        try:
            found = await asyncio.to_thread(agents.store.run, run_id)
        except UserError:
            raise Refused(404, f"no agent run {run_id[:40]}") from None
        visible(viewer, str(found.get("agent")))
        return console.page(request, "agent_trace.html", viewer, trace=found)

    return web
