"""Storage for usage, cache and budgets."""

from brickyard.store.base import Store, UsageRecord, UsageSummaryRow
from brickyard.store.sqlite import SQLiteStore

__all__ = ["SQLiteStore", "Store", "UsageRecord", "UsageSummaryRow"]
