"""The figures of the usage page, read from the ledger through the store (never the records one by one).

Spend and calls per hour or day by key, endpoint, model or tag; per endpoint: calls, error rate, mean
latency; each budget's burn with a straight-line projection to the end of its window; payload log search.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from brickyard.config import Window
from brickyard.models.budget import window_end, window_start
from brickyard.store.base import Store, UsageSummaryRow
from brickyard.workspace import Workspace

GROUPS = ("endpoint", "key", "model", "tag")
SPANS = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
TOP = 8
"""Series drawn per chart; smaller groups are summed as `other`."""


@dataclass(frozen=True)
class Burn:
    """One budget: what is spent in its current window, and where a straight line from now ends it."""

    scope: str
    limit_usd: float
    window: str
    spent_usd: float
    projected_usd: float
    ends: float

    @property
    def percent(self) -> float:
        return 100 * self.spent_usd / self.limit_usd

    @property
    def projected_percent(self) -> float:
        return 100 * self.projected_usd / self.limit_usd


BUCKETS = {"hour": ("hour_start", "%Y-%m-%d %H:00", 3600.0), "day": ("day_start", "%Y-%m-%d", 86400.0)}
"""Time bucket → the store's group (the bucket's start in unix seconds, UTC), its label format and its length."""
LATE_S = 120.0
"""A bucket counts as closed this long after it ends (usage is written a moment after the call)."""


class Rollups:
    """Summaries of closed time buckets, kept for up to `ttl_s`; the open bucket is always read from the ledger.

    Loading a page then reads only the last hour's or day's records, not the whole period again. A record
    written later than `LATE_S` into a closed bucket (rare: a process that buffered it) shows within `ttl_s`.
    """

    def __init__(self, *, ttl_s: float = 600.0, max_entries: int = 64, clock: Any = time.time) -> None:
        self._ttl, self._max, self._clock = ttl_s, max_entries, clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[Any, ...], tuple[float, list[UsageSummaryRow]]] = {}

    def summarize(
        self, store: Store, groups: list[str], *, key: str | None, since: float, bucket_s: float
    ) -> list[UsageSummaryRow]:
        now = self._clock()
        closed = math.floor((now - LATE_S) / bucket_s) * bucket_s
        start = math.floor(since / bucket_s) * bucket_s
        entry = (tuple(groups), key, start, closed)
        with self._lock:
            hit = self._entries.get(entry)
        if hit is None or now - hit[0] > self._ttl:
            hit = (now, store.summarize(groups, since=start, until=closed, key=key))
            with self._lock:
                if len(self._entries) >= self._max:
                    self._entries.clear()
                self._entries[entry] = hit
        return [*hit[1], *store.summarize(groups, since=closed, key=key)]


def overview(
    store: Store, rollups: Rollups, *, key: str | None, since: float, bucket: str, by: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The chart data and the per-endpoint table, from one pass over the ledger (grouped by bucket, `by`, endpoint)."""
    group, label_format, bucket_s = BUCKETS[bucket]
    groups = [group, by] if by == "endpoint" else [group, by, "endpoint"]
    rows = rollups.summarize(store, groups, key=key, since=since, bucket_s=bucket_s)
    return _series(rows, label_format), _endpoints(rows)


def _series(rows: list[UsageSummaryRow], label_format: str) -> dict[str, Any]:
    """Per bucket and group (top `TOP` by spend, then `other`): USD and calls."""
    starts = sorted({int(float(r.group[0])) for r in rows})
    index = {str(s): i for i, s in enumerate(starts)}
    spend: dict[str, float] = {}
    for r in rows:
        spend[r.group[1]] = spend.get(r.group[1], 0.0) + r.cost_usd
    top = sorted(spend, key=lambda g: (-spend[g], g))[:TOP]
    names = [*top, "other"] if len(spend) > TOP else top
    usd = {g: [0.0] * len(starts) for g in names}
    calls = {g: [0] * len(starts) for g in names}
    for r in rows:
        name = r.group[1] if r.group[1] in usd else "other"
        at = index[str(int(float(r.group[0])))]
        usd[name][at] += r.cost_usd
        calls[name][at] += r.calls
    return {
        "labels": [datetime.fromtimestamp(s, tz=UTC).strftime(label_format) for s in starts],
        "series": [
            {"name": "(none)" if g == "-" else g, "usd": [round(v, 6) for v in usd[g]], "calls": calls[g]}
            for g in names
        ],
    }


