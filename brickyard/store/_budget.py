"""What every store backend shares for budgets and rate limits: the refusal rule, ledger seeding, GCRA."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from brickyard.store.base import Hold

EPS_USD = 1e-9
"""Float slack when comparing sums of USD amounts (0.01 added 34 times is not exactly 0.34)."""

LEDGER_SCOPES = {"endpoint:": "endpoint", "tag:": "tag", "key:": "key"}
"""Scope prefixes whose spend is seeded from the usage ledger, and the ledger column each one filters."""


def refuses(limit: float, spent: float, held: float, amount: float) -> bool:
    """The refusal rule: the budget is spent, or this amount does not fit beside what is settled and held."""
    if spent >= limit - EPS_USD:
        return True
    return amount > 0 and spent + held + amount > limit + EPS_USD


def ledger_filter(scope: str) -> tuple[str, str] | None:
    """(ledger column, value) whose usage seeds `scope`'s spend, or None for a scope starting at 0."""
    for prefix, column in LEDGER_SCOPES.items():
        if scope.startswith(prefix):
            return column, scope[len(prefix) :]
    return None


def windows(holds: Sequence[Hold]) -> list[tuple[str, float]]:
    """The distinct (scope, window_start) pairs of `holds`, sorted (a fixed lock order across hosts)."""
    return sorted({(h.scope, float(h.window_start)) for h in holds})


def new_reservation_id() -> str:
    return uuid.uuid4().hex


def gcra(
    stored_tat: float | None, now: float, per_minute: float, amount: float, burst: float, book: bool
) -> tuple[float, float | None]:
    """One GCRA step: (seconds to wait, the new theoretical arrival time to store or None to store nothing)."""
    if per_minute <= 0:
        raise ValueError(f"per_minute must be positive, not {per_minute}")
    interval = 60.0 / per_minute
    # The whole amount must fit in the burst (a bucket never holds more than `burst` units): for one unit this
    # is the classic GCRA tolerance of (burst - 1) intervals; an amount larger than the burst waits the excess.
    tolerance = interval * (burst - amount)
    tat = max(stored_tat if stored_tat is not None else now, now)
    wait = max(0.0, tat - now - tolerance)
    if wait == 0.0 or book:
        return wait, tat + amount * interval
    return wait, None
