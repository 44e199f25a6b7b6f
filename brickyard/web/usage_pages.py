"""Usage and budgets (every key sees its own usage; an admin sees all) and API keys (admin only)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from brickyard._errors import UserError
from brickyard.server.keys import parse_budget, parse_scopes
from brickyard.web import usage
from brickyard.web.console import Console, Refused
from brickyard.web.home_pages import guarded


def router(console: Console) -> APIRouter:
    web = APIRouter(include_in_schema=False)
    workspace = console.workspace
    page = guarded(console)

    @web.get("/usage")
    @page
    async def usage_page(request: Request, span: str = "7d", bucket: str = "day", by: str = "endpoint") -> Response:
        viewer = console.require(request)
        if span not in usage.SPANS or bucket not in ("hour", "day") or by not in usage.GROUPS:
            raise Refused(
                400,
                f"span, bucket or by not understood. Fix: span one of {list(usage.SPANS)}, bucket hour or day, "
                f"by one of {list(usage.GROUPS)}",
            )
        if bucket == "hour" and usage.SPANS[span] > usage.SPANS["7d"]:
            raise Refused(400, "per hour covers at most 7 days. Fix: choose per day, or the last 24h or 7d")
        since = time.time() - usage.SPANS[span]
        store, key = workspace.store, viewer.usage_key

        def read() -> tuple[dict[str, Any], list[dict[str, Any]], list[usage.Burn]]:
            chart, endpoints = usage.overview(store, console.rollups, key=key, since=since, bucket=bucket, by=by)
            return chart, endpoints, usage.burns(workspace, key=key, admin=viewer.admin)

        chart, endpoints, burns = await asyncio.to_thread(read)
        return console.page(
            request,
            "usage.html",
            viewer,
            chart=chart,
            endpoints=endpoints,
            burns=burns,
            span=span,
            bucket=bucket,
            by=by,
            spans=list(usage.SPANS),
            groups=usage.GROUPS,
        )

    @web.get("/usage/payloads")
    @page
    async def payloads(request: Request, q: str = "", span: str = "7d") -> Response:
        viewer = console.require(request)
        since = time.time() - usage.SPANS.get(span, usage.SPANS["7d"])
        found, problem = await asyncio.to_thread(
            usage.search_payloads, workspace, key=viewer.usage_key, text=q[:500], since=since
        )
        return console.page(request, "payloads.html", viewer, records=found, problem=problem, q=q)

    @web.get("/keys")
    @page
    async def keys_page(request: Request) -> Response:
        viewer = console.require(request, admin=True)
        return console.page(request, "keys.html", viewer, keys=await asyncio.to_thread(workspace.keys.listing))

    @web.post("/keys")
    @page
    async def create_key(request: Request) -> Response:
        viewer, form = await console.check_post(request, admin=True)
        try:
            scopes = parse_scopes(form.get("scopes", ""))
            budget = parse_budget(form["budget"]) if form.get("budget", "").strip() else None
            rpm = _positive(form, "rpm")
            tpm = _positive(form, "tpm")
            key, secret = await asyncio.to_thread(
                workspace.keys.create,
                form.get("name", "").strip(),
                scopes,
                sql=form.get("sql") == "on",
                admin=form.get("admin") == "on",
                rpm=rpm,
                tpm=tpm,
                budget=budget,
            )
        except UserError as exc:
            listing = await asyncio.to_thread(workspace.keys.listing)
            return console.page(request, "keys.html", viewer, status=400, keys=listing, error=str(exc), form=form)
        listing = await asyncio.to_thread(workspace.keys.listing)
        return console.page(request, "keys.html", viewer, keys=listing, created=key, secret=secret)

    @web.post("/keys/{name}/revoke")
    @page
    async def revoke_key(request: Request, name: str) -> Response:
        viewer, _ = await console.check_post(request, admin=True)
        try:
            revoked = await asyncio.to_thread(workspace.keys.revoke, name)
        except UserError as exc:
            raise Refused(404, str(exc)) from None
        listing = await asyncio.to_thread(workspace.keys.listing)
        return console.page(request, "keys.html", viewer, keys=listing, revoked=revoked)

    return web


def _positive(form: dict[str, str], name: str) -> int | None:
    value = form.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) <= 0:
        raise UserError(f"{name} must be a positive whole number, not {value[:20]!r}. Fix: e.g. 60, or leave it empty")
    return int(value)
