"""The embedded warehouse: a DuckDB connection with every AI function registered.

Each function is a vectorised Arrow UDF (`__by_<name>`): DuckDB hands it a whole chunk of rows,
which goes through the batch engine at once. SQL macros in front give Databricks' names, optional
and named arguments: Databricks' `name => value` works as written (DuckDB also accepts `name := value`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from brickyard._errors import InvalidRequestError, MissingExtraError
from brickyard.sql.binding import FunctionBinding
from brickyard.sql.declarations import FUNCTIONS, AIFunction, macros_sql
from brickyard.sql.planner import Plan, Planner
from brickyard.store.payloads import register_view as register_payloads_view
from brickyard.workspace import WAREHOUSE_NAME as WAREHOUSE_NAME  # the file name, for old imports
from brickyard.workspace import Workspace

MACROS = macros_sql()
"""Every AI function's macro, generated from `brickyard.sql.declarations`."""


def _duckdb() -> Any:
    try:
        import duckdb
        import pyarrow  # noqa: F401  (Arrow UDFs need it)
    except ImportError as exc:
        raise MissingExtraError(exc.name or "duckdb", "sql") from exc
    return duckdb


def connect(
    workspace: Workspace | str | Path | None = None,
    database: str | Path | None = None,
    *,
    progress: bool | None = False,
    max_cost_usd: float | None = None,
    dry_run: bool = False,
    read_only: bool = False,
) -> Any:
    """A DuckDB connection on the workspace's warehouse with every AI function registered.

    `database` defaults to `<workspace>/warehouse.duckdb` (":memory:" for none). `max_cost_usd`
    caps what the connection's queries may spend; `dry_run` records calls instead of making them
    (see `estimate`). The binding is at `con.brickyard` for estimates and closing.
    """
    duckdb = _duckdb()
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if database is None:
        ws.path.mkdir(parents=True, exist_ok=True)
        database = ws.warehouse_path
    con = duckdb.connect(str(database), read_only=read_only)
    binding = FunctionBinding(ws, progress=progress, max_cost_usd=max_cost_usd, dry_run=dry_run)
    register(con, binding)
    register_payloads_view(con, ws.payloads_dir)  # the payload logs as a table: `SELECT ... FROM payloads`
    return _Connection(con, binding)


class _Connection:
    """A DuckDB connection that also owns its function binding (closed together)."""

    def __init__(self, con: Any, binding: FunctionBinding) -> None:
        self._con = con
        self.brickyard = binding
        self.planner = Planner(con)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def plan(self, query: str) -> Plan:
        """How `query` would run: rewritten so a LIMIT stops model calls (see `brickyard.sql.planner`)."""
        if self.brickyard.dry_run:  # an estimate is the upper bound: every row the query could read
            return Plan(query)
        return self.planner.plan(query)

    def execute(self, query: Any, parameters: Any = None) -> Any:
        """DuckDB's `execute`, planned, after clearing the previous statement's AI answers and streams."""
        self._begin()
        if parameters is None and isinstance(query, str):
            plan = self.plan(query)
            if plan.rewritten:
                try:
                    with _settings(self._con, plan.settings):
                        self._con.execute(plan.sql)
                    return self
                except (_duckdb().BinderException, _duckdb().CatalogException):  # before any call: as written
                    self.planner.release()
        self._con.execute(query, parameters)
        return self

    def sql(self, query: str, **kwargs: Any) -> Any:
        """DuckDB's `sql` (a relation); a planned statement runs now and its rows become the relation."""
        self._begin()
        if not kwargs:
            plan = self.plan(query)
            if plan.rewritten:
                try:
                    with _settings(self._con, plan.settings):
                        rows = self._con.execute(plan.sql).to_arrow_table()
                    return self._con.from_arrow(rows)
                except (_duckdb().BinderException, _duckdb().CatalogException):
                    self.planner.release()
        return self._con.sql(query, **kwargs)

    def _begin(self) -> None:
        self.brickyard.begin_statement()
        self.planner.release()

    query = sql

    @property
    def duckdb(self) -> Any:
        """The underlying `duckdb.DuckDBPyConnection`."""
        return self._con

    def close(self) -> None:
        self._con.close()
        self.brickyard.close()

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _settings(con: Any, settings: dict[str, str]) -> Iterator[None]:
    """Run with DuckDB settings changed, then put them back."""
    before = {name: con.execute(f"SELECT current_setting('{name}')").fetchone()[0] for name in settings}
    for name, value in settings.items():
        con.execute(f"SET {name} = '{value}'")
    try:
        yield
    finally:
        for name, value in before.items():
            con.execute(f"SET {name} = '{value}'")


