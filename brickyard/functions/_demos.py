"""Few-shot demonstrations chosen by similarity: the labelled examples nearest each input."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), so a dot product is the cosine."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def nearest(pool: npt.ArrayLike, queries: npt.ArrayLike, k: int) -> list[list[int]]:
    """For each query vector, the indices of the `k` pool vectors most similar to it (cosine), the most
    similar last, so that in a prompt it sits nearest the input. Ties keep the pool's order."""
    pool_unit = unit(np.asarray(pool, dtype=np.float32))
    query_unit = unit(np.asarray(queries, dtype=np.float32))
    k = min(k, len(pool_unit))
    order = np.argsort(-(query_unit @ pool_unit.T), axis=1, kind="stable")[:, :k]
    return [[int(i) for i in row[::-1]] for row in order]
