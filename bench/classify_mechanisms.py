"""Which mechanism each classification function uses on the embedded default: measured, not guessed.

On Rotten Tomatoes snippets (fresh/rotten), with no key:
  - `ai_classify` zero-shot by embedding similarity to the labels' descriptions (the default for a
    single-label task without instructions on the small local models), over 2,000 rows;
  - `ai_classify(..., options => {'examples': ...})`: logistic regression on the default embedder's
    vectors, trained on 50, 200 or 800 labelled rows disjoint from the 2,000 test rows;
  - an ensemble (mean of the trained classifier's and SmolLM2's calibrated label probabilities) on the first
    200 test rows, beside each of its parts on the same rows;
  - `ai_filter` on three predicates (one positive statement, two negative), 200 rows: the embedding
    contrast (the default on the small local models), SmolLM2's calibrated yes/no scores and its generated
    answers, a classifier trained on 200 rows labelled true/false for the predicate (`examples`), with the
    "keep every row" baseline.

Each variant runs in a fresh workspace (empty caches). Speeds carry the machine load beside them.
Also the embedding filter with the first wave's contrast ("it is not true that <predicate>") beside the default
(the predicate negated at its verb), on 200 rows and on all the test rows, and a zero-shot variant measured and
not adopted (self-training on the query's own rows).

Run: `python -m bench.classify_mechanisms [TEST_ROWS]`; `--filter-examples` only adds the `examples` filter
figures to the saved ones, `--filter-embedding` only the embedding filter and self-training figures (the other
variants take about 20 minutes and do not depend on them).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import numpy as np

from bench.common import RESULTS, fresh_workspace, save
from brickyard.datasets.rotten_tomatoes import LABELS, rotten_tomatoes
from brickyard.functions._negation import PREFIX, contrast
from brickyard.functions.classify import Classification, classify
from brickyard.functions.embed import unit_rows
from brickyard.functions.filter_agg import filter_
from brickyard.models.classifier import fit_classifier

DESCRIPTIONS = {"fresh": "a positive, favourable movie review", "rotten": "a negative, unfavourable movie review"}
PREDICATES = [
    ("the reviewer liked the film", "fresh"),
    ("the reviewer disliked the film", "rotten"),
    ("the review is negative about the movie", "rotten"),
]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _accuracy(predicted: list[Any], gold: list[str]) -> float:
    return round(sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold), 4)


async def _classify(texts: list[str], gold: list[str], **options: Any) -> tuple[Classification, dict[str, Any]]:
    ws = fresh_workspace()
    model, embedder = ws.model("smollm2"), ws.model("e5-small")
    try:
        await embedder.embed(["warm up"])
        load = _load()
        started = time.perf_counter()
        outcome = await classify(texts, DESCRIPTIONS, model, embedder=embedder, progress=False, **options)
        seconds = time.perf_counter() - started
    finally:
        await ws.aclose()
    shares = {label: outcome.values.count(label) / len(gold) for label in LABELS}
    return outcome, {
        "accuracy": _accuracy(outcome.values, gold),
        "rows_per_s": round(len(texts) / seconds, 2),
        "seconds": round(seconds, 1),
        "majority_label_share": round(max(shares.values()), 4),
        "mechanisms": sorted({m for m in outcome.mechanisms if m}),
        "load_before": load,
    }


async def _filter(
    texts: list[str], truth: list[bool], predicate: str, mode: str, examples: list[tuple[str, bool]] | None = None
) -> dict[str, Any]:
    ws = fresh_workspace()
    model, embedder = ws.model("smollm2"), ws.model("e5-small")
    try:
        started = time.perf_counter()
        outcome = await filter_(
            predicate,
            texts,
            model,
            progress=False,
            embedder=embedder if mode in ("embedding", "embedding_prefix", "examples_200") else None,
            scoring=mode == "scored",
            examples=examples,
            contrast=f"{PREFIX}{predicate}" if mode == "embedding_prefix" else None,
        )
        seconds = time.perf_counter() - started
    finally:
        await ws.aclose()
    return _filter_figures([bool(v) for v in outcome.values], truth) | {"rows_per_s": round(len(texts) / seconds, 2)}


def _filter_figures(kept: list[bool], truth: list[bool]) -> dict[str, Any]:
    tp = sum(k and t for k, t in zip(kept, truth, strict=True))
    precision = tp / sum(kept) if any(kept) else 0.0
    recall = tp / sum(truth)
    return {
        "kept": sum(kept),
        "accuracy": round(sum(k == t for k, t in zip(kept, truth, strict=True)) / len(truth), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if tp else 0.0,
    }


async def bench(test_rows: int) -> dict[str, Any]:
    rows = rotten_tomatoes(test_rows + 800, seed=0, install=True)
    test, pool = rows[:test_rows], rows[test_rows:]
    texts, gold = [r.text for r in test], [r.label for r in test]
    out: dict[str, Any] = {
        "test_rows": test_rows,
        "base_rate_fresh": round(gold.count("fresh") / len(gold), 4),
        "classify": {},
        "filter": {},
    }
    _, out["classify"]["zero_shot_embedding"] = await _classify(texts, gold)
    print("zero-shot", out["classify"]["zero_shot_embedding"], flush=True)
    trained: Classification | None = None
    for k in (50, 200, 800):
        examples = [(r.text, r.label) for r in pool[:k]]
        trained, figures = await _classify(texts, gold, examples=examples)
        out["classify"][f"trained_{k}"] = figures
        print("trained", k, figures, flush=True)
    assert trained is not None
    # the ensemble, on the first 200 rows: SmolLM2's calibrated scores beside the 800-example classifier
    few = min(200, test_rows)
    scored, scored_figures = await _classify(texts[:few], gold[:few], scoring=True)
    lr = [trained.probabilities[i] for i in range(few)]
    llm = scored.probabilities
    mixed = [
        LABELS[int(np.argmax([(a or {}).get(lab, 0.5) + (b or {}).get(lab, 0.5) for lab in LABELS]))]
        for a, b in zip(lr, llm, strict=True)
    ]
    out["ensemble_200"] = {
        "smollm2_calibrated_scores": scored_figures["accuracy"],
        "trained_800": _accuracy([trained.values[i] for i in range(few)], gold[:few]),
        "mean_of_both": _accuracy(mixed, gold[:few]),
        "smollm2_rows_per_s": scored_figures["rows_per_s"],
    }
    print("ensemble", out["ensemble_200"], flush=True)
    out["filter"] = await _filters(
        texts[:few], gold[:few], pool, ("embedding", "embedding_prefix", "scored", "generated", "examples_200")
    )
    return out


async def _filters(texts: list[str], gold: list[str], pool: list[Any], modes: tuple[str, ...]) -> dict[str, Any]:
    """Each predicate by each mode on the same rows; `examples_200` trains on 200 pool rows (disjoint)."""
    out: dict[str, Any] = {}
    for predicate, positive in PREDICATES:
        truth = [g == positive for g in gold]
        per: dict[str, Any] = {"keep_every_row": _filter_figures([True] * len(texts), truth)}
        for mode in modes:
            examples = [(r.text, r.label == positive) for r in pool[:200]] if mode == "examples_200" else None
            per[mode] = await _filter(texts, truth, predicate, mode, examples)
        out[predicate] = per
        print("filter", predicate, per, flush=True)
    return out


async def _self_training(texts: list[str], gold: list[str], share: float = 0.1) -> dict[str, Any]:
    """Measured and not adopted: zero-shot labels, then a classifier trained on the `share` of rows the
    zero-shot is surest of (half per label), answering every row. A row's answer would depend on the
    other rows of its query, so it is not the default; this says what it would gain."""
    ws = fresh_workspace()
    try:
        embedder = ws.model("e5-small")
        described = [f"{label}: {text}" for label, text in DESCRIPTIONS.items()]
        matrix = unit_rows((await embedder.embed([*described, *texts])).vectors)
    finally:
        await ws.aclose()
    margin = matrix[2:] @ matrix[0] - matrix[2:] @ matrix[1]
    order = np.argsort(margin)
    k = int(len(texts) * share / 2)
    picked = [*order[:k], *order[-k:]]
    weights = fit_classifier(matrix[2:][picked], ["rotten"] * k + ["fresh"] * k, embedder="e5-small")
    predicted = [weights.classes[int(i)] for i in np.argmax(weights.probabilities(matrix[2:]), axis=1)]
    return {
        "share": share,
        "accuracy": _accuracy(predicted, gold),
        "zero_shot": _accuracy(["fresh" if m > 0 else "rotten" for m in margin], gold),
    }


def add_filter_embedding() -> dict[str, Any]:
    """The embedding filter with the verb-negated contrast (the default) beside the first wave's prefix contrast,
    on the first 200 rows (beside the other mechanisms) and on all the test rows (with the `examples` filter
    beside them); and the self-training figure. Merged into the saved figures (same rows)."""
    figures = json.loads((RESULTS / "classify_mechanisms.json").read_text())
    rows = rotten_tomatoes(figures["test_rows"] + 800, seed=0, install=True)
    test, pool = rows[: figures["test_rows"]], rows[figures["test_rows"] :]
    texts, gold = [r.text for r in test], [r.label for r in test]
    few = min(200, len(test))
    for n, key, modes in (
        (few, "filter", ("embedding", "embedding_prefix")),
        (len(test), "filter_all", ("embedding", "embedding_prefix", "examples_200")),
    ):
        new = asyncio.run(_filters(texts[:n], gold[:n], pool, modes))
        for predicate, per in new.items():
            figures.setdefault(key, {}).setdefault(predicate, {}).update(per)
    figures["filter_contrasts"] = {predicate: contrast(predicate) for predicate, _ in PREDICATES}
    figures["self_training"] = asyncio.run(_self_training(texts, gold))
    figures["filter_embedding_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    save("classify_mechanisms", figures)
    return figures


def run(test_rows: int = 2000) -> dict[str, Any]:
    figures = asyncio.run(bench(test_rows))
    save("classify_mechanisms", figures)
    return add_filter_embedding()


def add_filter_examples() -> dict[str, Any]:
    """Only the `examples` filter figures, merged into the saved ones (same rows, same pool)."""
    figures = json.loads((RESULTS / "classify_mechanisms.json").read_text())
    rows = rotten_tomatoes(figures["test_rows"] + 800, seed=0, install=True)
    test, pool = rows[: figures["test_rows"]], rows[figures["test_rows"] :]
    few = min(200, len(test))
    new = asyncio.run(_filters([r.text for r in test[:few]], [r.label for r in test[:few]], pool, ("examples_200",)))
    for predicate, per in new.items():
        figures["filter"][predicate]["examples_200"] = per["examples_200"]
    figures["filter_examples_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    save("classify_mechanisms", figures)
    return figures


if __name__ == "__main__":
    if "--filter-examples" in sys.argv:
        add_filter_examples()
    elif "--filter-embedding" in sys.argv:
        add_filter_embedding()
    else:
        run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
