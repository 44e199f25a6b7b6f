"""The evaluator: datasets, scorers and judges, sweeps with successive halving, choice on evidence, cascades."""

from brickyard.evals._types import Case, CaseScore, Scorer
from brickyard.evals.candidates import Candidate
from brickyard.evals.datasets import Dataset, EvalDatasets
from brickyard.evals.evaluator import Evaluation, estimate, evaluate, rerun
from brickyard.evals.policy import Policy
from brickyard.evals.sweep import HalvingPlan, Sweep, SweepResult

__all__ = [
    "Candidate",
    "Case",
    "CaseScore",
    "Dataset",
    "EvalDatasets",
    "Evaluation",
    "HalvingPlan",
    "Policy",
    "Scorer",
    "Sweep",
    "SweepResult",
    "estimate",
    "evaluate",
    "rerun",
]
