"""`ai_embed` (a vector per text) and `ai_similarity` (0..1 from embeddings)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from brickyard.functions._rows import Outcome, is_null
from brickyard.models.base import Model

EMBED_BATCH = 64


async def embed(texts: Sequence[str | None], model: Model) -> Outcome[list[float]]:
    """One vector per text (None for NULL); identical texts are embedded once; failures stay per row."""
    distinct = sorted({str(t) for t in texts if not is_null(t)})
    vectors: dict[str, list[float]] = {}
    failures: dict[str, str] = {}
    for start in range(0, len(distinct), EMBED_BATCH):
        batch = distinct[start : start + EMBED_BATCH]
        try:
            result = await model.embed(batch)
            vectors.update(zip(batch, result.vectors, strict=True))
        except Exception as exc:  # the whole sub-batch failed: each of its rows carries the error
            failures.update({t: f"ai_embed: {exc}" for t in batch})
    values = [None if is_null(t) else vectors.get(str(t)) for t in texts]
    errors = [None if is_null(t) else failures.get(str(t)) for t in texts]
    return Outcome(values, errors)


def unit_rows(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    """The vectors as rows of unit length (a zero vector stays zero), so a matrix product gives cosines."""
    matrix = np.asarray(vectors, dtype=np.float64)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def cosine01(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity clipped to 0..1 (unrelated or opposite texts score 0)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return 0.0 if norm == 0 else max(0.0, min(1.0, dot / norm))


async def similarity(left: Sequence[str | None], right: Sequence[str | None], model: Model) -> Outcome[float]:
    """`ai_similarity(a, b)` per row pair; NULL on either side gives NULL."""
    embedded = await embed([*left, *right], model)
    n = len(left)
    values: list[float | None] = []
    errors: list[str | None] = []
    for i in range(n):
        a, b = embedded.values[i], embedded.values[n + i]
        error = embedded.errors[i] or embedded.errors[n + i]
        values.append(None if a is None or b is None else cosine01(a, b))
        errors.append(error.replace("ai_embed", "ai_similarity") if error else None)
    return Outcome(values, errors)
