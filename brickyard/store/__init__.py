"""Storage for usage, cache, budgets, rate limits and API keys: SQLite files, or PostgreSQL for several hosts;
and the SQLite files of agents and evaluations. The workspace opens and closes every one of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brickyard.store.base import Hold, Refusal, Store, UsageRecord, UsageSummaryRow
from brickyard.store.evals import CaseRow, DatasetRow, EvalStore
from brickyard.store.keys import ApiKey, Keys, KeyStore
from brickyard.store.postgres import PostgresStore
from brickyard.store.postgres_keys import PostgresKeyStore
from brickyard.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from brickyard.store.agents import AgentStore

__all__ = [
    "AgentStore",
    "ApiKey",
    "CaseRow",
    "DatasetRow",
    "EvalStore",
    "Hold",
    "KeyStore",
    "Keys",
    "PostgresKeyStore",
    "PostgresStore",
    "Refusal",
    "SQLiteStore",
    "Store",
    "UsageRecord",
    "UsageSummaryRow",
]


def __getattr__(name: str) -> Any:
    # `AgentStore` reads agent specs, whose package imports the workspace, which imports this package: load it late
    if name == "AgentStore":
        from brickyard.store.agents import AgentStore

        return AgentStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
