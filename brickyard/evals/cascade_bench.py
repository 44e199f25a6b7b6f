"""The cascade benchmark: on Rotten Tomatoes snippets, a cascade's cost and quality against the strong model alone.

Proxies: an embedding classifier (logistic regression on e5-small, trained on the dev split's labels; no
LLM call) and, optionally, a small local LLM. Every number comes from `tune_cascade` on a fixed split.
"""

from __future__ import annotations

from brickyard.config import Confidence
from brickyard.datasets.rotten_tomatoes import LABELS, rotten_tomatoes
from brickyard.evals._types import Case
from brickyard.evals.cascade import CascadeReport, tune_cascade
from brickyard.evals.cascade_deploy import save_proxy_classifier
from brickyard.evals.datasets import split_cases
from brickyard.workspace import Workspace


async def benchmark_cascade(
    workspace: Workspace,
    *,
    rows: int = 400,
    dev_fraction: float = 0.5,
    seed: int = 0,
    strong: str = "gemma3",
    llm_proxy: str | None = "smollm2",
    target: float = 0.95,
    progress: bool | None = None,
) -> list[CascadeReport]:
    """Cascades on `rows` Rotten Tomatoes snippets (split dev/test with `seed`): the embedding classifier → `strong`,
    and `llm_proxy` → `strong` when given. The classifier is trained on the first half of the dev split and every
    threshold is tuned on the second half. Each report holds proxy alone, strong alone and the cascade on test."""
    data = rotten_tomatoes(rows, seed=seed)
    cases = [Case(id=str(i), input=row.text, expected=row.label) for i, row in enumerate(data)]
    dev, test = split_cases(cases, dev_fraction=dev_fraction, seed=seed)
    labels = list(LABELS)
    registry = workspace.registry
    cut = len(dev) // 2  # the classifier learns from half the dev split; thresholds are tuned on the other half
    path = await save_proxy_classifier(workspace, "rotten-tomatoes", dev[:cut], labels)
    proxies = [(f"classifier:{path}", "classifier(e5-small)", Confidence.score)]
    if llm_proxy is not None:
        proxies.append((llm_proxy, llm_proxy, Confidence.auto))
    reports = []
    for endpoint, label, confidence in proxies:
        report = await tune_cascade(
            dev[cut:],
            test,
            labels,
            registry.get(endpoint),
            registry.get(strong),
            target=target,
            confidence=confidence,
            prices=(registry.price(endpoint), registry.price(strong)),
            names=(label, strong),
            progress=progress,
        )
        reports.append(report)
    return reports
