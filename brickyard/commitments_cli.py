"""`brickyard usage --commitments`: each commitment's burn-down as a table (or JSON)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from brickyard.commitments import RECENT_DAYS, BurnDown, Status, burn_downs
from brickyard.workspace import Workspace

_STYLE = {
    Status.on_track: "green",
    Status.under_used: "yellow",
    Status.over_used: "red",
    Status.not_started: "dim",
}


def commitments_table(rows: list[BurnDown], now: float, recent_days: float = RECENT_DAYS) -> Table:
    """One row per commitment: window, amount, spent, schedule, rate, projection and the alert."""
    at = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = Table(
        "commitment",
        "covers",
        "window",
        "amount $",
        "spent $",
        "expected $",
        "behind $",
        "$/day",
        "projected $",
        "status",
        title=f"Commitments at {at} (projected at the rate of the last {recent_days:g} days)",
    )
    for r in rows:
        window = f"{r.window_start} → {r.window_end}"
        if r.period:
            window += f" ({r.period} {r.period_index}/{r.periods})"
        table.add_row(
            escape(r.name),
            escape(", ".join(r.endpoints)),
            window,
            f"{r.amount_usd:,.2f}",
            f"{r.spent_usd:,.2f}",
            f"{r.expected_usd:,.2f}",
            f"{r.behind_usd:,.2f}",
            f"{r.rate_usd_per_day:,.2f}",
            f"{r.projected_usd:,.2f}",
            f"[{_STYLE[r.status]}]{r.status.value}[/]",
        )
    return table


def alerts(rows: list[BurnDown]) -> list[str]:
    """One line per commitment: where it is heading, in words (rich markup)."""
    return [f"[{_STYLE[r.status]}]{escape(r.name)}: {escape(r.alert)}[/]" for r in rows]


def show(ws: Workspace, out: Console, *, now: float, as_json: bool) -> None:
    """Print the burn-down of every `[[commitments]]` of the workspace at `now`."""
    rows = burn_downs(ws.settings, ws.store, now)
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in rows]))
    elif not rows:
        out.print(
            escape(f"no [[commitments]] in {ws.config_path} (see `brickyard init` for an example)"), highlight=False
        )
    else:
        out.print(commitments_table(rows, now))
        for line in alerts(rows):
            out.print(line, highlight=False)
