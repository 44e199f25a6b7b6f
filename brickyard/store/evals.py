"""Evaluation sets (every version, with their cases) and evaluation runs, in the workspace's `evals.sqlite` (WAL).

The tables only: reading files, splitting dev/test and building cases is `brickyard.evals.datasets`.
Opened and closed by the workspace (`Workspace.eval_store`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from brickyard.store._sqlite import open_file

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
CREATE TABLE IF NOT EXISTS labels (
    dataset TEXT NOT NULL, version INTEGER NOT NULL, case_id TEXT NOT NULL, verdict TEXT, corrected TEXT,
    comment TEXT NOT NULL DEFAULT '', judged_output TEXT, run_id TEXT, author TEXT, updated REAL NOT NULL,
    PRIMARY KEY (dataset, version, case_id)
);
"""


class DatasetRow(NamedTuple):
    """One stored version of an evaluation set, without its cases."""

    name: str
    version: int
    created: float
    source: str
    description: str
    seed: int
    dev_fraction: float
    synthetic: bool


class CaseRow(NamedTuple):
    """One stored case: `split` is "dev" or "test"; `expected` and `metadata` are JSON values."""

    id: str
    split: str
    input: str
    expected: Any
    metadata: dict[str, Any]


class Label(NamedTuple):
    """A person's label on a case: `verdict` pass/fail (or None), a corrected expected output, a comment, and
    the output the verdict is about (with the run it came from)."""

    verdict: str | None
    corrected: Any = None
    comment: str = ""
    judged_output: Any = None
    run_id: str | None = None
    author: str | None = None


class EvalStore:
    """The tables of evaluation sets and evaluation runs. Thread-safe: one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_file(path)
        with self._lock:
            self._db.executescript(_SCHEMA)

    def add_version(
        self,
        name: str,
        cases: Sequence[CaseRow],
        *,
        created: float,
        source: str,
        description: str,
        seed: int,
        dev_fraction: float,
        synthetic: bool,
    ) -> int:
        """Store `cases` (in order) as the next version of `name` (1 for a new set); returns the version."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (latest,) = self._db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM datasets WHERE name = ?", (name,)
                ).fetchone()
                version = int(latest) + 1
                self._db.execute(
                    "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, version, created, source, description, seed, dev_fraction, int(synthetic)),
                )
                self._db.executemany(
                    "INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (name, version, i, c.id, c.split, c.input, json.dumps(c.expected), json.dumps(c.metadata))
                        for i, c in enumerate(cases)
                    ],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return version

    def version(self, name: str, version: int | None = None) -> DatasetRow | None:
        """A stored version of `name` (the latest when `version` is None), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT version, created, source, description, seed, dev_fraction, synthetic FROM datasets "
                "WHERE name = ? AND (? IS NULL OR version = ?) ORDER BY version DESC LIMIT 1",
                (name, version, version),
            ).fetchone()
        if row is None:
            return None
        number, created, source, description, seed, dev_fraction, synthetic = row
        return DatasetRow(name, number, created, source, description, seed, dev_fraction, bool(synthetic))

    def cases(self, name: str, version: int) -> list[CaseRow]:
        """The cases of one version, in stored order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, split, input, expected, metadata FROM cases "
                "WHERE dataset = ? AND version = ? ORDER BY position",
                (name, version),
            ).fetchall()
        return [
            CaseRow(case_id, split, text, json.loads(expected), json.loads(metadata))
            for case_id, split, text, expected, metadata in rows
        ]

    def names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT name FROM datasets ORDER BY name")]

    def summaries(self) -> list[dict[str, Any]]:
        """One row per dataset: latest version, case counts, whether labelled or synthetic."""
        with self._lock:
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

    def runs(self, agent: str | None = None) -> list[dict[str, Any]]:
        """Stored evaluation run records, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM runs WHERE (? IS NULL OR agent = ?) ORDER BY created DESC", (agent, agent)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One stored evaluation run record, or None."""
        with self._lock:
            row = self._db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- human labels on cases (the console's pass/fail, corrected output and comment) -----------
    def set_label(self, dataset: str, version: int, case_id: str, label: Label) -> None:
        """Store (or replace) a person's label on one case of one set version."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dataset,
                    version,
                    case_id,
                    label.verdict,
                    None if label.corrected is None else json.dumps(label.corrected),
                    label.comment,
                    None if label.judged_output is None else json.dumps(label.judged_output),
                    label.run_id,
                    label.author,
                    time.time(),
                ),
            )

    def delete_label(self, dataset: str, version: int, case_id: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM labels WHERE dataset = ? AND version = ? AND case_id = ?", (dataset, version, case_id)
            )

    def labels(self, dataset: str, version: int) -> dict[str, Label]:
        """The labels on a set version's cases, by case id."""
        with self._lock:
            rows = self._db.execute(
                "SELECT case_id, verdict, corrected, comment, judged_output, run_id, author FROM labels "
                "WHERE dataset = ? AND version = ?",
                (dataset, version),
            ).fetchall()
        return {
            r[0]: Label(
                r[1],
                None if r[2] is None else json.loads(r[2]),
                r[3],
                None if r[4] is None else json.loads(r[4]),
                r[5],
                r[6],
            )
            for r in rows
        }

    def latest_run(self, agent: str) -> dict[str, Any] | None:
        """The agent's newest stored evaluation run record, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT record FROM runs WHERE agent = ? ORDER BY created DESC LIMIT 1", (agent,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
