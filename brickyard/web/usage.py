"""The figures of the usage page, read from the ledger through the store (never the records one by one).

Spend and calls per hour or day by key, endpoint, model or tag; per endpoint: calls, error rate, mean
latency; each budget's burn with a straight-line projection to the end of its window; payload log search.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from brickyard.config import Window
from brickyard.models.budget import window_end, window_start
from brickyard.store.base import Store
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


def series(store: Store, *, key: str | None, since: float, bucket: str, by: str) -> dict[str, Any]:
    """Chart data: buckets (labels) and, per group (top `TOP` by spend, then `other`), USD and calls per bucket."""
    rows = store.summarize([bucket, by], since=since, key=key)
    labels = sorted({r.group[0] for r in rows})
    spend: dict[str, float] = {}
    for r in rows:
        spend[r.group[1]] = spend.get(r.group[1], 0.0) + r.cost_usd
    top = sorted(spend, key=lambda g: (-spend[g], g))[:TOP]
    index = {label: i for i, label in enumerate(labels)}
    names = [*top, "other"] if len(spend) > TOP else top
    usd = {g: [0.0] * len(labels) for g in names}
    calls = {g: [0] * len(labels) for g in names}
    for r in rows:
        group = r.group[1] if r.group[1] in usd else "other"
        usd[group][index[r.group[0]]] += r.cost_usd
        calls[group][index[r.group[0]]] += r.calls
    return {
        "labels": labels,
        "series": [
            {"name": "(none)" if g == "-" else g, "usd": [round(v, 6) for v in usd[g]], "calls": calls[g]}
            for g in names
        ],
    }


def endpoints(store: Store, *, key: str | None, since: float) -> list[dict[str, Any]]:
    """Per endpoint: calls, errors, error rate, cache hits, tokens, USD and mean latency."""
    out = []
    for r in store.summarize(["endpoint"], since=since, key=key):
        out.append(
            {
                "endpoint": r.group[0],
                "calls": r.calls,
                "errors": r.errors,
                "error_rate": r.errors / r.calls if r.calls else 0.0,
                "cache_hits": r.cache_hits,
                "tokens": r.input_tokens + r.output_tokens,
                "cost_usd": r.cost_usd,
                "latency_s": r.latency_s_avg,
            }
        )
    return sorted(out, key=lambda e: -e["cost_usd"])


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
