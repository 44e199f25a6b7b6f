"""A workspace: a folder holding `brickyard.toml` and the data files (ledger, keys, agents, evaluations, warehouse).

The workspace owns every file path and every store connection: features ask it (`ws.store`, `ws.keys`,
`ws.agent_store`, `ws.eval_store`, `ws.warehouse_path`) instead of opening files of their own, and
`ws.aclose()` closes them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from brickyard.config import DEFAULT_TOML, Settings, load_settings
from brickyard.models import catalog
from brickyard.models.base import Model
from brickyard.models.registry import Registry
from brickyard.store.base import Store
from brickyard.store.keys import KEYS_NAME, Keys, KeyStore
from brickyard.store.payloads import PAYLOADS_DIR, PayloadLog
from brickyard.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from brickyard.store.agents import AgentStore
    from brickyard.store.batch_jobs import BatchJobStore
    from brickyard.store.evals import EvalStore

CONFIG_NAME = "brickyard.toml"
LEDGER_NAME = "ledger.sqlite"
AGENTS_NAME = "agents.sqlite"
EVALS_NAME = "evals.sqlite"
BATCH_JOBS_NAME = "batch_jobs.sqlite"
WAREHOUSE_NAME = "warehouse.duckdb"


def resolve_home(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The workspace folder: the argument, else `$BRICKYARD_HOME`, else `./.brickyard`."""
    env = env if env is not None else os.environ
    if path is not None:
        return Path(path).expanduser()
    if env.get("BRICKYARD_HOME"):
        return Path(env["BRICKYARD_HOME"]).expanduser()
    return Path.cwd() / ".brickyard"


class Workspace:
    """Settings, ledger and model registry of one workspace folder. Pass it explicitly; no globals."""

    def __init__(self, path: str | Path | None = None, *, env: Mapping[str, str] | None = None, cache: bool = True):
        self.env = env if env is not None else os.environ
        self.path = resolve_home(path, self.env)
        self.cache = cache

    @classmethod
    def init(cls, path: str | Path | None = None, *, overwrite: bool = False) -> Workspace:
        """Create the folder and a commented default `brickyard.toml` (kept if it exists)."""
        workspace = cls(path)
        workspace.path.mkdir(parents=True, exist_ok=True)
        if overwrite or not workspace.config_path.exists():
            workspace.config_path.write_text(DEFAULT_TOML, encoding="utf-8")
        return workspace

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def models_dir(self) -> Path:
        configured = self.settings.local.models_dir
        return Path(configured).expanduser() if configured else catalog.default_models_dir()

    @property
    def ledger_path(self) -> Path:
        """The SQLite usage ledger (when no `[store] url` is set)."""
        return self.path / LEDGER_NAME

    @property
    def keys_path(self) -> Path:
        """The SQLite API keys of `brickyard serve` (when no `[store] url` is set)."""
        return self.path / KEYS_NAME

    @property
    def agents_path(self) -> Path:
        return self.path / AGENTS_NAME

    @property
    def evals_path(self) -> Path:
        return self.path / EVALS_NAME

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB warehouse (tables, knowledge bases) that `brickyard.sql.duckdb.connect` opens."""
        return self.path / WAREHOUSE_NAME

    @cached_property
    def store(self) -> Store:
        """The usage ledger, cache, budgets and rate limits: PostgreSQL when `[store] url` is set, else SQLite."""
        url = self.settings.store.url
        if url:
            from brickyard.store.postgres import PostgresStore

            return PostgresStore(url)
        return SQLiteStore(self.ledger_path)

    @cached_property
    def keys(self) -> Keys:
        """The API keys of `brickyard serve`: PostgreSQL when `[store] url` is set, else `keys.sqlite`."""
        url = self.settings.store.url
        if url:
            from brickyard.store.postgres_keys import PostgresKeyStore

            return PostgresKeyStore(url)
        return KeyStore(self.keys_path)

    @cached_property
    def agent_store(self) -> AgentStore:
        """Agent specs and run traces (`agents.sqlite`), shared by every `Agents` of this workspace."""
        from brickyard.store.agents import AgentStore  # imports the agent specs, which import the workspace

        return AgentStore(self.agents_path)

    @cached_property
    def eval_store(self) -> EvalStore:
        """Evaluation sets and runs (`evals.sqlite`), shared by every `EvalDatasets` of this workspace."""
        from brickyard.store.evals import EvalStore

        return EvalStore(self.evals_path)

    @cached_property
    def batch_jobs(self) -> BatchJobStore:
        """Provider batch jobs (`batch_jobs.sqlite`): rows, chunks and per-row results (`brickyard.batch_api`)."""
        from brickyard.store.batch_jobs import BatchJobStore

        return BatchJobStore(self.path / BATCH_JOBS_NAME)

    @property
    def payloads_dir(self) -> Path:
        """Where payload logs are written (`<workspace>/payloads`), one JSONL file per day and process."""
        return self.path / PAYLOADS_DIR

    @cached_property
    def payloads(self) -> PayloadLog | None:
        """The payload log (None when `[payloads] enabled = false`); opening it purges expired days."""
        return PayloadLog(self.payloads_dir, self.settings.payloads) if self.settings.payloads.enabled else None

    @cached_property
    def registry(self) -> Registry:
        registry = Registry(
            self.settings,
            self.store,
            models_dir=self.models_dir,
            env=self.env,
            cache=self.cache,
            source=str(self.config_path),
            payloads=self.payloads,
        )
        registry.host = self  # namespaces (`agent:NAME`) build their models from the workspace
        return registry

    def model(self, name: str | None = None) -> Model:
        """The model stack for an endpoint (default: `[defaults] chat`)."""
        return self.registry.get(name or self.settings.defaults.chat)

    async def aclose(self) -> None:
        """Close models, then every store (ledger, keys, agents, evaluations, payload log); the workspace
        reopens them if used again."""
        registry = self.__dict__.pop("registry", None)
        if registry is not None:
            await registry.aclose()  # first: agent models use the agent store
        for name in ("store", "keys", "agent_store", "eval_store", "batch_jobs", "payloads"):
            opened = self.__dict__.pop(name, None)
            if opened is not None:
                opened.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"
