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
import json
import math
import re
import threading
from dataclasses import dataclass
from typing import Any

from brickyard._errors import UnknownEndpointError
from brickyard.agents.sql_tool import (  # the read-only checks, reused
    SQLQueryError,
    SQLRefusedError,
    SQLTimeoutError,
    _TreeChecker,
)
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult
from brickyard.models.base import Model, WrapperModel
from brickyard.models.caller import caller_scope
from brickyard.server.errors import APIError
from brickyard.sql.duckdb import MACROS, WAREHOUSE_NAME, connect
from brickyard.workspace import Workspace

AI_FUNCTIONS = frozenset(re.findall(r"CREATE OR REPLACE MACRO (\w+)\(", MACROS)) - {"vector_search"}
_NOT_HERE = ("pragma", "call", "set", "reset", "describe", "show", "summarize")


@dataclass
class SQLResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    cost_usd: float


class _CallerModel(WrapperModel):
    """Charges every call to `caller` (the SQL engine calls models from its own threads and loop)."""

    def __init__(self, inner: Model, caller: str | None) -> None:
        super().__init__(inner)
        self._caller = caller

    async def complete(self, request: ChatRequest) -> ChatResult:
        with caller_scope(self._caller):
            return await self.inner.complete(request)

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        with caller_scope(self._caller):
            return await self.inner.embed(texts)


class _CallerRegistry:
    """The server's registry as one query sees it: same models, each call charged to the caller."""

    def __init__(self, registry: Any, caller: str | None) -> None:
        self._registry, self._caller = registry, caller
        self._models: dict[str, Model] = {}

    def get(self, name: str) -> Model:
        if name not in self._models:
            # as over HTTP, only what brickyard.toml defines is served: never a raw `provider:model` id
            # (a `function:` id would import and call any module; an `openai:` id would run unpriced)
            if self._registry.canonical(name) not in self._registry.endpoint_names():
                known = ", ".join(sorted({*self._registry.endpoint_names(), *self._registry.settings.aliases}))
                raise UnknownEndpointError(
                    f"`{name}` is not an endpoint of this server; model ids (`provider:name`) are not served. "
                    f"Fix: name an endpoint or alias (endpoints: {known})"
                )
            self._models[name] = _CallerModel(self._registry.get(name), self._caller)
        return self._models[name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


class _Borrowed(Workspace):
    """The server's workspace lent to one query: shared settings, ledger and models; closing it closes nothing."""

    def __init__(self, workspace: Workspace, caller: str | None) -> None:
        super().__init__(workspace.path, env=workspace.env, cache=workspace.cache)
        self.__dict__["settings"] = workspace.settings
        self.__dict__["store"] = workspace.store
        self.__dict__["payloads"] = workspace.payloads
        self.__dict__["registry"] = _CallerRegistry(workspace.registry, caller)

    async def aclose(self) -> None:
        return None


@dataclass
class Spend:
    """What a query spent on AI calls, known whether it succeeded or failed (the caller is charged either way)."""

    usd: float = 0.0


def run_sql(
    workspace: Workspace,
    sql: str,
    *,
    caller: str | None,
    row_limit: int,
    timeout_s: float,
    max_cost_usd: float | None,
    spend: Spend | None = None,
) -> SQLResult:
    """Check and run one query (blocking; call it in a thread). `spend` receives its cost, even on failure."""
    import duckdb

    path = workspace.path / WAREHOUSE_NAME
    if not path.exists():
        raise APIError(400, "the workspace has no warehouse yet. Fix: load a table (brickyard load FILE TABLE)")
    # always capped, so the spend is counted even when the key has no budget (an infinite cap refuses nothing)
    cap = max_cost_usd if max_cost_usd is not None else float("inf")
    con = connect(_Borrowed(workspace, caller), database=":memory:", max_cost_usd=cap)
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
        raw.execute("SET enable_external_access = false")
        raw.execute("SET lock_configuration = true")
        query = check(raw, sql)
        columns, rows, truncated = _execute(raw, query, row_limit, timeout_s)
        spent = con.brickyard.cap.spent_usd if con.brickyard.cap else 0.0
        return SQLResult(columns, [[_cell(v) for v in row] for row in rows], truncated, spent)
    finally:
        if spend is not None and con.brickyard.cap is not None:
            spend.usd = con.brickyard.cap.spent_usd
        con.close()


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


def _execute(con: Any, query: str, row_limit: int, timeout_s: float) -> tuple[list[str], list[Any], bool]:
    import duckdb

    wrapped = f"SELECT * FROM (\n{query}\n) AS brickyard_answer LIMIT {row_limit + 1}"
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
    text = str(exc).replace("Python exception occurred while executing the UDF: ", "").strip()
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
