"""`POST /api/sql`: one read-only SELECT on the warehouse, with AI functions, a row limit and a timeout.

The query passes the SQL tool's checks (`brickyard.agents.sql_tool`: DuckDB's parser, one SELECT, every table
read a warehouse table, no file readers, catalog views or functions with effects) with one difference: the
AI functions (`ai_classify`, `ai_query`, ...) are allowed. It runs on an in-memory DuckDB that has the AI
functions and attaches the warehouse file READ_ONLY, with external access off and the configuration
locked; the file is opened only for the query, so writers (the CLI) are blocked for no longer than that.
The AI calls are charged to the caller's key and capped at what is left of its budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brickyard.agents.sql_tool import (  # the read-only checks, reused
    SQLQueryError,
    SQLRefusedError,
    SQLTimeoutError,
    _TreeChecker,
)
from brickyard.models.base import Model
from brickyard.models.budget import CallerModel
from brickyard.models.calls import Caller
from brickyard.models.registry import Registry, Surface, Target
from brickyard.server.errors import APIError
from brickyard.sql.binding import QueryEstimate
from brickyard.sql.declarations import SQL_NAMES, public_message
from brickyard.sql.duckdb import connect
from brickyard.workspace import Workspace

AI_FUNCTIONS = SQL_NAMES - {"vector_search"}
_NOT_HERE = ("pragma", "call", "set", "reset", "describe", "show", "summarize")


@dataclass
class SQLResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    cost_usd: float


class _CallerRegistry:
    """The server's registry as one query sees it: the `served` surface only, each call made for the caller."""

    def __init__(self, registry: Registry, caller: Caller) -> None:
        self._registry, self._caller = registry, caller
        self._targets: dict[str, Target] = {}

    def resolve(self, name: str, surface: Surface = Surface.served) -> Target:
        if name not in self._targets:
            # as over HTTP: never a raw `provider:model` id, whatever the surface asked for
            target = self._registry.resolve(name, Surface.served)
            self._targets[name] = dataclasses.replace(target, model=CallerModel(target.model, self._caller))
        return self._targets[name]

    def get(self, name: str) -> Model:
        return self.resolve(name).model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


class _Borrowed(Workspace):
    """The server's workspace lent to one query: shared settings, ledger and models; closing it closes nothing."""

    def __init__(self, workspace: Workspace, caller: Caller) -> None:
        super().__init__(workspace.path, env=workspace.env, cache=workspace.cache)
        self.__dict__["settings"] = workspace.settings
        self.__dict__["store"] = workspace.store
        self.__dict__["payloads"] = workspace.payloads
        self.__dict__["registry"] = _CallerRegistry(workspace.registry, caller)

    async def aclose(self) -> None:
        return None


def run_sql(
    workspace: Workspace,
    sql: str,
    *,
    caller: Caller,
    row_limit: int,
    timeout_s: float,
    max_cost_usd: float | None,
    watch: Callable[[Any], None] | None = None,
) -> SQLResult:
    """Check and run one query (blocking; call it in a thread) with every AI call made for `caller`.

    `watch`, when given, is handed the connection before the query runs (to follow its progress or interrupt it).
    """
    # always capped, so the query's spend is counted (a cap this large refuses nothing)
    cap = max_cost_usd if max_cost_usd is not None else 1e12
    con = _open(workspace, caller, max_cost_usd=cap, dry_run=False)
    try:
        planned = _prepare(con, sql, row_limit)
        if watch is not None:
            watch(con)
        columns, rows, truncated = _execute(con.duckdb, planned, row_limit, timeout_s)
        spent = con.brickyard.cap.spent_usd if con.brickyard.cap else 0.0
        return SQLResult(columns, [[_cell(v) for v in row] for row in rows], truncated, spent)
    finally:
        con.close()


def estimate_sql(workspace: Workspace, sql: str, *, caller: Caller, row_limit: int, timeout_s: float) -> QueryEstimate:
    """What `run_sql` would spend on one query (calls, tokens, USD, cache hits), after the same checks; no model
    is called (a dry run: `ai_filter` passes every row, answers are counted at max_tokens)."""
    con = _open(workspace, caller, max_cost_usd=None, dry_run=True)
    try:
        _execute(con.duckdb, _prepare(con, sql, row_limit), row_limit, timeout_s)
        return con.brickyard.estimate()
    finally:
        con.close()


