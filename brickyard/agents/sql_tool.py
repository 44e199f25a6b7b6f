"""Text-to-SQL over warehouse tables, read-only.

A model writes one DuckDB query for a question; the query is checked before it runs and runs on a
locked-down connection. Three layers, each enough to stop a write on its own:

1. DuckDB's own parser: exactly one statement, of type SELECT (`con.extract_statements`).
2. DuckDB's own parse tree (`json_serialize_sql`): every table read is an allowed warehouse table
   or a CTE in scope (so no replacement scans of files, URLs or Python variables); table functions
   are limited to a few generators (`range`, `unnest`, ...), so no `read_csv`, `read_parquet`,
   `glob`, `query`, `query_table`, `json_execute_serialized_sql`, `duckdb_secrets()`, `pragma_*`;
   scalar functions with effects or that reveal settings (`nextval`, `current_setting`,
   `write_log`, ...) and user-defined macros are refused.
3. The engine: the warehouse is opened `read_only=True` with external access (files, network,
   extension installs) disabled and the configuration locked; every query runs in a transaction
   that is rolled back, under a row limit and a timeout (`interrupt()` from a timer thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from brickyard._errors import (
    InvalidRequestError,
    MissingExtraError,
    SQLQueryError,
    SQLRefusedError,
    SQLTimeoutError,
    SQLToolError,
    UserError,
)
from brickyard.agents.trace import Trace, TracingModel
from brickyard.functions._rows import DATA_RULE, delimited
from brickyard.models._types import ChatRequest, ChatResult
from brickyard.models.base import Model

SQL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sql": {"type": "string"}},
    "required": ["sql"],
    "additionalProperties": False,
}

# Table functions that only generate values; everything else (file readers, catalog and settings
# views, `query`/`query_table`, `json_execute_serialized_sql`, table macros) is refused.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})
# Scalar functions that change state, sleep, write logs or reveal settings and variables.
BLOCKED_FUNCTIONS = frozenset(
    {
        "nextval",
        "currval",
        "setseed",
        "write_log",
        "sleep_ms",
        "current_setting",
        "getvariable",
        "getenv",
        "query",
        "query_table",
        "json_execute_serialized_sql",
    }
)
BLOCKED_PREFIXES = ("read_", "duckdb_", "pragma_", "parquet_", "sniff_", "glob", "which_secret")
_SAMPLE_ROWS = 3
_CELL_CHARS = 80
_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.DOTALL)


class SQLRows(NamedTuple):
    """What `SQLTool.run` returns: column names, at most `row_limit` rows, and whether more existed."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False


