"""Evaluation sets: cases read from a file or a warehouse table, versioned in the workspace, split dev/test.

Stored in `<workspace>/evals.sqlite` (WAL). Creating a set under an existing name makes a new version;
the split is fixed by a seed, so a rerun evaluates the same test cases.
"""

from __future__ import annotations

import builtins
import csv
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brickyard._errors import MissingExtraError, UserError
from brickyard.evals._types import Case

EVALS_DB = "evals.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT NOT NULL, version INTEGER NOT NULL, created REAL NOT NULL, source TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', seed INTEGER NOT NULL, dev_fraction REAL NOT NULL,
    synthetic INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS cases (
    dataset TEXT NOT NULL, version INTEGER NOT NULL, position INTEGER NOT NULL, id TEXT NOT NULL,
    split TEXT NOT NULL, input TEXT NOT NULL, expected TEXT, metadata TEXT NOT NULL,
    PRIMARY KEY (dataset, version, position)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, agent TEXT NOT NULL, dataset TEXT NOT NULL, dataset_version INTEGER NOT NULL,
    created REAL NOT NULL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_agent ON runs (agent, created);
"""


@dataclass
class Dataset:
    """One version of an evaluation set: its cases split into `dev` (demos, tuning) and `test` (scoring)."""

    name: str
    version: int
    source: str
    seed: int
    dev_fraction: float
    dev: list[Case] = field(default_factory=list)
    test: list[Case] = field(default_factory=list)
    description: str = ""
    synthetic: bool = False
    created: float = 0.0

    @property
    def cases(self) -> list[Case]:
        return [*self.dev, *self.test]

    @property
    def labelled(self) -> bool:
        """True when every case has an expected output."""
        return all(case.expected is not None for case in self.cases)


def split_cases(cases: Sequence[Case], *, dev_fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Shuffle with `seed` and cut: the first `dev_fraction` of the cases is dev, the rest test."""
    if not 0.0 <= dev_fraction < 1.0:
        raise UserError(f"dev fraction {dev_fraction} must be in [0, 1). Fix: e.g. --dev-fraction 0.3")
    order = list(cases)
    random.Random(seed).shuffle(order)
    cut = round(len(order) * dev_fraction)
    if dev_fraction > 0 and len(order) >= 2:
        cut = min(max(cut, 1), len(order) - 1)
    return order[:cut], order[cut:]


def read_rows(source: str | Path, *, workspace_path: Path | None = None) -> list[dict[str, Any]]:
    """Rows of a CSV, JSONL, JSON or Parquet file, or of a warehouse table (`table:NAME` or a bare name)."""
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet"):
        if not path.exists():
            raise UserError(f"{path} does not exist. Fix: give the path of a .csv, .jsonl, .json or .parquet file")
        if suffix in (".csv", ".tsv"):
            with path.open(encoding="utf-8", newline="") as handle:
                return list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix in (".jsonl", ".ndjson"):
            rows = []
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise UserError(
                            f"{path}:{number} is not valid JSON ({exc}). Fix: one object per line"
                        ) from None
            return rows
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise UserError(f"{path} must hold a JSON array of objects (or use .jsonl, one object per line)")
            return data
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingExtraError("pyarrow", "sql") from None
        return list(pq.read_table(path).to_pylist())
    return _table_rows(str(source).removeprefix("table:"), workspace_path)


def _table_rows(table: str, workspace_path: Path | None) -> list[dict[str, Any]]:
    if workspace_path is None or not table.replace("_", "").replace(".", "").isalnum():
        raise UserError(
            f"`{table}` is neither a .csv/.jsonl/.json/.parquet file nor a warehouse table name. "
            "Fix: give a file path, or `table:NAME` for a table loaded with `brickyard load`"
        )
    try:
        import duckdb
    except ImportError:
        raise MissingExtraError("duckdb", "sql") from None
    database = workspace_path / "warehouse.duckdb"
    if not database.exists():
        raise UserError(f"the workspace has no warehouse, so there is no table `{table}`. Fix: `brickyard load`")
    with duckdb.connect(str(database), read_only=True) as con:
        try:
            relation = con.execute(f'SELECT * FROM "{table}"')
        except duckdb.CatalogException:
            raise UserError(f"no table `{table}` in the warehouse. Fix: `brickyard load FILE {table}`") from None
        columns = [d[0] for d in relation.description]
        return [dict(zip(columns, row, strict=True)) for row in relation.fetchall()]


def cases_from_rows(
    rows: Iterable[dict[str, Any]],
    *,
    input_column: str = "input",
    expected_column: str | None = "expected",
    id_column: str | None = None,
    source: str = "the data",
) -> list[Case]:
    """Cases from row dicts; other columns become metadata. Wrong columns are a clear error."""
    rows = list(rows)
    if not rows:
        raise UserError(f"{source} has no rows")
    columns = list(rows[0])
    if input_column not in columns:
        raise UserError(
            f"{source} has no column `{input_column}` (columns: {', '.join(columns)}). Fix: --input-column NAME"
        )
    has_expected = expected_column is not None and expected_column in columns
    if expected_column not in (None, "expected") and not has_expected:
        raise UserError(
            f"{source} has no column `{expected_column}` (columns: {', '.join(columns)}). "
            "Fix: --expected-column NAME, or leave it out for an unlabelled set (judge-only scorers)"
        )
    cases = []
    for number, row in enumerate(rows):
        text = row.get(input_column)
        if text is None or not str(text).strip():
            raise UserError(f"{source}, row {number + 1}: `{input_column}` is empty. Fix: remove the row or fill it")
        expected = _decoded(row.get(expected_column)) if has_expected and expected_column else None
        metadata = {
            key: _decoded(value) for key, value in row.items() if key not in (input_column, expected_column, id_column)
        }
        case_id = str(row[id_column]) if id_column and row.get(id_column) is not None else str(number)
        cases.append(Case(id=case_id, input=str(text), expected=expected, metadata=metadata))
    return cases


def _decoded(value: Any) -> Any:
    """JSON objects and arrays stored as text (CSV cells) come back as values; other text stays text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return None if value == "" else value


class EvalDatasets:
    """The workspace's evaluation sets and evaluation runs (`evals.sqlite`)."""

    def __init__(self, workspace_path: Path) -> None:
        self.workspace_path = workspace_path
        workspace_path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            workspace_path / EVALS_DB, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def create(
        self,
        name: str,
        cases: Sequence[Case],
        *,
        source: str,
        dev_fraction: float = 0.3,
        seed: int = 0,
        description: str = "",
        synthetic: bool = False,
    ) -> Dataset:
        """Store `cases` as the next version of `name`, split into dev and test."""
        if not name.replace("_", "").replace("-", "").isalnum():
            raise UserError(f"dataset name `{name}` must be letters, digits, '-' and '_'")
        if not cases:
            raise UserError("a dataset needs at least one case")
        ids = [c.id for c in cases]
        if len(set(ids)) != len(ids):
            raise UserError("case ids must be unique. Fix: choose an id column with unique values")
        dev, test = split_cases(cases, dev_fraction=dev_fraction, seed=seed)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (latest,) = self._db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM datasets WHERE name = ?", (name,)
                ).fetchone()
                version = int(latest) + 1
                self._db.execute(
                    "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, version, now, source, description, seed, dev_fraction, int(synthetic)),
                )
                self._db.executemany(
                    "INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (name, version, i, c.id, split, c.input, json.dumps(c.expected), json.dumps(c.metadata))
                        for i, (c, split) in enumerate([*((c, "dev") for c in dev), *((c, "test") for c in test)])
                    ],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Dataset(name, version, source, seed, dev_fraction, dev, test, description, synthetic, now)

    def create_from(
        self,
        name: str,
        source: str | Path,
        *,
        input_column: str = "input",
        expected_column: str | None = "expected",
        id_column: str | None = None,
        dev_fraction: float = 0.3,
        seed: int = 0,
        description: str = "",
    ) -> Dataset:
        """Read a file or warehouse table and store it as a dataset version."""
        rows = read_rows(source, workspace_path=self.workspace_path)
        cases = cases_from_rows(
            rows, input_column=input_column, expected_column=expected_column, id_column=id_column, source=str(source)
        )
        return self.create(
            name, cases, source=str(source), dev_fraction=dev_fraction, seed=seed, description=description
        )

    def get(self, name: str, version: int | None = None) -> Dataset:
        """A dataset version (the latest when `version` is None)."""
        row = self._db.execute(
            "SELECT version, created, source, description, seed, dev_fraction, synthetic FROM datasets "
            "WHERE name = ? AND (? IS NULL OR version = ?) ORDER BY version DESC LIMIT 1",
            (name, version, version),
        ).fetchone()
        if row is None:
            known = ", ".join(self.names()) or "none yet"
            which = f"version {version} of " if version is not None else ""
            raise UserError(f"no {which}dataset `{name}` (known: {known}). Fix: `brickyard eval dataset create`")
        number, created, source, description, seed, dev_fraction, synthetic = row
        dataset = Dataset(name, number, source, seed, dev_fraction, [], [], description, bool(synthetic), created)
        for case_id, split, text, expected, metadata in self._db.execute(
            "SELECT id, split, input, expected, metadata FROM cases "
            "WHERE dataset = ? AND version = ? ORDER BY position",
            (name, number),
        ):
            case = Case(id=case_id, input=text, expected=json.loads(expected), metadata=json.loads(metadata))
            (dataset.dev if split == "dev" else dataset.test).append(case)
        return dataset

    def names(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT name FROM datasets ORDER BY name")]

    def summaries(self) -> list[dict[str, Any]]:
        """One row per dataset: latest version, case counts, whether labelled or synthetic."""
        rows = self._db.execute(
            "SELECT d.name, d.version, d.created, d.source, d.synthetic, "
            "SUM(c.split = 'dev'), SUM(c.split = 'test'), SUM(c.expected = 'null') "
            "FROM datasets d JOIN cases c ON c.dataset = d.name AND c.version = d.version "
            "WHERE d.version = (SELECT MAX(version) FROM datasets x WHERE x.name = d.name) "
            "GROUP BY d.name, d.version ORDER BY d.name"
        ).fetchall()
        keys = ("name", "version", "created", "source", "synthetic", "dev", "test", "unlabelled")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- evaluation runs ------------------------------------------------------------------------
    def save_run(self, run_id: str, agent: str, dataset: str, dataset_version: int, record: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, agent, dataset, dataset_version, time.time(), json.dumps(record, default=str)),
            )

    def runs(self, agent: str | None = None) -> builtins.list[dict[str, Any]]:
        """Stored evaluation run records, newest first."""
        rows = self._db.execute(
            "SELECT record FROM runs WHERE (? IS NULL OR agent = ?) ORDER BY created DESC", (agent, agent)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
