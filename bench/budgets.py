"""Budget integrity: every path of issue 10's table run for real, with the limit, the spend, the calls sent and refused.

One fault-injecting fake upstream (`brickyard.testing.upstream.FakeUpstream`, in this process) serves
`openai:fake-gpt` (priced $1000 per million tokens both ways), `openai:fake-down` (always 503: a primary that is
out) and `openai:fake-embed` ($1000 per million input tokens). Every prompt is 40 characters (10 tokens) and
every answer `"echo: " + prompt` (11 tokens), so a call costs exactly 0.021 USD and 16 fit in 0.34; an
embedding of one 40-character text costs 0.01, so 3 fit in 0.035.

Each path runs on a fresh workspace through the surface a user would use: `brickyard sql` (the CLI, in its own
process) or `brickyard serve --workers N` (real processes) with a key from `brickyard keys create`. The figures
come from outside the gateway: calls sent are the upstream's own counters, spend is read from the usage ledger
after the gateway exited, refusals are what the client got back (429s, per-row errors) and the ledger's
`budget_exceeded` records. The PostgreSQL paths (`[store] url`) use a server this module starts and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import free_port, fresh_workspace, save
from bench.gateway import _brickyard_bin, _process, _stop, _wait_ready
from bench.pg import Postgres, postgres_server
from brickyard.testing.upstream import FakeUpstream
from brickyard.workspace import Workspace

LIMIT = 0.34
EMBED_LIMIT = 0.035
CALL_USD = 0.021
EMBED_USD = 0.01
CLIENTS = 64
KEY = "team"
UPSTREAM_LATENCY_S = 0.02
_NEED = re.compile(r"need about ([0-9.]+) USD")


def _down(body: dict[str, Any]) -> Any:
    """`fake-down` always answers 503: a primary that is out."""
    if body.get("model") == "fake-down":
        return 503, {}, {"error": {"message": "down", "type": "server_error"}}
    return None


def prompt(i: int) -> str:
    """40 characters: 10 prompt tokens at the fake upstream; the answer `echo: ...` is 11 tokens."""
    return f"row {i:04d} ".ljust(40, "x")


@dataclass
class Setup:
    """A workspace's endpoints and budgets for one path."""

    paid_max_tokens: int | None = None
    flaky_priced: bool = False
    budgets: dict[str, float] = field(default_factory=dict)
    store_url: str | None = None

    def toml(self, base_url: str) -> str:
        common = f'base_url = "{base_url}"\ncache = false\nmax_retries = 0\nmax_concurrency = 64\n'
        price = "price_input_per_1m = 1000\nprice_output_per_1m = 1000\n"
        text = (
            f'[endpoints.paid]\nmodel = "openai:fake-gpt"\n{common}{price}'
            + (f"max_tokens = {self.paid_max_tokens}\n" if self.paid_max_tokens else "")
            + f'\n[endpoints.flaky]\nmodel = "openai:fake-down"\n{common}fallbacks = ["paid"]\n'
            + (price if self.flaky_priced else "")
            + f'\n[endpoints.emb]\nmodel = "openai:fake-embed"\n{common}price_input_per_1m = 1000\n'
        )
        for endpoint, limit in self.budgets.items():
            text += f'\n[[budgets]]\nendpoint = "{endpoint}"\nlimit_usd = {limit}\nwindow = "day"\n'
        if self.store_url:
            text += f'\n[store]\nurl = "{self.store_url}"\n'
        return text


# ---------------------------------------------------------------- what happened, from outside


def upstream_counts(up: FakeUpstream) -> dict[str, int]:
    """Calls the upstream received since its last reset, by model, and how many it answered with 2xx."""
    by_model = Counter(str(body.get("model")) for body in up.received_bodies)
    return {"total": up.requests, "answered_2xx": up.completed, **{m: by_model[m] for m in sorted(by_model)}}


