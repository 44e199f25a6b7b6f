"""The SQL page: an editor, Estimate, and Run as a job (progress, cancel, paged results, CSV), as `POST /api/sql`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from brickyard._errors import BrickyardError
from brickyard.server.errors import APIError
from brickyard.server.sql_api import AI_FUNCTIONS, estimate_sql, run_sql
from brickyard.store.base import Store
from brickyard.web.console import Console, Refused, Viewer
from brickyard.web.home_pages import guarded
from brickyard.web.jobs import RUNNING, SQLJob

PAGE_ROWS = 50
HINTS = {
    "ai_query": "ai_query('endpoint', prompt, failOnError => false)",
    "ai_classify": "ai_classify(text, ARRAY['label_a', 'label_b'])",
    "ai_extract": "ai_extract(text, ARRAY['person', 'place'])",
    "ai_analyze_sentiment": "ai_analyze_sentiment(text)",
    "ai_summarize": "ai_summarize(text, max_words := 20)",
    "ai_translate": "ai_translate(text, 'fr')",
    "ai_fix_grammar": "ai_fix_grammar(text)",
    "ai_mask": "ai_mask(text, ARRAY['email', 'phone'])",
    "ai_similarity": "ai_similarity(text_a, text_b)",
    "ai_filter": "ai_filter('is about billing', text)",
    "ai_gen": "ai_gen(prompt)",
    "ai_extract_json": 'ai_extract_json(text, \'{"type": "object"}\')',
    "ai_embed": "ai_embed(text)",
    "ai_agg": "ai_agg(text, 'summarise these')",
}


def router(console: Console) -> APIRouter:
    web = APIRouter(include_in_schema=False)
    state = console.state
    server = state.settings.server
    page = guarded(console)

    schemas: dict[tuple[int, ...], dict[str, list[str]]] = {}

    def schema() -> dict[str, list[str]]:
        """The warehouse's tables and columns, read again only when its files change."""
        path = state.workspace.warehouse_path
        stamp = tuple(
            n
            for p in (path, path.with_name(path.name + ".wal"))
            if p.exists()
            for n in (p.stat().st_mtime_ns, p.stat().st_size)
        )
        if stamp not in schemas:
            schemas.clear()
            schemas[stamp] = warehouse_schema(path)
        return schemas[stamp]

    def may_run(viewer: Viewer) -> None:
        if not viewer.sql:
            raise Refused(403, f"key {viewer.name} may not run SQL. Fix: ask an admin for a key created with --sql")

    def owned(viewer: Viewer, job_id: str, *, with_rows: bool = True) -> SQLJob:
        job = console.jobs.get(job_id, with_rows=with_rows)
        if job is None or job.kind != "sql" or (job.owner != viewer.principal.name and not viewer.admin):
            raise Refused(404, f"no query job {job_id[:40]} (jobs are kept for an hour). Fix: run the query again")
        return job

    @web.get("/sql")
    @page
    async def sql_page(request: Request, job: str | None = None) -> Response:
        viewer = console.require(request)
        current = owned(viewer, job) if job else None
        hints = {n: HINTS.get(n, f"{n}(...)") for n in sorted(AI_FUNCTIONS) if not n.startswith("_")}
        tables = await asyncio.to_thread(schema)
        return console.page(
            request,
            "sql.html",
            viewer,
            job=current,
            hints=hints,
            tables=tables,
            text=current.sql if current else "",
            row_limit=server.sql_row_limit,
            page_rows=job_page(current, 1) if current else None,
        )

    @web.post("/sql/estimate")
    @page
    async def estimate(request: Request) -> Response:
        viewer, form = await console.check_post(request)
        may_run(viewer)
        text = form.get("sql", "")
        try:
            figures = await asyncio.to_thread(
                estimate_sql,
                state.workspace,
                text,
                caller=viewer.principal.caller("console"),
                row_limit=server.sql_row_limit,
                timeout_s=server.sql_timeout_s,
            )
        except (APIError, BrickyardError) as exc:
            raise Refused(400, getattr(exc, "message", None) or str(exc)) from None
        return console.page(request, "sql_estimate.html", viewer, figures=figures)

    @web.post("/sql/jobs")
    @page
    async def start(request: Request) -> Response:
        viewer, form = await console.check_post(request)
        may_run(viewer)
        text = form.get("sql", "")
        if not text.strip():
            raise Refused(400, "the SQL is empty. Fix: write one SELECT query")
        caller = viewer.principal.caller("console")

        def run(job_id: str, watch: Any) -> Any:
            return run_sql(
                state.workspace,
                text,
                caller=caller,
                row_limit=server.sql_row_limit,
                timeout_s=server.sql_timeout_s,
                max_cost_usd=None,
                watch=watch,
            )

        def counter(query: str, started: float) -> dict[str, Any]:
            return calls_of(state.workspace.store, query, viewer.principal.name, started)

        job = console.jobs.start(viewer.principal.name, text, run, counter)
        response = console.page(request, "sql_job.html", viewer, job=job, page_rows=job_page(job, 1))
        response.headers["HX-Push-Url"] = f"/sql?job={job.id}"
        return response

    @web.get("/sql/jobs/{job_id}")
    @page
    async def follow(request: Request, job_id: str, page: int = 1) -> Response:
        viewer = console.require(request)
        job = owned(viewer, job_id)
        return console.page(request, "sql_job.html", viewer, job=job, page_rows=job_page(job, page))

    @web.post("/sql/jobs/{job_id}/cancel")
    @page
    async def cancel(request: Request, job_id: str) -> Response:
        viewer, _ = await console.check_post(request)
        job = owned(viewer, job_id, with_rows=False)
        if job.status == RUNNING:
            console.jobs.cancel(job.id)
        return console.page(request, "sql_job.html", viewer, job=job, page_rows=job_page(job, 1))

    @web.get("/sql/jobs/{job_id}/results.csv")
    @page
    async def download(request: Request, job_id: str) -> Response:
        viewer = console.require(request)
        job = owned(viewer, job_id)
        if job.status == RUNNING:
            raise Refused(409, "the query is still running. Fix: wait until it is done")
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(job.columns)
        for row in job.rows:
            writer.writerow([_csv_cell(v) for v in row])
        return Response(
            buffer.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="query-{job.id}.csv"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @web.get("/sql/jobs/{job_id}/results.parquet")
    @page
    async def download_parquet(request: Request, job_id: str) -> Response:
        viewer = console.require(request)
        job = owned(viewer, job_id)
        if job.status == RUNNING:
            raise Refused(409, "the query is still running. Fix: wait until it is done")
        data = await asyncio.to_thread(to_parquet, job.columns, job.rows)
        return Response(
            data,
            media_type="application/vnd.apache.parquet",
            headers={
                "Content-Disposition": f'attachment; filename="query-{job.id}.parquet"',
                "Cache-Control": "no-store",
            },
        )

    return web


def to_parquet(columns: list[str], rows: list[list[Any]]) -> bytes:
    """The rows as a Parquet file; a column whose values have no single Arrow type is written as JSON text."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise Refused(501, "Parquet needs pyarrow. Fix: pip install 'brickyard[sql]'") from None
    arrays = []
    for i in range(len(columns)):
        values = [row[i] for row in rows]
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            arrays.append(pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values]))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=columns), buffer)
    return buffer.getvalue()


def calls_of(store: Store, query: str, key: str | None, since: float) -> dict[str, Any]:
    """The AI calls a query made so far, from the ledger (queued records included): calls, errors, tokens.

    Every call of a query carries its cost cap's id as `extra.query` on its usage record."""
    records = [r for r in store.usage(since=since - 1, key=key) if r.extra.get("query") == query]
    return {
        "calls": len(records),
        "errors": sum(r.status != "ok" for r in records),
        "cache_hits": sum(r.cache_hit for r in records),
        "tokens": sum(r.input_tokens + r.output_tokens for r in records),
    }


def warehouse_schema(path: Path) -> dict[str, list[str]]:
    """The warehouse's tables and their columns, for the editor's completions (empty when it cannot be read)."""
    import duckdb

    if not path.exists():
        return {}
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS warehouse (READ_ONLY)")
        rows = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'warehouse' "
            "AND schema_name = 'main' ORDER BY table_name, column_index"
        ).fetchall()
    except duckdb.Error:
        return {}
    finally:
        con.close()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(str(table), []).append(str(column))
    return tables


def job_page(job: SQLJob, page: int) -> dict[str, Any]:
    """One page of a finished job's rows, and the cells that hold a per-row error."""
    pages = max(1, -(-len(job.rows) // PAGE_ROWS))
    page = min(max(page, 1), pages)
    rows = job.rows[(page - 1) * PAGE_ROWS : page * PAGE_ROWS]
    return {"page": page, "pages": pages, "rows": [[_display(v) for v in row] for row in rows]}


def _display(value: Any) -> dict[str, Any]:
    """A cell as text, flagged when it carries an AI function's per-row error (`errorMessage` set)."""
    error = isinstance(value, dict) and bool(value.get("errorMessage") or value.get("error_message"))
    if value is None:
        return {"text": "NULL", "null": True, "error": False}
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return {"text": text, "null": False, "error": error}


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # a spreadsheet must not run a cell as a formula
    return value
