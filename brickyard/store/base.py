"""The ledger: usage records, the response cache and budget counters behind one small interface.

SQLite in WAL mode is the embedded default; another backend (e.g. PostgreSQL for several hosts)
implements the same `Store` protocol and no caller changes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def record_from_row(r: Sequence[Any]) -> UsageRecord:
    """A usage record from a row of the ledger's columns, in `USAGE_COLUMNS` order (every backend)."""
    return UsageRecord(
        ts=r[0],
        endpoint=r[1],
        model=r[2],
        status=r[3],
        tag=r[4],
        requested_endpoint=r[5],
        key=r[6],
        input_tokens=r[7],
        output_tokens=r[8],
        tokens_estimated=bool(r[9]),
        cost_usd=r[10],
        latency_s=r[11],
        cache_hit=bool(r[12]),
        error=r[13],
        extra=json.loads(r[14]) if r[14] else {},
    )


def summary_from_row(r: Sequence[Any], n: int) -> UsageSummaryRow:
    """A summary row from `n` group values then calls, errors, cache hits, tokens in/out, USD, mean latency."""
    return UsageSummaryRow(
        group=tuple(str(v) for v in r[:n]),
        calls=int(r[n]),
        errors=int(r[n + 1] or 0),
        cache_hits=int(r[n + 2] or 0),
        input_tokens=int(r[n + 3] or 0),
        output_tokens=int(r[n + 4] or 0),
        cost_usd=float(r[n + 5] or 0.0),
        latency_s_avg=float(r[n + 6] or 0.0),
    )


@dataclass(frozen=True)
class Hold:
    """One budget a reservation is checked against.

    `scope` names what is limited: `endpoint:NAME`, `tag:NAME`, `key:NAME` (spend before the first reservation
    in a window is seeded from the usage ledger), or `query:ID` / `sweep:ID` (a job's cap, starting at 0).
    `window_start` is the UTC start of the current day or month, or 0.0 for a job's whole life.
    """

    scope: str
    limit_usd: float
    window_start: float = 0.0


@dataclass(frozen=True)
class Refusal:
    """Why a reservation was refused: the budget, what is settled in its window and what is held in flight."""

    hold: Hold
    spent_usd: float
    held_usd: float


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

    # -- budgets: reservations shared by every process and host using the store ------------------------
    def reserve(self, holds: Sequence[Hold], amount_usd: float, *, ttl_s: float) -> str | Refusal:
        """Atomically: if for every hold `spent + held + amount <= limit` (and `spent < limit`), hold `amount_usd`
        against each and return the reservation's id; else hold nothing and return the first `Refusal`.
        A zero amount is refused only when the budget is spent. Reservations older than `ttl_s` (a crashed
        process) no longer count."""
        ...

    def settle(self, reservation: str, cost_usd: float) -> None:
        """Drop a reservation and add `cost_usd` to the spend of each budget window it held (idempotent)."""
        ...

    def budget_state(self, hold: Hold) -> tuple[float, float]:
        """(spent, held in flight) for one budget window."""
        ...

    # -- rate limits: one GCRA limiter, shared by every process -------------------------------------
    def take_rate(self, scope: str, per_minute: float, amount: float, *, burst: float, book_if_waiting: bool) -> float:
        """Book `amount` units of `scope`'s per-minute allowance now (GCRA: the amount must fit in a bucket of
        `burst` units) and
        return how many seconds the caller must wait first (0: go now). With `book_if_waiting=False` a call that
        would have to wait books nothing (the caller refuses instead)."""
        ...
