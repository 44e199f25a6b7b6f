"""Selection policies: which candidate to deploy given quality and cost."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from brickyard._errors import UserError

DEFAULT_MARGIN_POINTS = 2.0
"""The equivalence margin of the default policy, in points of the primary metric (0–100 scale)."""


class PolicyKind(StrEnum):
    cheapest_equivalent = "cheapest_equivalent"
    max_quality = "max_quality"
    cheapest_within = "cheapest_within"
    best_under = "best_under"


@dataclass(frozen=True)
class Policy:
    """cheapest_equivalent:X (the default, X = 2: the cheapest, then fastest, candidate statistically
    equivalent to the best within X points, by two one-sided tests on the paired differences); max_quality;
    cheapest_within:X (points of the best score, 0–100 scale, point estimates); best_under:USD (per 1k rows)."""

    kind: PolicyKind = PolicyKind.cheapest_equivalent
    value: float | None = DEFAULT_MARGIN_POINTS

    @classmethod
    def parse(cls, text: str) -> Policy:
        name, _, value = text.strip().partition(":")
        try:
            kind = PolicyKind(name.replace("-", "_"))
        except ValueError:
            raise UserError(
                f"unknown policy `{text}`. Fix: cheapest_equivalent[:POINTS], max_quality, cheapest_within:POINTS "
                "or best_under:USD_PER_1K"
            ) from None
        if kind is PolicyKind.max_quality:
            return cls(kind, None)
        if kind is PolicyKind.cheapest_equivalent and not value:
            return cls(kind, DEFAULT_MARGIN_POINTS)
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"policy `{text}` needs a number, e.g. {kind.value}:2") from None
        if number < 0:
            raise UserError(f"policy `{text}`: the number must be ≥ 0")
        return cls(kind, number)

    def __str__(self) -> str:
        return self.kind.value if self.value is None else f"{self.kind.value}:{self.value:g}"

    @property
    def margin(self) -> float:
        """How far below the leader (0–1 scale) a candidate may score and still be chosen."""
        if self.kind in (PolicyKind.cheapest_within, PolicyKind.cheapest_equivalent):
            return (self.value or 0.0) / 100
        return 0.0
