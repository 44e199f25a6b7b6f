"""Evaluation sets: cases read from a file or a warehouse table, versioned in the workspace, split dev/test.

Stored in `<workspace>/evals.sqlite` by the workspace's store (`Workspace.eval_store`, `brickyard.store.evals`).
Creating a set under an existing name makes a new version; the split is fixed by a seed, so a rerun
evaluates the same test cases.
"""

from __future__ import annotations

import builtins
import csv
import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brickyard._errors import MissingExtraError, UserError
from brickyard.evals._types import Case
from brickyard.store.evals import CaseRow, EvalStore
from brickyard.workspace import EVALS_NAME, WAREHOUSE_NAME, Workspace

EVALS_DB = EVALS_NAME


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
    database = workspace_path / WAREHOUSE_NAME
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
    """The workspace's evaluation sets and evaluation runs, kept in its `eval_store` (`evals.sqlite`).

    Given a `Workspace`, its store is used and the workspace closes it (`ws.aclose()`; `close()` here
    leaves it open). Given a workspace folder (older callers), a store of its own is opened and `close()`
    closes it.
    """

    def __init__(self, workspace: Workspace | Path) -> None:
        if isinstance(workspace, Workspace):
            self.workspace_path, self.store, self._owns_store = workspace.path, workspace.eval_store, False
        else:
            self.workspace_path = Path(workspace)
            self.store, self._owns_store = EvalStore(self.workspace_path / EVALS_DB), True

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
        rows = [
            CaseRow(c.id, split, c.input, c.expected, c.metadata)
            for split, part in (("dev", dev), ("test", test))
            for c in part
        ]
        version = self.store.add_version(
            name,
            rows,
            created=now,
            source=source,
            description=description,
            seed=seed,
            dev_fraction=dev_fraction,
            synthetic=synthetic,
        )
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
        row = self.store.version(name, version)
        if row is None:
            known = ", ".join(self.names()) or "none yet"
            which = f"version {version} of " if version is not None else ""
            raise UserError(f"no {which}dataset `{name}` (known: {known}). Fix: `brickyard eval dataset create`")
        dataset = Dataset(
            name,
            row.version,
            row.source,
            row.seed,
            row.dev_fraction,
            [],
            [],
            row.description,
            row.synthetic,
            row.created,
        )
        for stored in self.store.cases(name, row.version):
            case = Case(id=stored.id, input=stored.input, expected=stored.expected, metadata=stored.metadata)
            (dataset.dev if stored.split == "dev" else dataset.test).append(case)
        return dataset

    def names(self) -> list[str]:
        return self.store.names()

    def summaries(self) -> list[dict[str, Any]]:
        """One row per dataset: latest version, case counts, whether labelled or synthetic."""
        return self.store.summaries()

    # -- evaluation runs ------------------------------------------------------------------------
    def save_run(self, run_id: str, agent: str, dataset: str, dataset_version: int, record: dict[str, Any]) -> None:
        self.store.save_run(run_id, agent, dataset, dataset_version, record)

    def runs(self, agent: str | None = None) -> builtins.list[dict[str, Any]]:
        """Stored evaluation run records, newest first."""
        return self.store.runs(agent)

    def close(self) -> None:
        """Close the store if this object opened it (from a folder path); a workspace closes its own."""
        if self._owns_store:
            self.store.close()