def _open(workspace: Workspace, caller: Caller, *, max_cost_usd: float | None, dry_run: bool) -> Any:
    """An in-memory DuckDB with the AI functions (made for `caller`) and the warehouse attached read-only."""
    import duckdb

    path = workspace.warehouse_path
    if not path.exists():
        raise APIError(400, "the workspace has no warehouse yet. Fix: load a table (brickyard load FILE TABLE)")
    con = connect(_Borrowed(workspace, caller), database=":memory:", max_cost_usd=max_cost_usd, dry_run=dry_run)
    try:
        raw = con.duckdb
        try:
            raw.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS warehouse (READ_ONLY)")
        except duckdb.Error as exc:
            raise APIError(
                503,
                f"the warehouse is open for writing elsewhere ({str(exc).splitlines()[0]}). Fix: retry shortly",
                "server_error",
                "warehouse_busy",
                headers={"Retry-After": "1"},
            ) from None
        raw.execute("USE warehouse")
        raw.execute("SET search_path = 'memory.main,warehouse.main'")  # fresh AI macros before stored ones
    except BaseException:
        con.close()
        raise
    return con


def _prepare(con: Any, sql: str, row_limit: int) -> str:
    """Check the query and plan it, then lock the configuration; returns the SQL to run."""
    raw = con.duckdb
    query = check(raw, sql)
    # planned before the configuration is locked: a LIMIT (and the row limit) stops model calls
    plan = con.plan(f"SELECT * FROM (\n{query}\n) AS brickyard_answer LIMIT {row_limit + 1}")
    for name, value in plan.settings.items():
        raw.execute(f"SET {name} = '{value}'")
    raw.execute("SET enable_external_access = false")
    raw.execute("SET lock_configuration = true")
    return str(plan.sql)


def check(con: Any, sql: str) -> str:
    """The one read-only SELECT `sql` holds (AI functions allowed), or `SQLRefusedError`."""
    import duckdb

    text = sql.strip().rstrip(";").strip()
    if not text:
        raise SQLRefusedError("the SQL is empty. Fix: write one SELECT query")
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise SQLQueryError(f"the SQL does not parse: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise _refused(f"it holds {len(statements)} statements; send exactly one")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise _refused(f"statement type {str(statement.type).rsplit('.', 1)[-1]}; only SELECT runs")
    first = re.sub(r"(--[^\n]*\n?|/\*.*?\*/|\s|\()+", " ", text, flags=re.DOTALL).strip().split(" ", 1)[0].lower()
    if first in _NOT_HERE:
        raise _refused(f"{first.upper()} is not available")
    query = str(statement.query).strip().rstrip(";").strip()
    (tree,) = con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    allowed = {
        (str(s).lower(), str(t).lower())
        for s, t in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'warehouse' AND NOT temporary "
            "UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = 'warehouse' "
            "AND NOT internal AND NOT temporary"
        ).fetchall()
    }
    user_functions = {
        str(n).lower()
        for (n,) in con.execute("SELECT DISTINCT function_name FROM duckdb_functions() WHERE NOT internal").fetchall()
    } - AI_FUNCTIONS
    parsed = json.loads(tree)
    if parsed.get("error"):
        raise _refused(f"it cannot be checked ({parsed.get('error_message', 'unknown error')})")
    checker = _TreeChecker(allowed, "warehouse", user_functions)
    for node in parsed.get("statements", []):
        problem = checker.first_problem(node)
        if problem:
            raise _refused(problem.replace("the SQL tool", "the SQL API"))
    return query


def _execute(con: Any, wrapped: str, row_limit: int, timeout_s: float) -> tuple[list[str], list[Any], bool]:
    """Run the query (already wrapped in `LIMIT row_limit + 1`) under the timeout."""
    import duckdb

    fired = threading.Event()

    def stop() -> None:
        fired.set()
        with contextlib.suppress(Exception):
            con.interrupt()

    timer = threading.Timer(timeout_s, stop)
    timer.daemon = True
    timer.start()
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(wrapped)
            columns = [d[0] for d in con.description or []]
            rows = con.fetchall()
        finally:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
    except duckdb.Error as exc:
        if fired.is_set():
            raise SQLTimeoutError(
                f"the query ran longer than {timeout_s:g} s and was stopped. Fix: filter or aggregate more, "
                "or raise `sql_timeout_s` under [server]"
            ) from None
        raise SQLQueryError(f"the query failed: {_first_line(exc)}") from None
    finally:
        timer.cancel()
    return columns, rows[:row_limit], len(rows) > row_limit


def _refused(reason: str) -> SQLRefusedError:
    return SQLRefusedError(f"the SQL API only runs one read-only SELECT; refused ({reason})")


def _first_line(exc: BaseException) -> str:
    text = public_message(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    return str(value)
