"""Commitments' burn-down from the usage ledger: spent to date, the linear schedule, the projection, the alert.

A commitment's window is its current period (or its whole span without `period`), from the first day's
00:00 UTC to the day after the last. Spent is the USD the ledger records for the covered endpoints in the
window up to `now`; expected is the amount × the fraction of the window elapsed; the projection adds the
recent rate (USD per day over the last `recent_days`, or since the window opened if that is shorter) times
what is left. Every function takes `now`, so a fake clock gives exact numbers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from brickyard.config import Settings
from brickyard.config_commitments import CommitmentConfig, covered_endpoints, period_bounds
from brickyard.store.base import Store

RECENT_DAYS = 7.0
"""The projection uses the spend rate of the last 7 days (or of the window so far, when shorter)."""
UNDER_USE_TOLERANCE = 0.05
"""A projection more than 5% short of the amount is an under-use alert."""
DAY_S = 86400.0


class Status(StrEnum):
    """Where a commitment is heading."""

    not_started = "not started"
    on_track = "on track"
    under_used = "under-used"
    over_used = "over-used"


@dataclass(frozen=True)
class BurnDown:
    """One commitment's state at `now` (its current period when it has periods)."""

    name: str
    endpoints: list[str]
    amount_usd: float
    period: str | None
    period_index: int
    """1-based: which period of `periods` the window is."""
    periods: int
    window_start: date
    window_end: date
    """The window's last day (included)."""
    now: float
    spent_usd: float
    expected_usd: float
    """What a linear schedule would have spent by now."""
    behind_usd: float
    """expected − spent: positive when behind schedule."""
    recent_days: float
    """The span (days) the rate was measured over."""
    rate_usd_per_day: float
    projected_usd: float
    """Spent at the end of the window at the recent rate."""
    shortfall_usd: float
    exhausted_on: date | None
    """The day the amount is reached at the recent rate, when that is before the window's end."""
    ended: bool
    status: Status
    alert: str

    @property
    def behind_fraction(self) -> float:
        """How far behind schedule, as a fraction of the amount (negative: ahead)."""
        return self.behind_usd / self.amount_usd

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for field in ("window_start", "window_end", "exhausted_on"):
            value = out[field]
            out[field] = value.isoformat() if value is not None else None
        out["status"] = self.status.value
        return out


def day_start(day: date) -> float:
    """Unix seconds of `day` at 00:00 UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _day_of(ts: float) -> date:
    return datetime.fromtimestamp(ts, tz=UTC).date()


def _spent(store: Store, endpoints: list[str], since: float, until: float) -> float:
    if until <= since:
        return 0.0
    # One query per endpoint: each reads the ledger's (endpoint, ts) index, not every row of the window.
    return sum(row.cost_usd for e in endpoints for row in store.summarize([], since=since, until=until, endpoint=e))


def _window(c: CommitmentConfig, now: float) -> tuple[int, int, date, date]:
    """(1-based index, number of periods, first day, day after the last) of the period holding `now`: the
    first before the commitment starts, the last after it ends."""
    bounds = period_bounds(c)
    index = 0
    for i, (first, _) in enumerate(bounds):
        if day_start(first) <= now:
            index = i
    first, stop = bounds[index]
    return index + 1, len(bounds), first, stop


def burn_down(
    c: CommitmentConfig,
    endpoints: list[str],
    store: Store,
    now: float,
    *,
    recent_days: float = RECENT_DAYS,
    tolerance: float = UNDER_USE_TOLERANCE,
) -> BurnDown:
    """The burn-down of one commitment over the covered `endpoints` at `now`."""
    index, periods, first, stop = _window(c, now)
    start_s, stop_s = day_start(first), day_start(stop)
    amount = c.amount_usd
    base: dict[str, Any] = {
        "name": c.name,
        "endpoints": endpoints,
        "amount_usd": amount,
        "period": c.period.value if c.period else None,
        "period_index": index,
        "periods": periods,
        "window_start": first,
        "window_end": stop - timedelta(days=1),
        "now": now,
    }
    if now < start_s:
        return BurnDown(
            **base,
            spent_usd=0.0,
            expected_usd=0.0,
            behind_usd=0.0,
            recent_days=0.0,
            rate_usd_per_day=0.0,
            projected_usd=0.0,
            shortfall_usd=0.0,
            exhausted_on=None,
            ended=False,
            status=Status.not_started,
            alert=f"starts on {first}",
        )
    until = min(now, stop_s)
    ended = now >= stop_s
    spent = _spent(store, endpoints, start_s, until)
    expected = amount * (until - start_s) / (stop_s - start_s)
    span = min(recent_days * DAY_S, until - start_s)
    recent = _spent(store, endpoints, until - span, until) if span > 0 else 0.0
    rate = recent / span if span > 0 else 0.0  # USD per second
    projected = spent + rate * (stop_s - until)
    shortfall = max(0.0, amount - projected)
    exhausted: date | None = None
    if spent >= amount:
        status, alert = Status.over_used, f"over-used: spent {spent:,.2f} of {amount:,.2f} USD"
    elif projected > amount:
        exhausted = _day_of(until + (amount - spent) / rate)
        status = Status.over_used
        alert = f"will be over-used by {exhausted} (projected {projected:,.2f} of {amount:,.2f} USD)"
    elif projected < amount * (1 - tolerance):
        status = Status.under_used
        verb = "was under-used" if ended else "will be under-used"
        alert = f"{verb} (projected {projected:,.2f} of {amount:,.2f} USD, shortfall {shortfall:,.2f})"
    else:
        status, alert = Status.on_track, f"on track (projected {projected:,.2f} of {amount:,.2f} USD)"
    if ended and status is not Status.under_used:
        alert = f"ended: {alert}"
    return BurnDown(
        **base,
        spent_usd=spent,
        expected_usd=expected,
        behind_usd=expected - spent,
        recent_days=span / DAY_S,
        rate_usd_per_day=rate * DAY_S,
        projected_usd=projected,
        shortfall_usd=shortfall,
        exhausted_on=exhausted,
        ended=ended,
        status=status,
        alert=alert,
    )


def burn_downs(settings: Settings, store: Store, now: float, *, recent_days: float = RECENT_DAYS) -> list[BurnDown]:
    """Every configured commitment's burn-down at `now`, in file order."""
    if not math.isfinite(recent_days) or recent_days <= 0:
        raise ValueError("recent_days must be a positive number of days")
    return [
        burn_down(c, covered_endpoints(c, settings.endpoints, settings.aliases), store, now, recent_days=recent_days)
        for c in settings.commitments
    ]


def active_commitment(settings: Settings, endpoint: str, now: float) -> CommitmentConfig | None:
    """The commitment covering `endpoint` at `now` (commitments on one endpoint never overlap), or None."""
    for c in settings.commitments:
        if c.start <= _day_of(now) <= c.end and endpoint in covered_endpoints(c, settings.endpoints, settings.aliases):
            return c
    return None
