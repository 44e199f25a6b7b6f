"""Running an agent over a warehouse column or a folder of documents, into a new table.

Every input row gives one output row (NULL input → NULL output; a failed row keeps its error), and
an extract agent's answers are also written as a typed STRUCT column shaped by its schema.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from brickyard._errors import UserError
from brickyard.agents.runner import AgentRun, Agents
from brickyard.agents.spec import AgentKind

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCALARS = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN", "null": "VARCHAR"}


def duckdb_structure(schema: dict[str, Any]) -> Any:
    """A JSON schema as a DuckDB `json_transform` structure (objects → STRUCT, arrays → LIST)."""
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        return {name: duckdb_structure(sub) for name, sub in schema.get("properties", {}).items()} or "JSON"
    if kind == "array":
        return [duckdb_structure(schema.get("items", {"type": "string"}))]
    return _SCALARS.get(kind, "VARCHAR")


def _check(*names: str) -> None:
    for name in names:
        if not _IDENT.match(name):
            raise UserError(f"{name!r}: table and column names are letters, digits and underscores")


def _rows(sources: list[Any], inputs: list[str | None], runs: list[AgentRun | None]) -> list[tuple[Any, ...]]:
    out = []
    for source, text, run in zip(sources, inputs, runs, strict=True):
        output = None if run is None else run.output
        text_out = None if output is None else (output if isinstance(output, str) else json.dumps(output))
        out.append((source, text, text_out, None if run is None else run.trace.error, run and run.run_id))
    return out


def _write(con: Any, into: str, source_type: str, rows: list[tuple[Any, ...]], structure: Any) -> None:
    con.execute(
        f"CREATE OR REPLACE TABLE {into} (source {source_type}, input VARCHAR, output VARCHAR, error VARCHAR, "
        "run_id VARCHAR)"
    )
    con.executemany(f"INSERT INTO {into} VALUES (?, ?, ?, ?, ?)", rows)
    if structure is not None:
        typed = json.dumps(structure).replace("'", "''")
        con.execute(f"ALTER TABLE {into} ADD COLUMN result JSON")
        con.execute(f"UPDATE {into} SET result = output::JSON WHERE output IS NOT NULL")
        con.execute(
            f"CREATE OR REPLACE TABLE {into} AS SELECT source, input, output, "
            f"json_transform(result, '{typed}') AS result, error, run_id FROM {into}"
        )


def _structure(agents: Agents, name: str) -> Any:
    spec, _ = agents.store.get(name)
    if spec.kind is AgentKind.extract and spec.output_schema is not None:
        return duckdb_structure(spec.output_schema)
    return None


def run_over_table(agents: Agents, name: str, table: str, column: str, into: str) -> tuple[int, int]:
    """Run `name` on every row of `table.column` into `into`; returns (rows, failed rows)."""
    from brickyard.sql.duckdb import connect

    _check(table, column, into)
    structure = _structure(agents, name)
    with connect(agents.workspace) as con:
        rows = con.execute(f"SELECT rowid, {column}::VARCHAR FROM {table} ORDER BY rowid").fetchall()
    runs = _run_all(agents, name, [r[1] for r in rows])
    records = _rows([r[0] for r in rows], [r[1] for r in rows], runs)
    with connect(agents.workspace) as con:
        _write(con, into, "BIGINT", records, structure)
    return len(records), sum(1 for r in records if r[3])


def run_over_folder(agents: Agents, name: str, folder: Path, into: str) -> tuple[int, int]:
    """Run `name` on every document (txt, md, html, pdf, docx) under `folder`; unreadable files are rows
    with their error."""
    from brickyard.knowledge.readers import DocumentError, read_document
    from brickyard.sql.duckdb import connect

    _check(into)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder. Fix: give a folder of documents")
    structure = _structure(agents, name)
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    texts: list[str | None] = []
    problems: dict[int, str] = {}
    for i, path in enumerate(paths):
        try:
            texts.append(read_document(path).text)
        except DocumentError as exc:
            texts.append(None)
            problems[i] = str(exc)
    runs = _run_all(agents, name, texts)
    records = _rows([str(p) for p in paths], texts, runs)
    records = [(*r[:3], problems.get(i, r[3]), r[4]) for i, r in enumerate(records)]
    with connect(agents.workspace) as con:
        _write(con, into, "VARCHAR", records, structure)
    return len(records), sum(1 for r in records if r[3])


def _run_all(agents: Agents, name: str, texts: list[str | None]) -> list[AgentRun | None]:
    async def go() -> list[AgentRun | None]:
        try:
            return await agents.run_many(name, texts)
        finally:
            await agents.workspace.aclose()

    return asyncio.run(go())
