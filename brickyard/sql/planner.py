"""AI-aware planning: a LIMIT stops model calls, semantic joins ask once per row, AI predicates run cheapest first.

DuckDB hands a scalar function whole vectors of 2,048 rows, so `WHERE ai_filter(...) LIMIT 5` would judge
2,048 rows (every row of a smaller table) before the LIMIT is looked at. When a statement calls an AI
function and has a LIMIT, the planner rewrites each warehouse table it reads into a stream of small
batches that grow (the limit's size, then twice that, up to 2,048): DuckDB's LIMIT stops pulling batches as
soon as it has its rows, so the model sees about as many rows as the answer needed, and a query that reads
everything still runs in large batches after the first few.

`JOIN small ON ai_filter(<small side>, <large side>)` becomes one `ai_match` per large-side row with every
predicate of the small side; several AI predicates of one WHERE run in order of cost ÷ rejection measured
on a sample. Every rewrite works on DuckDB's own parse tree (`json_serialize_sql` and back), never on the
SQL text. Which rows a LIMIT without ORDER BY returns is unspecified, as in SQL. A dry run (`--estimate`) is not
rewritten: its figures are the upper bound of a full scan.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from brickyard.sql.declarations import SQL_NAMES

MAX_BATCH = 2048
"""DuckDB's vector size: past it a batch gains nothing."""

DEFAULT_FIRST_BATCH = 8

PREDICATE_SAMPLE = 20
"""Rows on which several AI predicates of one WHERE are measured before they are ordered."""

SEMANTIC_JOIN_MAX = 64
"""Predicates one `ai_match` call may carry: past it a semantic join is judged pair by pair."""


@dataclass
class Plan:
    """A statement as it will run, and what the planner did to it (for `brickyard sql --explain`)."""

    sql: str
    notes: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    """Names registered on the connection for the rewritten tables (dropped before the next statement)."""
    settings: dict[str, str] = field(default_factory=dict)
    """DuckDB settings the statement runs under (restored after it)."""

    rewritten: bool = False
    """True when `sql` differs from the statement as written."""


def _alias(node: dict[str, Any]) -> str | None:
    """The name a FROM item's columns are qualified with (its alias, else its table name)."""
    if node.get("type") != "BASE_TABLE":
        return None
    return str(node.get("alias") or node.get("table_name") or "").lower() or None


def _only_alias(expression: Any) -> str | None:
    """The one table qualifier an expression's columns use (None: none, several, or unqualified columns)."""
    qualifiers = set()
    for node in _walk(expression):
        if node.get("class") == "COLUMN_REF":
            names = node.get("column_names") or []
            if len(names) != 2:
                return None
            qualifiers.add(str(names[0]).lower())
        if node.get("class") == "SUBQUERY":
            return None
    return qualifiers.pop() if len(qualifiers) == 1 else None


def _ai_filter_in(condition: Any) -> dict[str, Any] | None:
    """The two-argument `ai_filter` call a join condition is, or is one conjunct of."""
    if not isinstance(condition, dict):
        return None
    if condition.get("class") == "CONJUNCTION" and condition.get("type") == "CONJUNCTION_AND":
        found = [c for c in (_ai_filter_in(child) for child in condition.get("children", [])) if c is not None]
        return found[0] if len(found) == 1 else None
    if condition.get("class") != "FUNCTION" or str(condition.get("function_name", "")).lower() != "ai_filter":
        return None
    children = condition.get("children", [])
    positional = [c for c in children if not c.get("alias")]
    named = [c for c in children if c.get("alias")]
    if len(positional) != 2 or any(str(c["alias"]).lower() != "endpoint" for c in named):
        return None
    return condition


def _false() -> dict[str, Any]:
    return {
        "class": "CONSTANT",
        "type": "VALUE_CONSTANT",
        "alias": "",
        "query_location": 0,
        "value": {"type": {"id": "BOOLEAN", "type_info": None}, "is_null": False, "value": False},
    }