@dataclass
class SQLAnswer:
    """The outcome of `SQLTool.ask`: the final SQL and its rows, or the error that stopped it."""

    question: str
    sql: str
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    error: str | None = None
    truncated: bool = False
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_text(self) -> str:
        """The answer as plain text for another model: the SQL, then the rows or the error."""
        head = f"SQL: {self.sql}" if self.sql else "SQL: (none)"
        if self.error is not None:
            return f"{head}\nerror: {self.error}"
        if not self.rows:
            return f"{head}\n(no rows)"
        lines = [head, " | ".join(self.columns)]
        lines += [" | ".join(_cell(v) for v in row) for row in self.rows]
        if self.truncated:
            lines.append(f"(only the first {len(self.rows)} rows are shown; the query returned more)")
        return "\n".join(lines)


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:
        raise MissingExtraError("duckdb", "sql") from exc
    return duckdb


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _short(sql: str, limit: int = 200) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class SQLTool:
    """Answers questions over warehouse tables with one read-only DuckDB query.

    `database` is the warehouse file (opened read-only here, with external access off) or an
    existing DuckDB connection (tests, in-memory data; each query then runs on a cursor in a
    transaction that is rolled back, and the parse-tree checks still apply). `tables` lists the
    tables and views it may read (`name` or `schema.name`; empty: all user tables). `readable_paths`
    are files or folders that allowed views may read (DuckDB's `allowed_paths`/`allowed_directories`);
    nothing else on disk or the network is reachable.
    """

    def __init__(
        self,
        database: str | Path | Any,
        tables: Sequence[str] = (),
        model: Model | None = None,
        *,
        row_limit: int = 100,
        timeout_s: float = 10.0,
        readable_paths: Sequence[str | Path] = (),
    ) -> None:
        if row_limit < 1:
            raise InvalidRequestError(f"row_limit must be at least 1, not {row_limit}")
        if timeout_s <= 0:
            raise InvalidRequestError(f"timeout_s must be positive, not {timeout_s}")
        self.tables = [t.strip() for t in tables if t.strip()]
        self.model = model
        self.row_limit = row_limit
        self.timeout_s = timeout_s
        duckdb = _duckdb()
        if isinstance(database, str | Path):
            self._con = _open_read_only(duckdb, Path(database), readable_paths)
            self._owns = True
        else:
            self._con = database
            self._owns = False

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the read-only connection (a connection passed in stays open)."""
        if self._owns:
            self._con.close()

    def __enter__(self) -> SQLTool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------------
    def allowed_tables(self) -> list[tuple[str, str]]:
        """The (schema, table) pairs the tool may read, resolved against the warehouse now."""
        cur = self._con.cursor()
        try:
            present = [
                (str(s), str(t))
                for s, t in cur.execute(
                    "SELECT schema_name, table_name FROM duckdb_tables() "
                    "WHERE database_name = current_database() AND NOT internal AND NOT temporary "
                    "UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
                    "WHERE database_name = current_database() AND NOT internal AND NOT temporary "
                    "ORDER BY 1, 2"
                ).fetchall()
            ]
        finally:
            cur.close()
        if not self.tables:
            return present
        chosen: list[tuple[str, str]] = []
        for name in self.tables:
            found = _resolve_name(name, present)
            if found is None:
                have = ", ".join(t for _, t in present) or "none"
                raise SQLToolError(
                    f"the SQL tool may read table `{name}`, but the warehouse has no such table or view "
                    f"(it has: {have}). Fix: load the table or remove it from `tables`"
                )
            if found not in chosen:
                chosen.append(found)
        return chosen

    def describe(self) -> str:
        """Columns, types and a few sample rows of every allowed table, as text for a prompt."""
        cur = self._con.cursor()
        parts: list[str] = []
        try:
            for schema, table in self.allowed_tables():
                columns = cur.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                    "AND schema_name = ? AND table_name = ? ORDER BY column_index",
                    [schema, table],
                ).fetchall()
                name = table if schema == "main" else f"{schema}.{table}"
                lines = [f"table {name}(" + ", ".join(f"{c} {t}" for c, t in columns) + ")"]
                try:
                    sample = cur.execute(
                        f"SELECT * FROM {_quote(schema)}.{_quote(table)} LIMIT {_SAMPLE_ROWS}"
                    ).fetchall()
                except Exception as exc:  # e.g. a view over files that are not readable
                    lines.append(f"  (no sample rows: {type(exc).__name__})")
                else:
                    lines.append(f"  sample rows ({' | '.join(c for c, _ in columns)}):")
                    lines += ["  " + " | ".join(_cell(v) for v in row) for row in sample]
                parts.append("\n".join(lines))
        finally:
            cur.close()
        return "\n\n".join(parts) if parts else "(no tables)"

    # -- checking and running -----------------------------------------------------------------------
    def check(self, sql: str) -> str:
        """The single statement `sql` holds if it is a read-only SELECT over allowed tables; else refuse."""
        duckdb = _duckdb()
        text = sql.strip().rstrip(";").strip()
        if not text:
            raise SQLRefusedError("the SQL is empty. Fix: write one SELECT query")
        cur = self._con.cursor()
        try:
            try:
                statements = cur.extract_statements(text)
            except duckdb.Error as exc:
                raise SQLQueryError(f"the SQL does not parse: {_first_line(exc)}") from None
            if len(statements) != 1:
                raise _refused(sql, f"it holds {len(statements)} statements; write exactly one")
            statement = statements[0]
            if statement.type != duckdb.StatementType.SELECT:
                kind = str(statement.type).rsplit(".", 1)[-1]
                raise _refused(sql, f"statement type {kind}; only SELECT runs")
            first = _first_word(text)
            if first in ("pragma", "call", "set", "reset", "describe", "show", "summarize"):
                raise _refused(sql, f"{first.upper()} is not available; the schema is given in the prompt")
            query = statement.query.strip().rstrip(";").strip()
            (tree,) = cur.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
            allowed = {(s.lower(), t.lower()) for s, t in self.allowed_tables()}
            (catalog,) = cur.execute("SELECT current_database()").fetchone()
            user_functions = {
                str(n).lower()
                for (n,) in cur.execute(
                    "SELECT DISTINCT function_name FROM duckdb_functions() WHERE NOT internal"
                ).fetchall()
            }
        finally:
            cur.close()
        parsed = json.loads(tree)
        if parsed.get("error"):
            raise _refused(sql, f"it cannot be checked ({parsed.get('error_message', 'unknown error')})")
        checker = _TreeChecker(allowed, str(catalog).lower(), user_functions)
        for node in parsed.get("statements", []):
            problem = checker.first_problem(node)
            if problem:
                raise _refused(sql, problem)
        return query

    def run(self, sql: str) -> SQLRows:
        """Check and run one read-only query: at most `row_limit` rows, stopped after `timeout_s`."""
        query = self.check(sql)
        wrapped = f"SELECT * FROM (\n{query}\n) AS brickyard_answer LIMIT {self.row_limit + 1}"
        self.check(wrapped)  # the query as it will run passes the same checks
        duckdb = _duckdb()
        cur = self._con.cursor()
        fired = threading.Event()

        def stop() -> None:
            fired.set()
            with contextlib.suppress(Exception):  # the query may have just finished
                cur.interrupt()

        timer = threading.Timer(self.timeout_s, stop)
        timer.daemon = True
        try:
            cur.begin()
            timer.start()
            try:
                cur.execute(wrapped)
                columns = [d[0] for d in cur.description or []]
                rows = [tuple(r) for r in cur.fetchall()]
            except duckdb.Error as exc:
                if fired.is_set():
                    raise SQLTimeoutError(
                        f"the query ran longer than {self.timeout_s:g} s and was stopped. "
                        "Fix: filter or aggregate more, avoid cross joins"
                    ) from None
                raise SQLQueryError(f"the query failed: {_first_line(exc)}") from None
            finally:
                timer.cancel()
                with contextlib.suppress(duckdb.Error):
                    cur.rollback()
        finally:
            cur.close()
        truncated = len(rows) > self.row_limit
        return SQLRows(columns, rows[: self.row_limit], truncated)

    # -- asking -------------------------------------------------------------------------------------
    async def ask(self, question: str, *, trace: Trace | None = None) -> SQLAnswer:
        """Have the model write SQL for `question` and run it; a failing query gets one retry."""
        if self.model is None:
            raise UserError("this SQLTool has no model. Fix: pass `model=` to answer questions")
        model = self.model
        if trace is not None and not isinstance(model, TracingModel):
            model = TracingModel(model, trace, label=f"sql:{model.name}")
        schema = await asyncio.to_thread(self.describe)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self._system(model)},
            {"role": "user", "content": f"{delimited(_escape(schema))}\n\nQuestion: {question}"},
        ]
        answer = SQLAnswer(question=question, sql="")
        for attempt in (1, 2):
            answer.attempts = attempt
            result = await model.complete(
                ChatRequest(
                    messages=messages,
                    temperature=0.0,
                    max_tokens=512,
                    json_schema=SQL_SCHEMA if model.supports_json_schema else None,
                    schema_name="sql_query",
                )
            )
            answer.sql = sql_from_answer(result)
            step = trace.add("sql", "run", attempt=attempt, sql=answer.sql) if trace is not None else None
            started = time.perf_counter()
            try:
                if not answer.sql:
                    raise SQLRefusedError("the model returned no SQL. Fix: answer with one SELECT query")
                out = await asyncio.to_thread(self.run, answer.sql)
            except SQLToolError as exc:
                answer.error = str(exc)
                if step is not None:
                    step.error, step.latency_s = answer.error, time.perf_counter() - started
                messages = [
                    *messages,
                    {"role": "assistant", "content": answer.sql or result.text},
                    {
                        "role": "user",
                        "content": f"That query failed: {answer.error}\nWrite one corrected read-only SELECT query.",
                    },
                ]
                continue
            answer.columns, answer.rows, answer.truncated, answer.error = out.columns, out.rows, out.truncated, None
            if step is not None:
                step.latency_s = time.perf_counter() - started
                step.detail.update(rows=len(out.rows), truncated=out.truncated, columns=out.columns)
            break
        return answer

    def _system(self, model: Model) -> str:
        shape = (
            'Answer with JSON {"sql": "<the query>"}.' if model.supports_json_schema else "Answer with the SQL only."
        )
        return (
            "You write one SQL query in the DuckDB dialect that answers the user's question from the tables "
            "described between <text> and </text> (columns, types and sample rows).\n"
            "Rules:\n"
            "- Exactly one read-only query: SELECT or WITH ... SELECT. Never INSERT, UPDATE, DELETE, CREATE, "
            "DROP, ALTER, COPY, ATTACH, PRAGMA, SET, CALL, INSTALL or LOAD.\n"
            "- Read only the tables listed; never read files or URLs (no read_csv, read_parquet, read_json).\n"
            f"- At most {self.row_limit} rows are returned: aggregate, filter or ORDER BY ... LIMIT when "
            "the question allows.\n"
            f"- {DATA_RULE}\n"
            f"{shape}"
        )


def sql_from_answer(result: ChatResult) -> str:
    """The SQL in a model's answer: the `sql` field of a JSON answer, else the text without code fences."""
    data = result.json
    if data is None:
        try:
            data = json.loads(result.text)
        except (json.JSONDecodeError, TypeError):
            data = None
    is_sql = isinstance(data, dict) and isinstance(data.get("sql"), str)
    text = data["sql"] if is_sql else result.text
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    return text.strip().rstrip(";").strip()


