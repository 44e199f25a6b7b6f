"""AI-aware planning: a LIMIT stops model calls once enough rows have passed.

DuckDB hands a scalar function whole vectors of 2,048 rows, so `WHERE ai_filter(...) LIMIT 5` would judge
2,048 rows (every row of a smaller table) before the LIMIT is looked at. When a statement calls an AI
function and has a LIMIT, the planner rewrites each warehouse table it reads into a stream of small
batches that grow (the limit's size, then twice that, up to 2,048): DuckDB's LIMIT stops pulling batches as
soon as it has its rows, so the model sees about as many rows as the answer needed, and a query that reads
everything still runs in large batches after the first few.

The rewrite works on DuckDB's own parse tree (`json_serialize_sql` and back), never on the SQL text. Which
rows a LIMIT without ORDER BY returns is unspecified, as in SQL. A dry run (`--estimate`) is not
rewritten: its figures are the upper bound of a full scan.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from brickyard.sql.declarations import SQL_NAMES

MAX_BATCH = 2048
"""DuckDB's vector size: past it a batch gains nothing."""

DEFAULT_FIRST_BATCH = 8


@dataclass
class Plan:
    """A statement as it will run, and what the planner did to it (for `brickyard sql --explain`)."""

    sql: str
    notes: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    """Names registered on the connection for the rewritten tables (dropped before the next statement)."""
    settings: dict[str, str] = field(default_factory=dict)
    """DuckDB settings the statement runs under (restored after it)."""

    @property
    def rewritten(self) -> bool:
        return bool(self.streams)


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
        """The statement to run for `sql`: rewritten when it calls an AI function under a constant LIMIT."""
        try:
            (text,) = self._con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        except Exception:  # not a single SELECT DuckDB can serialise: run as written
            return Plan(sql)
        tree = json.loads(text)
        if tree.get("error") or len(tree.get("statements", [])) != 1:
            return Plan(sql)
        limits, calls = _limits(tree), _ai_calls(tree)
        if not limits or not calls or self._in_transaction():
            return Plan(sql)
        first = max(DEFAULT_FIRST_BATCH, min(limits))
        tables = self._warehouse_tables()
        ctes = _cte_names(tree)
        plan = Plan(sql)
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
        if not plan.streams:
            return Plan(sql)
        # One DuckDB thread: a second one would pull the next (larger) batch while the first is judged. The
        # model calls of a batch still run concurrently (the batch engine), which is where the time goes.
        plan.settings["threads"] = "1"
        plan.settings["enable_caching_operators"] = "false"  # else a filter holds its rows until it has 64
        (plan.sql,) = self._con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchone()
        return plan

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
        (count,) = self._con.cursor().execute(f"SELECT count(*) FROM {qualified}").fetchone()
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
