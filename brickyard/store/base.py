"""The ledger: usage records, the response cache and budget counters behind one small interface.

SQLite in WAL mode is the embedded default; another backend (e.g. PostgreSQL for several hosts)
implements the same `Store` protocol and no caller changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class UsageRecord:
    """One model call as the gateway saw it."""

    ts: float
    endpoint: str
    model: str
    status: str = "ok"
    tag: str | None = None
    requested_endpoint: str | None = None
    key: str | None = None
    """The API key name the call was made for (`brickyard.models.caller`), None outside the server."""
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cache_hit: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UsageSummaryRow:
    """Usage summed over one group."""

    group: tuple[str, ...]
    calls: int
    errors: int
    cache_hits: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s_avg: float


class Store(Protocol):
    """What the gateway needs from storage; safe to use from several processes at once.

    `buffered` stores queue writes (`record_usage`, `cache_put`) and return at once; their reads include what
    is queued, `flush()` waits until the queue is written and `close()` flushes.
    """

    buffered: bool

    def record_usage(self, record: UsageRecord) -> None: ...

    def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        endpoint: str | None = None,
        tag: str | None = None,
        key: str | None = None,
    ) -> list[UsageRecord]: ...

    def summarize(
        self,
        by: list[str],
        *,
        since: float | None = None,
        until: float | None = None,
        endpoint: str | None = None,
        tag: str | None = None,
        key: str | None = None,
    ) -> list[UsageSummaryRow]: ...

    def spent_usd(
        self, *, since: float, endpoint: str | None = None, tag: str | None = None, key: str | None = None
    ) -> float: ...

    def flush(self) -> None: ...

    def cache_get(self, key: str) -> dict[str, Any] | None: ...

    def cache_put(self, key: str, value: dict[str, Any]) -> None: ...

    def cache_clear(self) -> int: ...

    def close(self) -> None: ...