def _examples_reader(con: Any) -> Any:
    """Reads (text, label) rows of a table or view through a second cursor (a function runs inside a query)."""
    cursor = con.cursor()

    def read(relation: str) -> list[tuple[str, str]]:
        try:
            columns = [c[0] for c in cursor.execute(f"SELECT * FROM {relation} LIMIT 0").description]
        except Exception as exc:
            raise InvalidRequestError(
                f"examples: cannot read {relation} ({str(exc).splitlines()[0]}). "
                "Fix: name a table or a (non-temporary) view of the warehouse"
            ) from None
        lower = {c.lower(): c for c in columns}
        text = lower.get("content") or lower.get("text")
        if "label" not in lower or text is None:
            raise InvalidRequestError(
                f"examples: {relation} has columns {columns}; it needs `label` and `content` (or `text`). "
                "Fix: SELECT review AS content, verdict AS label ... into a view"
            )
        query = f'SELECT "{text}", "{lower["label"]}" FROM {relation} WHERE "{lower["label"]}" IS NOT NULL'
        rows = cursor.execute(query).fetchall()
        # a STRUCT or MAP label (ai_extract's answer object) comes back as a dict: kept as JSON, not as its repr
        return [(str(t), lab if isinstance(lab, str) else json.dumps(lab, default=str)) for t, lab in rows if t]

    return read


def _arrow_type(pa: Any, sql_type: str) -> Any:
    """The Arrow type of a UDF's declared SQL result."""
    return {
        "VARCHAR": pa.string(),
        "FLOAT": pa.float32(),
        "BOOLEAN": pa.bool_(),
        "FLOAT[]": pa.list_(pa.float32()),
        "VARCHAR[]": pa.list_(pa.string()),
    }[sql_type]


def register(con: Any, binding: FunctionBinding) -> None:
    """Register each declared function's Arrow UDF (through the query memo), then the macros."""
    import pyarrow as pa

    binding.read_examples = _examples_reader(con)
    memo = binding.memo

    def udf(name: str, params: list[str], returns: str, fn: Any) -> None:
        con.create_function(name, fn, params, returns, type="arrow", null_handling="special", side_effects=True)

    def columns(arrays: tuple[Any, ...]) -> list[list[Any]]:
        return [list(a.to_pylist()) for a in arrays]

    def row_function(function: AIFunction) -> Any:
        method = getattr(binding, function.method)
        arrow_type = _arrow_type(pa, function.returns)

        def call(*arrays: Any) -> Any:
            values = memo.rows(function.name, columns(arrays), lambda cols: method(*cols))
            return pa.array(values, type=arrow_type)

        # DuckDB reads the arity from the signature
        call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_ONLY) for p in function.udf_params]
        )
        return call

    for function in FUNCTIONS:
        udf(function.udf, [p.udf_type for p in function.udf_params], function.returns, row_function(function))

    def ai_query_struct(endpoint: Any, request: Any, params: Any, fmt: Any, fail: Any) -> Any:
        fail_on_error = bool(fail[0].as_py()) if len(fail) and fail[0].as_py() is not None else True

        def compute(cols: list[list[Any]]) -> list[Any]:
            values, errors = binding.ai_query(*cols, fail_on_error=fail_on_error)
            return list(zip(values, errors, strict=True))

        pairs = memo.rows(f"ai_query_struct:{fail_on_error}", columns((endpoint, request, params, fmt)), compute)
        return pa.StructArray.from_arrays(
            [pa.array([v for v, _ in pairs], type=pa.string()), pa.array([e for _, e in pairs], type=pa.string())],
            names=["result", "errorMessage"],
        )

    struct_type = "STRUCT(result VARCHAR, errorMessage VARCHAR)"
    udf("__by_ai_query_struct", ["VARCHAR"] * 4 + ["BOOLEAN"], struct_type, ai_query_struct)
    for statement in MACROS.split(";"):
        if statement.strip():
            con.execute(statement)
