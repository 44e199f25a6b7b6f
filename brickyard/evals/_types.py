"""The evaluator's small vocabulary: a case, a candidate's output for it, and a scorer's verdict."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    """One evaluation case: an input, the expected output when labelled, and optional extras.

    `expected` is a label (classify), a dict (extract), a text (transform, knowledge answers) or None.
    `metadata` holds anything else a scorer may need, e.g. `{"sources": ["doc.md"]}` for retrieval
    metrics or `{"context": "..."}` for groundedness.
    """

    id: str
    input: str
    expected: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseScore:
    """A scorer's verdict on one case.

    `value` is in [0, 1] (None when the case could not be scored: the candidate failed on it, or a
    judge or embedder could not score it; the default mean counts None as 0); `detail` carries what
    a corpus-level aggregate needs (e.g. `(gold, predicted)` for macro-F1, or per-field counts for
    extraction); `rationale` is a judge's reason, or why the case scored None.
    """

    value: float | None
    detail: Any = None
    rationale: str | None = None


class Scorer(ABC):
    """Scores a candidate's outputs on cases. Batch-first and async, so LLM judges fit the same seam."""

    name: str = "score"
    needs_expected: bool = True
    """True when the scorer compares with `Case.expected` (a clear error is raised when labels are missing)."""

    @abstractmethod
    async def score(self, cases: Sequence[Case], outputs: Sequence[Any]) -> list[CaseScore]:
        """One verdict per case, in order. An output of None means the candidate failed on that case."""

    def aggregate(self, scores: Sequence[CaseScore]) -> float:
        """The metric over a set of cases (the bootstrap calls this on resamples). Default: mean value."""
        values = [s.value for s in scores if s.value is not None]
        failed = sum(1 for s in scores if s.value is None)
        return sum(values) / (len(values) + failed) if (values or failed) else float("nan")
