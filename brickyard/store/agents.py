"""Agent specs (every version) and run traces, in the workspace's `agents.sqlite` (WAL, multi-process).

Opened and closed by the workspace (`Workspace.agent_store`); every `Agents` of a workspace shares it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from brickyard._errors import UserError
from brickyard.agents.spec import AgentSpec
from brickyard.agents.trace import Trace
from brickyard.store._sqlite import open_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL, created REAL NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS agent_runs (
    run_id TEXT PRIMARY KEY, agent TEXT NOT NULL, version INTEGER NOT NULL, created REAL NOT NULL,
    input TEXT, output TEXT, error TEXT, input_tokens INTEGER, output_tokens INTEGER, cost_usd REAL,
    latency_s REAL, trace TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_runs_agent ON agent_runs (agent, created);
"""


class AgentStore:
    """Saves specs as new versions and runs with their traces."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_file(path)
        with self._lock:
            self._db.executescript(_SCHEMA)

    def save(self, spec: AgentSpec) -> int:
        """Store `spec` as the agent's next version (1 for a new agent); returns the version number."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (latest,) = self._db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM agents WHERE name = ?", (spec.name,)
                ).fetchone()
                version = int(latest) + 1
                self._db.execute(
                    "INSERT INTO agents (name, version, spec, created) VALUES (?, ?, ?, ?)",
                    (spec.name, version, spec.model_dump_json(), time.time()),
                )
                self._db.execute("UPDATE agents SET deleted = 0 WHERE name = ?", (spec.name,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return version

    def get(self, name: str, version: int | None = None) -> tuple[AgentSpec, int]:
        """The latest (or given) version of an agent and its number."""
        query = "SELECT spec, version FROM agents WHERE name = ? AND deleted = 0"
        args: list[Any] = [name]
        if version is not None:
            query += " AND version = ?"
            args.append(version)
        with self._lock:
            row = self._db.execute(query + " ORDER BY version DESC LIMIT 1", args).fetchone()
        if row is None:
            known = ", ".join(self.names()) or "none"
            raise UserError(f"no agent `{name}`. Fix: brickyard agent create -f spec.yaml (known: {known})")
        return AgentSpec.model_validate_json(row[0]), int(row[1])

    def names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT name FROM agents WHERE deleted = 0 ORDER BY name")]

    def listing(self) -> list[tuple[str, str, int, str]]:
        """(name, kind, latest version, optimization state) per agent."""
        out = []
        for name in self.names():
            spec, version = self.get(name)
            out.append((name, spec.kind.value, version, spec.optimization_state.value))
        return out

    def delete(self, name: str) -> None:
        self.get(name)
        with self._lock:
            self._db.execute("UPDATE agents SET deleted = 1 WHERE name = ?", (name,))

    def record_run(self, trace: Trace) -> None:
        output = trace.output if isinstance(trace.output, str) else json.dumps(trace.output, default=str)
        with self._lock:
            self._db.execute(
                "INSERT INTO agent_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    trace.run_id,
                    trace.agent,
                    trace.version,
                    trace.started,
                    trace.input,
                    output,
                    trace.error,
                    trace.input_tokens,
                    trace.output_tokens,
                    trace.cost_usd,
                    trace.latency_s,
                    json.dumps(trace.to_dict(), default=str),
                ),
            )

    def run(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT trace FROM agent_runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UserError(f"no run `{run_id}`. Fix: use a run id printed by `brickyard agent run`")
        return dict(json.loads(row[0]))

    def runs(self, agent: str, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, version, created, error, cost_usd, latency_s FROM agent_runs WHERE agent = ? "
                "ORDER BY created DESC LIMIT ?",
                (agent, limit),
            ).fetchall()
        keys = ("run_id", "version", "created", "error", "cost_usd", "latency_s")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