# -- the parse-tree check -----------------------------------------------------------------------------
class _TreeChecker:
    """Walks DuckDB's JSON parse tree of one SELECT, with CTE names scoped like DuckDB's binder."""

    def __init__(self, allowed: set[tuple[str, str]], catalog: str, user_functions: set[str]) -> None:
        self.allowed = allowed
        self.catalog = catalog
        self.user_functions = user_functions

    def first_problem(self, node: Any) -> str | None:
        return next(self._problems(node, frozenset()), None)

    def _problems(self, node: Any, ctes: frozenset[str]) -> Iterator[str]:
        if isinstance(node, list):
            for item in node:
                yield from self._problems(item, ctes)
            return
        if not isinstance(node, dict):
            return
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict) and cte_map.get("map"):
            seen = set(ctes)
            for entry in cte_map["map"]:
                name = str(entry.get("key", "")).lower()
                seen.add(name)  # a CTE sees itself (recursive) and the ones before it
                yield from self._problems(entry.get("value"), frozenset(seen))
            ctes = frozenset(seen)
        kind = node.get("type")
        if kind == "BASE_TABLE":
            problem = self._table_problem(node, ctes)
            if problem:
                yield problem
        elif kind == "SHOW_REF":
            yield "DESCRIBE, SHOW and SUMMARIZE are not available; the schema is given in the prompt"
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in SAFE_TABLE_FUNCTIONS:
                yield (
                    f"the table function {name}() is not allowed (it can read files, other databases or the "
                    f"catalog); read the warehouse tables instead"
                )
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in BLOCKED_FUNCTIONS or name.startswith(BLOCKED_PREFIXES):
                yield f"the function {name}() is not allowed in the SQL tool"
            elif name in self.user_functions:
                yield f"the user-defined function {name}() is not available to the SQL tool"
        for key, value in node.items():
            if key != "cte_map" and isinstance(value, dict | list):
                yield from self._problems(value, ctes)

    def _table_problem(self, node: dict[str, Any], ctes: frozenset[str]) -> str | None:
        catalog = str(node.get("catalog_name") or "").lower()
        schema = str(node.get("schema_name") or "").lower()
        table = str(node.get("table_name") or "").lower()
        shown = ".".join(p for p in (catalog, schema, table) if p)
        if not catalog and not schema and table in ctes:
            return None
        if catalog and catalog != self.catalog:
            return f"`{shown}` is in another database; only the warehouse tables may be read"
        # An unqualified name is looked up in `main` (the warehouse's default schema) only.
        if (schema or "main", table) in self.allowed:
            return None
        readable = ", ".join(t if s == "main" else f"{s}.{t}" for s, t in sorted(self.allowed)) or "none"
        return f"`{shown}` is not a table the SQL tool may read (readable: {readable})"