def _endpoints(rows: list[UsageSummaryRow]) -> list[dict[str, Any]]:
    """Per endpoint (the last group): calls, errors, error rate, cache hits, tokens, USD and mean latency."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        e = out.setdefault(
            r.group[-1],
            {
                "endpoint": r.group[-1],
                "calls": 0,
                "errors": 0,
                "cache_hits": 0,
                "tokens": 0,
                "cost_usd": 0.0,
                "latency_sum": 0.0,
            },
        )
        e["calls"] += r.calls
        e["errors"] += r.errors
        e["cache_hits"] += r.cache_hits
        e["tokens"] += r.input_tokens + r.output_tokens
        e["cost_usd"] += r.cost_usd
        e["latency_sum"] += r.latency_s_avg * r.calls
    for e in out.values():
        e["error_rate"] = e["errors"] / e["calls"] if e["calls"] else 0.0
        e["latency_s"] = e.pop("latency_sum") / e["calls"] if e["calls"] else 0.0
    return sorted(out.values(), key=lambda e: -e["cost_usd"])


def burns(workspace: Workspace, *, key: str | None, admin: bool, now: float | None = None) -> list[Burn]:
    """The budgets this viewer may see: an admin every configured budget and every key's; a key its own."""
    now = time.time() if now is None else now
    store = workspace.store
    found: list[Burn] = []
    if admin:
        for budget in workspace.settings.budgets:
            spent = store.spent_usd(since=window_start(budget.window, now), endpoint=budget.endpoint, tag=budget.tag)
            found.append(_burn(budget.scope, budget.limit_usd, budget.window, spent, now))
    for api_key in workspace.keys.listing():
        if api_key.budget_usd is None or not api_key.active or (not admin and api_key.name != key):
            continue
        spent = store.spent_usd(since=window_start(api_key.budget_window, now), key=api_key.name)
        found.append(_burn(f"key {api_key.name}", api_key.budget_usd, api_key.budget_window, spent, now))
    return found


def _burn(scope: str, limit: float, window: Window, spent: float, now: float) -> Burn:
    start, end = window_start(window, now), window_end(window, now) or now
    elapsed = max(now - start, 60.0)  # a minute into a window, a straight line is not yet meaningful
    projected = spent * (end - start) / elapsed
    return Burn(scope, limit, window.value, spent, max(projected, spent), end)


def search_payloads(
    workspace: Workspace, *, key: str | None, text: str, since: float, limit: int = 50
) -> tuple[list[dict[str, Any]], str | None]:
    """Payload log records (as stored, so masked as they were written) whose request or answer holds `text`."""
    import duckdb

    from brickyard.store.payloads import register_view

    con = duckdb.connect(":memory:")
    try:
        register_view(con, workspace.payloads_dir)
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = con.execute(
            "SELECT id, strftime(ts, '%Y-%m-%d %H:%M:%S') AS ts, endpoint, key, tag, status, latency_s, cost_usd, "
            "CAST(request AS VARCHAR) AS request, response_text, error FROM payloads "
            "WHERE ts >= to_timestamp(?) AND (? IS NULL OR key = ?) "
            "AND (? = '' OR CAST(request AS VARCHAR) ILIKE ? ESCAPE '\\' OR response_text ILIKE ? ESCAPE '\\') "
            "ORDER BY ts DESC LIMIT ?",
            [since, key, key, text, pattern, pattern, limit],
        )
        columns = [d[0] for d in rows.description or []]
        return [dict(zip(columns, r, strict=True)) for r in rows.fetchall()], None
    except duckdb.Error as exc:
        return [], f"the payload logs could not be read: {str(exc).splitlines()[0]}"
    finally:
        with contextlib.suppress(Exception):
            con.close()
