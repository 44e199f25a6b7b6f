"""`[[commitments]]` and commitment-aware `route` endpoints in brickyard.toml: their settings and checks.

A commitment is spend promised to a provider (or to some endpoints) between two dates, optionally per period.
The checks here run inside `Settings` validation and raise `KeyedProblem`, which `parse_settings` turns into a
`ConfigError` naming the file, the key and the fix.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class KeyedProblem(ValueError):
    """A config problem that knows its key (`commitments[1].end`) and its fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(problem)


class Period(StrEnum):
    """How often a commitment's amount renews."""

    month = "month"
    quarter = "quarter"
    year = "year"

    @property
    def months(self) -> int:
        return {"month": 1, "quarter": 3, "year": 12}[self.value]


class CommitmentConfig(BaseModel):
    """Spend promised to a provider or to some endpoints (`[[commitments]]`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="how the commitment is shown and referred to")
    provider: str | None = Field(default=None, description="every endpoint whose model is `PROVIDER:...`")
    endpoints: list[str] | None = Field(default=None, description="or these endpoints")
    amount_usd: float = Field(allow_inf_nan=False, description="USD committed (per period when `period` is set)")
    start: date = Field(description="first day (UTC)")
    end: date = Field(description="last day, included (UTC)")
    period: Period | None = Field(default=None, description="the amount applies per month, quarter or year")


class RouteBy(StrEnum):
    """What a routing endpoint chooses by."""

    commitments = "commitments"


class RouteConfig(BaseModel):
    """`route = {...}`: send each call to one of `candidates`, preferring the one whose commitment is most behind
    schedule, but only among those the agent's latest evaluation found equivalent to its best."""

    model_config = ConfigDict(extra="forbid")

    by: RouteBy = RouteBy.commitments
    candidates: list[str] = Field(min_length=2, description="endpoints; the first takes the traffic by default")
    agent: str = Field(min_length=1, description="the agent whose latest evaluation says which are equivalent")
    refresh_s: float = Field(default=60.0, gt=0, allow_inf_nan=False, description="how often to re-decide")


class _Endpoint(Protocol):
    model: str | None
    split: dict[str, float] | None
    cascade: Any
    route: Any


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, clamped to the month's last day (Jan 31 + 1 month = Feb 28/29)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def period_bounds(c: CommitmentConfig) -> list[tuple[date, date]]:
    """Each period as (first day, day after the last): the whole window when there is no `period`."""
    stop = c.end + timedelta(days=1)
    if c.period is None:
        return [(c.start, stop)]
    out: list[tuple[date, date]] = []
    k = 0
    while (first := add_months(c.start, k * c.period.months)) < stop:
        out.append((first, add_months(c.start, (k + 1) * c.period.months)))
        k += 1
    return out


def resolve_alias(name: str, aliases: Mapping[str, str]) -> str:
    seen: set[str] = set()
    while name in aliases and name not in seen:
        seen.add(name)
        name = aliases[name]
    return name


def covered_endpoints(c: CommitmentConfig, endpoints: Mapping[str, _Endpoint], aliases: Mapping[str, str]) -> list[str]:
    """The endpoints whose usage counts against the commitment (usage is recorded where a call is served)."""
    if c.provider is not None:
        return sorted(n for n, e in endpoints.items() if e.model and e.model.split(":", 1)[0] == c.provider)
    return sorted({resolve_alias(n, aliases) for n in c.endpoints or []})


def check_commitments(
    commitments: Sequence[CommitmentConfig], endpoints: Mapping[str, _Endpoint], aliases: Mapping[str, str]
) -> None:
    """Every rule a set of commitments must keep; the first broken one raises `KeyedProblem`."""
    seen_names: dict[str, int] = {}
    covered: list[set[str]] = []
    for i, c in enumerate(commitments):
        key = f"commitments[{i}]"
        if c.name in seen_names:
            raise KeyedProblem(
                f"{key}.name",
                f"`{c.name}` is also the name of commitments[{seen_names[c.name]}]",
                "give it its own name",
            )
        seen_names[c.name] = i
        _check_scope(c, key, endpoints, aliases)
        if c.amount_usd <= 0:
            raise KeyedProblem(
                f"{key}.amount_usd",
                f"{c.amount_usd:g} USD is not a commitment",
                "give the USD amount committed, greater than 0",
            )
        if c.end < c.start:
            raise KeyedProblem(
                f"{key}.end",
                f"{c.end} is before start {c.start}",
                "give the last day of the commitment, on or after `start`",
            )
        _check_whole_periods(c, key)
        covered.append(set(covered_endpoints(c, endpoints, aliases)))
        for j in range(i):
            other = commitments[j]
            shared = covered[i] & covered[j]
            if shared and c.start <= other.end and other.start <= c.end:
                first, last = max(c.start, other.start), min(c.end, other.end)
                raise KeyedProblem(
                    key,
                    f"`{c.name}` overlaps commitments[{j}] (`{other.name}`) on endpoint "
                    f"{', '.join(sorted(shared))} from {first} to {last}, so that spend would count twice",
                    f"start one after the other ends ({other.end}), or cover other endpoints",
                )


def _check_scope(c: CommitmentConfig, key: str, endpoints: Mapping[str, _Endpoint], aliases: Mapping[str, str]) -> None:
    if (c.provider is None) == (c.endpoints is None):
        raise KeyedProblem(key, "set exactly one of `provider` or `endpoints`", "keep one of the two keys")
    if c.provider is not None:
        if not covered_endpoints(c, endpoints, aliases):
            raise KeyedProblem(
                f"{key}.provider",
                f"no endpoint uses provider `{c.provider}`",
                f'define an endpoint with model = "{c.provider}:NAME", or list the endpoints with `endpoints = [...]`',
            )
        return
    if not c.endpoints:
        raise KeyedProblem(f"{key}.endpoints", "the list is empty", "name the endpoints the commitment covers")
    for name in c.endpoints:
        target = resolve_alias(name, aliases)
        endpoint = endpoints.get(target)
        if endpoint is None:
            raise KeyedProblem(
                f"{key}.endpoints",
                f"`{name}` is not a defined endpoint or alias",
                f"define [endpoints.{name}] or fix the name",
            )
        if endpoint.model is None:
            raise KeyedProblem(
                f"{key}.endpoints",
                f"`{name}` sends its calls to other endpoints (split, cascade or route), where their usage is recorded",
                "list the endpoints that serve the calls instead",
            )


def _check_whole_periods(c: CommitmentConfig, key: str) -> None:
    if c.period is None:
        return
    stop = c.end + timedelta(days=1)
    bounds = period_bounds(c)
    if bounds[-1][1] != stop:
        before = bounds[-2][1] - timedelta(days=1) if len(bounds) > 1 else None
        after = bounds[-1][1] - timedelta(days=1)
        choices = " or ".join(str(d) for d in (before, after) if d is not None)
        raise KeyedProblem(
            f"{key}.end",
            f"{c.end} does not end a whole {c.period.value} counted from {c.start}",
            f"end on {choices}, or remove `period`",
        )