def _refused(sql: str, reason: str) -> SQLRefusedError:
    return SQLRefusedError(f"the SQL tool only runs read-only SELECT queries; refused: {_short(sql)} ({reason})")


def _first_word(sql: str) -> str:
    text = re.sub(r"(--[^\n]*\n?|/\*.*?\*/|\s|\()+", " ", sql, flags=re.DOTALL).strip()
    return text.split(" ", 1)[0].lower() if text else ""


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _escape(text: str) -> str:
    """Keep data from closing its own delimiters."""
    return text.replace("</text>", "<\\/text>")


def _resolve_name(name: str, present: list[tuple[str, str]]) -> tuple[str, str] | None:
    lowered = name.lower()
    if "." in lowered:
        schema, table = lowered.rsplit(".", 1)
        return next(((s, t) for s, t in present if s.lower() == schema and t.lower() == table), None)
    in_main = [(s, t) for s, t in present if s.lower() == "main" and t.lower() == lowered]
    if in_main:
        return in_main[0]
    anywhere = [(s, t) for s, t in present if t.lower() == lowered]
    return anywhere[0] if len(anywhere) == 1 else None


def _open_read_only(duckdb: Any, path: Path, readable_paths: Sequence[str | Path]) -> Any:
    if not path.exists():
        raise SQLToolError(f"the warehouse {path} does not exist. Fix: load tables first (brickyard sql load ...)")
    try:
        con = duckdb.connect(
            str(path),
            read_only=True,
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
        )
    except duckdb.Error as exc:
        raise SQLToolError(
            f"cannot open {path} read-only: {_first_line(exc)}. Fix: close other connections that write to "
            "the warehouse, or pass an open DuckDB connection to SQLTool"
        ) from None
    try:
        files = [str(Path(p).resolve()) for p in readable_paths if not Path(p).is_dir()]
        folders = [str(Path(p).resolve()) for p in readable_paths if Path(p).is_dir()]
        if files:
            con.execute(f"SET allowed_paths = {_string_list(files)}")
        if folders:
            con.execute(f"SET allowed_directories = {_string_list(folders)}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except Exception:
        con.close()
        raise
    return con


def _string_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"
