"""Judges you can trust: an LLM judge's agreement with human verdicts, and aligning it on its disagreements.

A calibration sample is a list of cases whose metadata carries an output to judge (`judged_output`) and a
person's verdict on it (`human_verdict`: pass/fail, true/false, 1/0). The judge judges the same outputs;
agreement is reported as accuracy and Cohen's kappa, each with a 95% bootstrap interval over the cases.
`align` returns the judge with the disagreements added as worked examples to its instructions (the
human's verdict, and the human's comment when given), to be measured again on the same sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brickyard._errors import UserError
from brickyard.evals._types import Case
from brickyard.evals.judges import Judge

KAPPA_FLOOR = 0.4
"""Below this kappa (moderate agreement, Landis & Koch) a judge is flagged in the report."""

_PASS = {"pass", "true", "1", "yes", "y"}
_FAIL = {"fail", "false", "0", "no", "n"}


def human_verdict(case: Case) -> bool | None:
    """The person's verdict on the case's judged output, when the case carries one."""
    raw = case.metadata.get("human_verdict")
    if raw is None or "judged_output" not in case.metadata:
        return None
    text = str(raw).strip().lower()
    if text in _PASS:
        return True
    if text in _FAIL:
        return False
    raise UserError(f"case {case.id}: human_verdict {raw!r} is not pass/fail. Fix: write pass or fail")


def calibration_cases(cases: Sequence[Case]) -> list[Case]:
    """The cases with a judged output and a human verdict."""
    return [c for c in cases if human_verdict(c) is not None]


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two boolean raters (1.0 when both always agree on a single class)."""
    observed = float(np.mean(a == b))
    p_a, p_b = float(np.mean(a)), float(np.mean(b))
    expected = p_a * p_b + (1 - p_a) * (1 - p_b)
    return 1.0 if expected >= 1.0 else (observed - expected) / (1 - expected)


@dataclass
class Agreement:
    """How a judge agrees with people on a calibration sample."""

    judge: str
    cases: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    kappa: float
    kappa_ci: tuple[float, float]
    unjudged: int
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return self.kappa < KAPPA_FLOOR

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "cases": self.cases,
            "accuracy": self.accuracy,
            "accuracy_ci": list(self.accuracy_ci),
            "kappa": self.kappa,
            "kappa_ci": list(self.kappa_ci),
            "unjudged": self.unjudged,
            "flagged": self.flagged,
            "disagreements": len(self.disagreements),
        }

    def summary(self) -> str:
        flag = f"  FLAGGED: kappa below {KAPPA_FLOOR}" if self.flagged else ""
        return (
            f"judge {self.judge} vs people on {self.cases} cases: accuracy {self.accuracy:.2f} "
            f"[{self.accuracy_ci[0]:.2f}, {self.accuracy_ci[1]:.2f}], kappa {self.kappa:.2f} "
            f"[{self.kappa_ci[0]:.2f}, {self.kappa_ci[1]:.2f}]{flag}"
        )


async def measure(judge: Judge, cases: Sequence[Case], *, n_resamples: int = 2000, seed: int = 0) -> Agreement:
    """The judge's verdicts on the calibration cases against the human verdicts."""
    sample = calibration_cases(cases)
    if not sample:
        raise UserError(
            "no case carries `judged_output` and `human_verdict`. Fix: add both columns to the set (pass/fail)"
        )
    scores = await judge.score(sample, [c.metadata["judged_output"] for c in sample])
    pairs = [(c, s) for c, s in zip(sample, scores, strict=True) if s.value is not None]
    if not pairs:
        raise UserError(f"judge {judge.name} judged none of the {len(sample)} cases. Fix: check the judge endpoint")
    people = np.array([bool(human_verdict(c)) for c, _ in pairs])
    machine = np.array([bool(s.value and s.value >= 0.5) for _, s in pairs])
    rng = np.random.default_rng(seed)
    accs, kappas = [], []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(pairs), len(pairs))
        accs.append(float(np.mean(people[idx] == machine[idx])))
        kappas.append(kappa(people[idx], machine[idx]))
    disagreements = [
        {
            "case": c.id,
            "output": c.metadata["judged_output"],
            "human": "pass" if human_verdict(c) else "fail",
            "judge": "pass" if s.value and s.value >= 0.5 else "fail",
            "comment": c.metadata.get("human_comment"),
            "parts": judge.parts(c, c.metadata["judged_output"]),
        }
        for c, s in pairs
        if bool(human_verdict(c)) != bool(s.value and s.value >= 0.5)
    ]
    return Agreement(
        judge=judge.name,
        cases=len(pairs),
        accuracy=float(np.mean(people == machine)),
        accuracy_ci=(float(np.quantile(accs, 0.025)), float(np.quantile(accs, 0.975))),
        kappa=kappa(people, machine),
        kappa_ci=(float(np.quantile(kappas, 0.025)), float(np.quantile(kappas, 0.975))),
        unjudged=len(sample) - len(pairs),
        disagreements=disagreements,
    )


def align(judge: Judge, agreement: Agreement, *, limit: int = 8) -> Judge:
    """The judge with (up to `limit`) disagreements added to its instructions as worked examples."""
    examples = [d for d in agreement.disagreements if d["parts"]][:limit]
    judge.examples = [(d["parts"], d["human"], d["comment"] or "a person graded this case so") for d in examples]
    return judge
