"""Storage for usage, cache, budgets, rate limits and API keys: SQLite files, or PostgreSQL for several hosts."""

from brickyard.store.base import Hold, Refusal, Store, UsageRecord, UsageSummaryRow
from brickyard.store.keys import ApiKey, Keys, KeyStore
from brickyard.store.postgres import PostgresStore
from brickyard.store.postgres_keys import PostgresKeyStore
from brickyard.store.sqlite import SQLiteStore

__all__ = [
    "ApiKey",
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