def ledger(path: Path, *, endpoint: str | None = None, key: str | None = None) -> dict[str, Any]:
    """Spend in the budget's scope (the store's own sum), and the usage records by endpoint and status."""
    ws = Workspace(path)
    try:
        store = ws.store
        records = store.usage()
        scope_spent = (
            store.spent_usd(since=0, endpoint=endpoint, key=key)
            if endpoint or key
            else sum(r.cost_usd for r in records)
        )
    finally:
        with contextlib.suppress(Exception):
            ws.store.close()
    by: dict[str, dict[str, Any]] = {}
    for r in records:
        row = by.setdefault(r.endpoint, {"usd": 0.0})
        row[r.status] = row.get(r.status, 0) + 1
        row["usd"] += r.cost_usd
    return {
        "spent_usd": scope_spent,
        "spent_total_usd": sum(r.cost_usd for r in records),
        "ok_records": sum(r.status == "ok" for r in records),
        "budget_exceeded_records": sum(r.status == "budget_exceeded" for r in records),
        "by_endpoint": by,
    }


def _reservation(message: str | None) -> float | None:
    found = _NEED.search(message or "")
    return float(found.group(1)) if found else None


# ---------------------------------------------------------------- SQL through the CLI


def run_sql(path: Path, select: str, rows: int, *, max_cost: float | None = None) -> dict[str, Any]:
    """`brickyard sql` in its own process: a table of `rows` 40-character texts, then `select` copied to JSON."""
    out = Path(tempfile.mkdtemp(prefix="brickyard-bench-sql-")) / "rows.json"
    text = (
        f"CREATE OR REPLACE TABLE t AS SELECT i, rpad('row ' || lpad(i::VARCHAR, 4, '0') || ' ', 40, 'x') AS txt "
        f"FROM range({rows}) r(i);\nCOPY ({select}) TO '{out}' (FORMAT JSON);"
    )
    cmd = [_brickyard_bin(), "sql", "--workspace", str(path), *(["--max-cost", str(max_cost)] if max_cost else [])]
    started = time.perf_counter()
    done = subprocess.run([*cmd, text], capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    values = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return {"exit_code": done.returncode, "rows": values, "stderr": done.stderr.strip()[-600:], "seconds": seconds}


def sql_outcome(run: dict[str, Any], rows: int, column: str = "r") -> dict[str, Any]:
    """Rows served and refused: per row with `failOnError => false`, else the whole query failed."""
    values = run["rows"]
    if not values:  # a strict query failed as a whole: every row is refused (or failed)
        by_budget = "budget" in run["stderr"] or "cost cap" in run["stderr"]
        return {
            "served": 0,
            "refused": rows if by_budget else 0,
            "errors": 0 if by_budget else rows,
            "message": run["stderr"].replace("\n", " "),
        }
    served = refused = errors = 0
    message = None
    for row in values:
        value = row[column]
        if isinstance(value, dict) and "errorMessage" in value:
            error = value["errorMessage"]
            if value.get("result") is not None:
                served += 1
            elif error and ("budget" in error or "cost cap" in error):
                refused += 1
                message = message or error
            else:
                errors += 1
                message = message or error
        elif value is not None:
            served += 1
        else:
            errors += 1
    return {"served": served, "refused": refused, "errors": errors, "message": message}


def ai_query(endpoint: str, max_tokens: int | None) -> str:
    params = f", modelParameters => {{'max_tokens': {max_tokens}}}" if max_tokens else ""
    return f"SELECT i, ai_query('{endpoint}', txt, failOnError => false{params}) AS r FROM t ORDER BY i"


# ---------------------------------------------------------------- the server


def create_key(path: Path, endpoints: str, budget: str | None) -> str:
    """`brickyard keys create`; the secret is printed alone on stdout."""
    cmd = [_brickyard_bin(), "keys", "create", "--name", KEY, "--endpoints", endpoints, "--workspace", str(path)]
    done = subprocess.run([*cmd, *(["--budget-usd", budget] if budget else [])], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"keys create failed: {done.stdout}{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Reply:
    status: int
    text: str = ""
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


async def _post(base: str, key: str, route: str, body: dict[str, Any]) -> Reply:
    """One request on its own connection (so every worker takes some); a stream is read to its end."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=120) as http:
        if body.get("stream"):
            async with http.stream("POST", base + route, json=body, headers=headers) as reply:
                if reply.status_code != 200:
                    raw = json.loads(await reply.aread())
                    return Reply(
                        reply.status_code, message=raw.get("error", {}).get("message"), headers=dict(reply.headers)
                    )
                pieces: list[str] = []
                error = None
                async for line in reply.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line.removeprefix("data: "))
                    if "error" in chunk:
                        error = chunk["error"].get("message")
                    for choice in chunk.get("choices") or []:
                        pieces.append((choice.get("delta") or {}).get("content") or "")
                return Reply(200 if error is None else 599, "".join(pieces), error)
        reply = await http.post(base + route, json=body, headers=headers)
        data = reply.json()
        message = data.get("error", {}).get("message") if reply.status_code != 200 else None
        return Reply(reply.status_code, json.dumps(data)[:200], message, dict(reply.headers))


def server_outcome(replies: list[Reply], stream: bool = False) -> dict[str, Any]:
    statuses = Counter(r.status for r in replies)
    refusals = [r for r in replies if r.status == 429]
    served = [r for r in replies if r.status == 200 and (not stream or r.text.startswith("echo: row"))]
    first = refusals[0] if refusals else None
    return {
        "served": len(served),
        "refused": len(refusals),
        "errors": len(replies) - len(served) - len(refusals),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "message": first.message if first else None,
        "refusal_headers": (
            {h: first.headers[h] for h in ("retry-after", "x-should-retry") if h in first.headers} if first else None
        ),
    }


def serve_and_flood(
    path: Path, workers: int, key: str, route: str, bodies: list[dict[str, Any]], logs: Path
) -> tuple[list[Reply], dict[str, Any]]:
    """Start `brickyard serve --workers N`, send every body at once, stop it gracefully (the ledger is flushed)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = logs / f"serve-{path.name}-{workers}.log"
    cmd = [_brickyard_bin(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with _process([*cmd, "--workspace", str(path)], log) as proc:
        startup_s = _wait_ready(proc, base + "/readyz", log)

        async def flood() -> list[Reply]:
            return list(await asyncio.gather(*(_post(base, key, route, b) for b in bodies)))

        started = time.perf_counter()
        replies = asyncio.run(flood())
        seconds = time.perf_counter() - started
        _stop(proc)
        return replies, {"startup_s": startup_s, "seconds": seconds, "exit_code": proc.returncode}


def chat_bodies(model: str, n: int, *, max_tokens: int | None, stream: bool = False) -> list[dict[str, Any]]:
    extra: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens else {}
    if stream:
        extra |= {"stream": True, "stream_options": {"include_usage": True}}
    return [{"model": model, "messages": [{"role": "user", "content": prompt(i)}], **extra} for i in range(n)]


# ---------------------------------------------------------------- the paths


@dataclass
class Case:
    """One row of the table: what was tried, on which surface and store, and what the issue measured before."""

    id: str
    tried: str
    surface: str
    limit_usd: float
    scope: str
    before: str
    run: Callable[[Path, FakeUpstream, Path], dict[str, Any]]
    setup: Setup
    store: str = "sqlite"
    workers: int | None = None


def _sql_path(select: str, rows: int, max_cost: float | None = None) -> Callable[..., dict[str, Any]]:
    def run(path: Path, up: FakeUpstream, logs: Path) -> dict[str, Any]:
        done = run_sql(path, select, rows, max_cost=max_cost)
        return sql_outcome(done, rows) | {"rows": rows, "seconds": done["seconds"], "exit_code": done["exit_code"]}

    return run


def _server_path(
    model: str,
    route: str,
    n: int,
    workers: int,
    budget: str | None,
    *,
    max_tokens: int | None = None,
    stream: bool = False,
    embed: bool = False,
) -> Callable[..., dict[str, Any]]:
    def run(path: Path, up: FakeUpstream, logs: Path) -> dict[str, Any]:
        key = create_key(path, "paid,flaky,emb", budget)
        if embed:
            bodies = [{"model": model, "input": [prompt(i)]} for i in range(n)]
        else:
            bodies = chat_bodies(model, n, max_tokens=max_tokens, stream=stream)
        replies, timing = serve_and_flood(path, workers, key, route, bodies, logs)
        return server_outcome(replies, stream) | {"requests": n} | timing

    return run


def paths(pg: bool) -> list[Case]:
    key_budget = f"{LIMIT}/day"
    chat, emb = "/v1/chat/completions", "/v1/embeddings"
    out = [
        Case(
            "a-sql",
            "endpoint budget 0.035 USD on a priced embedder; 10 rows of `ai_embed`",
            "`brickyard sql`",
            EMBED_LIMIT,
            "endpoint:emb",
            "10 of 10 ran (0.10 USD)",
            _sql_path("SELECT i, ai_embed(txt, endpoint => 'emb') AS r FROM t ORDER BY i", 10),
            Setup(budgets={"emb": EMBED_LIMIT}),
        ),
        Case(
            "a-server",
            "endpoint budget 0.035 USD; 20 `POST /v1/embeddings` at once",
            "`brickyard serve`",
            EMBED_LIMIT,
            "endpoint:emb",
            "20 of 20 answered 200 (0.20 USD)",
            _server_path("emb", emb, 20, 1, None, embed=True),
            Setup(budgets={"emb": EMBED_LIMIT}),
            workers=1,
        ),
        Case(
            "b",
            "`--max-cost 0.34`, 64 rows, unpriced primary failing, priced fallback (`max_tokens` 11)",
            "`brickyard sql`",
            LIMIT,
            "query",
            "1.36 USD spent (4×)",
            _sql_path(ai_query("flaky", 11), CLIENTS, max_cost=LIMIT),
            Setup(),
        ),
    ]
    for workers in (1, 4):
        out.append(
            Case(
                f"c-{workers}w",
                f"key `--budget-usd {key_budget}`, unpriced primary failing, priced fallback, 64 clients",
                "`brickyard serve`",
                LIMIT,
                f"key:{KEY}",
                "1.01 USD spent (3×)",
                _server_path("flaky", chat, CLIENTS, workers, key_budget, max_tokens=11),
                Setup(),
                workers=workers,
            )
        )
    for default in (None, 16):
        said = f"endpoint `max_tokens = {default}`" if default else "no endpoint default"
        out += [
            Case(
                f"d-sql{'-default' if default else ''}",
                f"64 rows, no `max_tokens` on the call, endpoint budget 0.34 ({said})",
                "`brickyard sql`",
                LIMIT,
                "endpoint:paid",
                "0.46 USD (+36%)" if not default else "-",
                _sql_path(ai_query("paid", None), CLIENTS),
                Setup(paid_max_tokens=default, budgets={"paid": LIMIT}),
            ),
            Case(
                f"d-server{'-default' if default else ''}",
                f"64 clients, no `max_tokens` on the call, key budget 0.34 ({said})",
                "`brickyard serve`",
                LIMIT,
                f"key:{KEY}",
                "0.53 USD (+55%)" if not default else "-",
                _server_path("paid", chat, CLIENTS, 1, key_budget),
                Setup(paid_max_tokens=default),
                workers=1,
            ),
        ]
    for workers in (2, 4):
        out.append(
            Case(
                f"e-{workers}w",
                "64 clients, `max_tokens` 11 covering the answer, key budget 0.34",
                "`brickyard serve`",
                LIMIT,
                f"key:{KEY}",
                "0.62 USD (+81%) with 2 workers" if workers == 2 else "-",
                _server_path("paid", chat, CLIENTS, workers, key_budget, max_tokens=11),
                Setup(),
                workers=workers,
            )
        )
    out += [
        Case(
            "f",
            "endpoint budget 0.34 on a priced primary that always fails (fallback unbudgeted), 200 rows",
            "`brickyard sql`",
            LIMIT,
            "endpoint:flaky",
            '171 of 200 rows refused ("spent: 0.3380" while the primary had spent 0.00)',
            _sql_path(ai_query("flaky", 11), 200),
            Setup(flaky_priced=True, budgets={"flaky": LIMIT}),
        ),
        Case(
            "f-spent",
            "endpoint budget 0.001 on that primary (below one call): every row refused there, 200 rows",
            "`brickyard sql`",
            0.001,
            "endpoint:flaky",
            "the refusal never fell through to the fallback",
            _sql_path(ai_query("flaky", 11), 200),
            Setup(flaky_priced=True, budgets={"flaky": 0.001}),
        ),
        Case(
            "g-stream",
            "64 streamed calls at once (`max_tokens` 11), key budget 0.34, 2 workers",
            "`brickyard serve`",
            LIMIT,
            f"key:{KEY}",
            "-",
            _server_path("paid", chat, CLIENTS, 2, key_budget, max_tokens=11, stream=True),
            Setup(),
            workers=2,
        ),
        Case(
            "g-embed",
            "64 `POST /v1/embeddings` at once, key budget 0.34, 2 workers",
            "`brickyard serve`",
            LIMIT,
            f"key:{KEY}",
            "budgets never checked for embeddings",
            _server_path("emb", emb, CLIENTS, 2, key_budget, embed=True),
            Setup(),
            workers=2,
        ),
    ]
    if pg:
        for base in [p for p in out if p.id in ("c-1w", "c-4w", "e-2w", "e-4w")]:
            out.append(
                Case(
                    f"h-{base.id}",
                    base.tried,
                    base.surface,
                    base.limit_usd,
                    base.scope,
                    "-",
                    base.run,
                    base.setup,
                    store="postgresql",
                    workers=base.workers,
                )
            )
    return out


def run_path(p: Case, up: FakeUpstream, logs: Path, pg: Postgres | None) -> dict[str, Any]:
    setup = p.setup
    if p.store == "postgresql":
        assert pg is not None
        setup = Setup(setup.paid_max_tokens, setup.flaky_priced, setup.budgets, pg.database(p.id.replace("-", "_")))
    ws = fresh_workspace(setup.toml(up.base_url))
    up.reset()
    started = time.perf_counter()
    outcome = p.run(ws.path, up, logs)
    kind, _, name = p.scope.partition(":")
    books = ledger(ws.path, endpoint=name if kind == "endpoint" else None, key=name if kind == "key" else None)
    spent = books["spent_usd"]
    return {
        "id": p.id,
        "tried": p.tried,
        "surface": p.surface,
        "store": p.store,
        "workers": p.workers,
        "limit_usd": p.limit_usd,
        "scope": p.scope,
        "spent_usd": round(spent, 6),
        "spent_total_usd": round(books["spent_total_usd"], 6),
        "holds": spent <= p.limit_usd + 1e-9,
        "sent": upstream_counts(up),
        "served": outcome["served"],
        "refused": outcome["refused"],
        "errors": outcome["errors"],
        "reserved_per_call_usd": _reservation(outcome.get("message")),
        "refusal": outcome.get("message"),
        "before": p.before,
        "ledger": books,
        "outcome": outcome,
        "workspace": str(ws.path),
        "seconds": time.perf_counter() - started,
    }


@contextlib.contextmanager
def _maybe_postgres(wanted: bool) -> Iterator[Postgres | None]:
    if not wanted:
        yield None
        return
    with postgres_server() as pg:
        yield pg


def run(postgres: bool = True, only: set[str] | None = None) -> dict[str, Any]:
    """Every path (or the ids in `only`, for a quick check); results in bench/results/budgets.json."""
    logs = Path(tempfile.mkdtemp(prefix="brickyard-bench-budgets-"))
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {
        "limit_usd": LIMIT,
        "call_usd": CALL_USD,
        "embed_usd": EMBED_USD,
        "clients": CLIENTS,
        "upstream_latency_s": UPSTREAM_LATENCY_S,
        "load_average_before": os.getloadavg(),
        "logs": str(logs),
    }
    with (
        FakeUpstream(latency_s=UPSTREAM_LATENCY_S, scenario=_down, retry_after_s=0.0) as up,
        _maybe_postgres(postgres) as pg,
    ):
        if pg is not None:
            figures["postgres"] = pg.version
        for p in paths(pg is not None):
            if only is not None and p.id not in only:
                continue
            print(f"-- {p.id}: {p.tried}", flush=True)
            try:
                row = run_path(p, up, logs, pg)
            except Exception as exc:  # one broken path must not hide the others
                row = {
                    "id": p.id,
                    "tried": p.tried,
                    "surface": p.surface,
                    "store": p.store,
                    "workers": p.workers,
                    "limit_usd": p.limit_usd,
                    "failed": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()[-2000:],
                }
            print(
                "   "
                + json.dumps({k: row.get(k) for k in ("spent_usd", "holds", "sent", "served", "refused", "errors")}),
                flush=True,
            )
            rows.append(row)
    figures["paths"] = rows
    figures["all_hold"] = all(r.get("holds") for r in rows)
    figures["seconds"] = time.perf_counter() - started
    figures["load_average_after"] = os.getloadavg()
    save("budgets", figures)
    return figures