def _case_and(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """`CASE WHEN first THEN then ELSE false END`: `then` is evaluated only where `first` holds."""
    return {
        "class": "CASE",
        "type": "CASE_EXPR",
        "alias": "",
        "query_location": 0,
        "case_checks": [{"when_expr": first, "then_expr": then}],
        "else_expr": _false(),
    }


def _conjunction(children: list[dict[str, Any]]) -> dict[str, Any]:
    if len(children) == 1:
        return children[0]
    return {"class": "CONJUNCTION", "type": "CONJUNCTION_AND", "alias": "", "query_location": 0, "children": children}


def _text(value: str) -> dict[str, Any]:
    """A VARCHAR constant of the parse tree."""
    return {
        "class": "CONSTANT",
        "type": "VALUE_CONSTANT",
        "alias": "",
        "query_location": 0,
        "value": {"type": {"id": "VARCHAR", "type_info": None}, "is_null": False, "value": value},
    }


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _limits(tree: Any) -> list[int]:
    """The constant LIMIT values in the statement (none when a LIMIT is an expression or absent)."""
    found = []
    for node in _walk(tree):
        if node.get("type") == "LIMIT_MODIFIER":
            limit = node.get("limit") or {}
            value = (limit.get("value") or {}).get("value") if limit.get("type") == "VALUE_CONSTANT" else None
            if isinstance(value, int) and value >= 0:
                found.append(value)
    return found


def _ai_calls(tree: Any) -> list[str]:
    return sorted(
        {
            str(node.get("function_name")).lower()
            for node in _walk(tree)
            if node.get("class") == "FUNCTION" and str(node.get("function_name", "")).lower() in SQL_NAMES
        }
    )


def _cte_names(tree: Any) -> set[str]:
    names: set[str] = set()
    for node in _walk(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            names.update(str(entry.get("key", "")).lower() for entry in cte_map.get("map", []))
    return names


class Planner:
    """Plans statements for one DuckDB connection; a second cursor reads the streamed tables."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self._reader: Any = None
        self._registered: list[str] = []
        self._counter = 0

    def release(self) -> None:
        """Drop the previous statement's streams."""
        for name in self._registered:
            with contextlib.suppress(Exception):  # already gone with a closed connection
                self._con.unregister(name)
        self._registered.clear()

    def plan(self, sql: str) -> Plan:
        """The statement to run for `sql`: semantic joins rewritten, AI predicates ordered, tables streamed under a
        LIMIT; as written when none applies (no AI call, an open transaction, a statement DuckDB cannot serialise)."""
        try:
            (text,) = self._con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        except Exception:  # not a single SELECT DuckDB can serialise: run as written
            return Plan(sql)
        tree = json.loads(text)
        if tree.get("error") or len(tree.get("statements", [])) != 1:
            return Plan(sql)
        limits, calls = _limits(tree), _ai_calls(tree)
        if not calls or self._in_transaction():
            return Plan(sql)
        joins = any(node.get("type") == "JOIN" for node in _walk(tree))
        tables = self._warehouse_tables() if limits or joins else {}  # only streams and joins read tables
        ctes = _cte_names(tree)
        plan = Plan(sql)
        rewrites = self._semantic_joins(tree, tables, ctes, plan)
        rewrites += self._order_ai_predicates(tree, plan)
        if limits:
            self._stream_tables(tree, min(limits), calls, tables, ctes, plan)
        if not plan.streams and not rewrites:
            return Plan(sql, notes=plan.notes)
        if plan.streams:
            # One DuckDB thread: a second one would pull the next (larger) batch while the first is judged. The
            # model calls of a batch still run concurrently (the batch engine), which is where the time goes.
            plan.settings["threads"] = "1"
            plan.settings["enable_caching_operators"] = "false"  # else a filter holds its rows until it has 64
        (plan.sql,) = self._con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchone()
        plan.rewritten = True
        return plan

    def _stream_tables(
        self,
        tree: dict[str, Any],
        limit: int,
        calls: list[str],
        tables: dict[tuple[str | None, str], str],
        ctes: set[str],
        plan: Plan,
    ) -> None:
        """Replace the tables each SELECT reads (a join's larger side) by growing-batch streams."""
        first = max(DEFAULT_FIRST_BATCH, limit)
        limits = [limit]
        for select in _walk(tree["statements"]):
            if select.get("type") != "SELECT_NODE" or not isinstance(select.get("from_table"), dict):
                continue
            source = select["from_table"]
            if source.get("type") == "JOIN":
                chosen = self._probe_side(source, tables, ctes)
                if chosen is None:
                    continue
                plan.settings["disabled_optimizers"] = "join_order,build_side_probe_side"
                source = chosen
            qualified = self._table_of(source, tables, ctes)
            if qualified is None:
                continue
            stream = self._stream(qualified, first)
            plan.streams.append(stream)
            source["alias"] = source.get("alias") or source["table_name"]
            source["table_name"], source["schema_name"], source["catalog_name"] = stream, "", ""
            plan.notes.append(
                f"LIMIT {min(limits)} over {', '.join(calls)}: {qualified} is read in growing batches "
                f"({first}, {first * 2}, {first * 4}, ... up to {MAX_BATCH} rows), so model calls stop once "
                "the limit is met"
                + (
                    " (it is the join's probe side; join reordering is off)"
                    if source is not select["from_table"]
                    else ""
                )
            )

    def _semantic_joins(
        self, tree: dict[str, Any], tables: dict[tuple[str | None, str], str], ctes: set[str], plan: Plan
    ) -> int:
        """`JOIN small ON ai_filter(<small side>, <large side>)`: one multi-label call per large-side row.

        The condition becomes `list_contains(ai_match(<large side>, <every predicate of the small side>),
        <small side>)`: the predicates are read now (at most `SEMANTIC_JOIN_MAX` distinct ones), and the
        statement's memo makes `ai_match` run once per distinct large-side value instead of once per pair.
        """
        rewritten = 0
        for join in _walk(tree["statements"]):
            if join.get("type") != "JOIN" or str(join.get("join_type", "")).upper() != "INNER":
                continue
            sides: dict[str | None, dict[str, Any]] = {
                _alias(join.get("left") or {}): join.get("left") or {},
                _alias(join.get("right") or {}): join.get("right") or {},
            }
            if None in sides or len(sides) != 2:
                continue
            call = _ai_filter_in(join.get("condition"))
            if call is None:
                continue
            predicate, content, *rest = call["children"]
            small, large = _only_alias(predicate), _only_alias(content)
            if small is None or large is None or small == large or small not in sides or large not in sides:
                continue
            qualified = self._table_of(sides[small], tables, ctes)
            if qualified is None:
                continue
            predicates = self._distinct(predicate, qualified, small)
            if predicates is None:
                plan.notes.append(
                    f"semantic join not rewritten: {qualified} gives more than {SEMANTIC_JOIN_MAX} predicates "
                    "(ai_filter is asked once per pair)"
                )
                continue
            matched = dict(
                call, function_name="ai_match", alias="", children=[content, _text(json.dumps(predicates)), *rest]
            )
            replacement = dict(call, function_name="list_contains", alias="", children=[matched, predicate])
            call.clear()
            call.update(replacement)
            rewritten += 1
            plan.notes.append(
                f"semantic join: ai_filter once per pair became ai_match once per row of the other side, against "
                f"the {len(predicates)} predicates of {qualified}"
            )
        return rewritten

    def _order_ai_predicates(self, tree: dict[str, Any], plan: Plan) -> int:
        """`WHERE ai_a AND ai_b`: the AI predicates ordered by measured cost ÷ rejection on a sample.

        The cheaper, more selective predicate runs first and the next one sees only the rows that passed
        (a nested CASE, which DuckDB evaluates on those rows only); the sample's answers stay in the
        statement's memo, so they are not asked again.
        """
        ordered = 0
        for select in _walk(tree["statements"]):
            where = select.get("where_clause") if select.get("type") == "SELECT_NODE" else None
            if not isinstance(where, dict) or where.get("type") != "CONJUNCTION_AND":
                continue
            ai = [c for c in where["children"] if _ai_calls(c)]
            cheap = [c for c in where["children"] if not _ai_calls(c)]
            source = select.get("from_table") or {}
            alias = _alias(source)
            if len(ai) < 2 or alias is None:
                continue
            measured = self._measure(select, cheap, ai, alias)
            if measured is None:
                continue
            ranked = sorted(zip(measured, ai, strict=True), key=lambda m: m[0][0] / max(1 - m[0][1], 0.01))
            chain = ranked[-1][1]
            for _, predicate in reversed(ranked[:-1]):
                chain = _case_and(predicate, chain)
            where["children"] = [*cheap, chain]
            ordered += 1
            plan.notes.append(
                f"{len(ai)} AI predicates ordered by cost ÷ rejection measured on {PREDICATE_SAMPLE} rows: "
                + "; then ".join(
                    f"{self._sql(p)} ({secs * 1000:.1f} ms a row, passes {share:.0%})" for (secs, share), p in ranked
                )
            )
        return ordered

    def _measure(
        self, select: dict[str, Any], cheap: list[dict[str, Any]], ai: list[dict[str, Any]], alias: str
    ) -> list[tuple[float, float]] | None:
        """(seconds a row, pass share) of each AI predicate on a sample of the rows the cheap ones keep."""
        inner = json.loads(json.dumps(select))
        inner["select_list"] = self._template("SELECT * FROM x")["statements"][0]["node"]["select_list"]
        inner["where_clause"] = _conjunction(cheap) if cheap else None
        inner["modifiers"], inner["group_expressions"], inner["having"] = [], [], None
        try:
            body = self._sql_of_node(inner)
            sample = f'SELECT * FROM ({body}) AS "{alias}" USING SAMPLE {PREDICATE_SAMPLE} ROWS (reservoir, 7)'
            self._con.execute(f"CREATE OR REPLACE TEMP TABLE __by_sample AS {sample}")
            measured = []
            for predicate in ai:
                started = time.perf_counter()
                passed, rows = self._con.execute(
                    f'SELECT count(*) FILTER (WHERE {self._sql(predicate)}), count(*) FROM __by_sample AS "{alias}"'
                ).fetchone()
                measured.append(((time.perf_counter() - started) / max(rows, 1), passed / max(rows, 1)))
            return measured
        except Exception:  # a shape the sample cannot be drawn from: keep the order as written
            return None
        finally:
            with contextlib.suppress(Exception):
                self._con.execute("DROP TABLE IF EXISTS __by_sample")

    def _sql(self, expression: dict[str, Any]) -> str:
        """An expression of the parse tree as SQL text."""
        node = json.loads(json.dumps(self._template("SELECT 1")))
        node["statements"][0]["node"]["select_list"] = [dict(expression, alias="")]
        (text,) = self._con.execute("SELECT json_deserialize_sql(?)", [json.dumps(node)]).fetchone()
        return str(text).strip().removeprefix("SELECT").strip()

    def _sql_of_node(self, select: dict[str, Any]) -> str:
        tree = json.loads(json.dumps(self._template("SELECT 1")))
        tree["statements"][0]["node"] = select
        (text,) = self._con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchone()
        return str(text)

    def _template(self, sql: str) -> dict[str, Any]:
        (text,) = self._con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        return dict(json.loads(text))

    def _distinct(self, expression: dict[str, Any], qualified: str, alias: str) -> list[str] | None:
        """The distinct non-NULL values of `expression` over a table (None when there are too many)."""
        (template,) = self._con.execute(
            "SELECT json_serialize_sql(?)", [f'SELECT DISTINCT 1 FROM {qualified} AS "{alias}"']
        ).fetchone()
        tree = json.loads(template)
        node = tree["statements"][0]["node"]
        node["select_list"] = [dict(expression, alias="")]
        (query,) = self._con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchone()
        rows = self._cursor().execute(f"SELECT * FROM ({query}) ORDER BY 1 LIMIT {SEMANTIC_JOIN_MAX + 1}").fetchall()
        values = [str(v) for (v,) in rows if v is not None]
        return None if len(values) > SEMANTIC_JOIN_MAX else values

    def _in_transaction(self) -> bool:
        """In an open transaction another cursor would read the committed rows, not this one's: don't stream."""
        first, second = (self._con.execute("SELECT txid_current()").fetchone()[0] for _ in range(2))
        return bool(first == second)  # autocommit gives each statement its own transaction

    def _table_of(self, node: dict[str, Any], tables: dict[tuple[str | None, str], str], ctes: set[str]) -> str | None:
        """The warehouse table a FROM item reads, when it is a plain reference the planner may stream."""
        if node.get("type") != "BASE_TABLE" or node.get("sample") or node.get("at_clause") or node.get("catalog_name"):
            return None
        name, schema = str(node.get("table_name", "")), str(node.get("schema_name") or "")
        if not schema and name.lower() in ctes:
            return None
        return tables.get((schema.lower() or None, name.lower()))

    def _probe_side(
        self, join: dict[str, Any], tables: dict[tuple[str | None, str], str], ctes: set[str]
    ) -> dict[str, Any] | None:
        """For an inner or cross join of two tables: the larger one, moved to the left (the side DuckDB streams).

        DuckDB builds its join table from the right side: a streamed table there would be read whole.
        """
        left, right = join.get("left") or {}, join.get("right") or {}
        kind = str(join.get("join_type", "INNER")).upper()
        if kind != "INNER" or join.get("ref_type") not in (None, "REGULAR", "CROSS"):
            return None
        left_table, right_table = self._table_of(left, tables, ctes), self._table_of(right, tables, ctes)
        if left_table is None or right_table is None:
            return None
        if self._rows(right_table) > self._rows(left_table):
            join["left"], join["right"] = right, left
            return right
        return left

    def _rows(self, qualified: str) -> int:
        (count,) = self._cursor().execute(f"SELECT count(*) FROM {qualified}").fetchone()
        return int(count)

    def _warehouse_tables(self) -> dict[tuple[str | None, str], str]:
        """Names a FROM item may use, by (schema or None, table), for the tables a second cursor can stream.

        Resolved as DuckDB resolves them: temporary objects first, then the search path, then the current
        database; a name that resolves to a view or a temporary table is left out (it runs as written).
        """
        con = self._con
        (database, schema, path) = con.execute(
            "SELECT current_database(), current_schema(), current_setting('search_path')"
        ).fetchone()
        committed = {  # what another connection sees: not temporary, not created in an open transaction
            (str(db).lower(), str(sch).lower(), str(name).lower())
            for db, sch, name in self._cursor()
            .execute("SELECT database_name, schema_name, table_name FROM duckdb_tables() WHERE NOT temporary")
            .fetchall()
        }
        objects: dict[tuple[str, str, str], bool] = {}  # (db, schema, name) -> streamable
        for db, sch, name in con.execute(
            "SELECT database_name, schema_name, table_name FROM duckdb_tables()"
        ).fetchall():
            key = (str(db).lower(), str(sch).lower(), str(name).lower())
            objects[key] = key in committed
        for db, sch, name in con.execute(
            "SELECT database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall():
            objects.setdefault((str(db).lower(), str(sch).lower(), str(name).lower()), False)
        order = [("temp", "main")]
        for entry in [e.strip() for e in str(path or "").split(",") if e.strip()]:
            db, _, sch = entry.rpartition(".")
            order.append((db.lower() or str(database).lower(), sch.lower()))
        order.append((str(database).lower(), str(schema).lower()))
        databases = list(dict.fromkeys(db for db, _ in order))
        found: dict[tuple[str | None, str], str] = {}
        for _db, sch, name in objects:
            keyed: tuple[tuple[tuple[str | None, str], list[tuple[str, str]]], ...] = (
                ((None, name), order),
                ((sch, name), [(d, sch) for d in databases]),
            )
            for lookup, candidates in keyed:
                if lookup in found:
                    continue
                hit = next(((d, s_) for d, s_ in candidates if (d, s_, name) in objects), None)
                if hit is not None and objects[(hit[0], hit[1], name)]:
                    found[lookup] = f'"{hit[0]}"."{hit[1]}"."{name}"'
                elif hit is not None:
                    found[lookup] = ""  # resolves to something not streamable
        return {k: v for k, v in found.items() if v}

    def _cursor(self) -> Any:
        if self._reader is None:
            self._reader = self._con.cursor()
        return self._reader

    def _stream(self, qualified: str, first: int) -> str:
        import pyarrow as pa

        # a cursor per stream: a connection streams one result at a time
        reader = self._con.cursor().sql(f"SELECT * FROM {qualified}").to_arrow_reader(MAX_BATCH)
        self._counter += 1
        name = f"__by_stream_{self._counter}"
        self._con.register(name, pa.RecordBatchReader.from_batches(reader.schema, _growing(reader, first)))
        self._registered.append(name)
        return name


def _growing(reader: Any, first: int) -> Iterator[Any]:
    """The reader's rows in batches of `first`, then twice that, ... up to `MAX_BATCH`."""
    size = first
    for batch in reader:
        offset = 0
        while offset < batch.num_rows:
            yield batch.slice(offset, size)
            offset += size
            size = min(size * 2, MAX_BATCH)
