"""Knowledge answers on BoolQ: generative (SmolLM2, Gemma 3) against extractive, judged the same way.

A base of BoolQ dev passages (one document each); each question's own passage is in it. For each answer:
- *cites gold*: a citation points at the question's own passage;
- *grounded*: the share of the answer's content words (4+ letters, not stop words) found in the chunks it
  cites (0 when it cites nothing); *fully grounded*: that share ≥ 0.9;
- *yes/no right*: the answer starts with yes/no (or true/false) and agrees with BoolQ's gold answer; an
  extractive answer is a quoted sentence and never says yes or no, so this is not applicable to it.
Run: `python -m bench.knowledge_modes [questions]` (one model at a time; the machine's load is recorded).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import fresh_workspace, save
from brickyard.datasets.boolq import data_path
from brickyard.knowledge import KnowledgeBase
from brickyard.knowledge.answer import answer

PASSAGES = 300
_WORD = re.compile(r"[a-z]{4,}")
_STOP = {
    *("that", "this", "with", "from", "have", "were", "they", "their", "there"),
    *("which", "when", "what", "been", "into", "about", "would", "could"),
}


def _rows(n: int) -> list[dict[str, Any]]:
    seen: set[str] = set()
    rows = []
    with data_path("dev", install=True).open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["passage"] not in seen:
                seen.add(row["passage"])
                rows.append(row)
            if len(rows) == n:
                break
    return rows


def _grounded(text: str, cited: list[str]) -> float:
    words = [w for w in _WORD.findall(re.sub(r"\[\d+\]", "", text.lower())) if w not in _STOP]
    if not words or not cited:
        return 0.0
    source = " ".join(cited).lower()
    return sum(w in source for w in words) / len(words)


def _yes_no(text: str) -> bool | None:
    head = text.strip().lower()[:12]
    if head.startswith(("yes", "true")):
        return True
    if head.startswith(("no", "false")):
        return False
    return None


async def _run(
    ws: Any, kb: KnowledgeBase, rows: list[dict[str, Any]], folder: Path, questions: int, endpoint: str, mode: str
) -> dict[str, Any]:
    model = ws.registry.get(endpoint)
    figures: list[dict[str, Any]] = []
    started = time.perf_counter()
    for i, row in enumerate(rows[:questions]):
        reply = await answer(kb, row["question"], model, k=3, answer_mode=mode)
        cited = [c for c in reply.citations]
        texts = [h.text for h in reply.hits if any(c.chunk_id == h.chunk_id for c in cited)]
        gold = str(folder / f"p{i:04d}.txt")
        said = _yes_no(reply.text)
        figures.append(
            {
                "known": reply.known,
                "cites_gold": any(c.source_path == gold for c in cited),
                "grounded": _grounded(reply.text, texts),
                "said_yes_no": said is not None,
                "yes_no_right": said is not None and said == (str(row["answer"]).lower() == "true"),
                "text": reply.text[:200],
            }
        )
    seconds = time.perf_counter() - started
    n = len(figures)
    return {
        "endpoint": endpoint,
        "mode": mode,
        "questions": n,
        "seconds_per_question": seconds / n,
        "answered": sum(f["known"] for f in figures) / n,
        "cites_gold": sum(f["cites_gold"] for f in figures) / n,
        "grounded_mean": sum(f["grounded"] for f in figures) / n,
        "fully_grounded": sum(f["grounded"] >= 0.9 for f in figures) / n,
        "says_yes_no": sum(f["said_yes_no"] for f in figures) / n,
        "yes_no_right": sum(f["yes_no_right"] for f in figures) / n if mode == "generative" else None,
        "examples": [f["text"] for f in figures[:3]],
    }


def run(questions: int = 40) -> dict[str, Any]:
    rows = _rows(PASSAGES)
    folder = Path(tempfile.mkdtemp(prefix="brickyard-kbmodes-"))
    for i, row in enumerate(rows):
        (folder / f"p{i:04d}.txt").write_text(row["passage"], encoding="utf-8")
    ws = fresh_workspace()
    results = []
    try:
        with KnowledgeBase(ws, "boolq") as kb:
            kb.ingest(folder)
            for endpoint, mode in (("smollm2", "extractive"), ("smollm2", "generative"), ("gemma3", "generative")):
                results.append(asyncio.run(_run(ws, kb, rows, folder, questions, endpoint, mode)))
                print(json.dumps({k: v for k, v in results[-1].items() if k != "examples"}), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = {"passages": PASSAGES, "questions": questions, "load_average": os.getloadavg(), "results": results}
    save("knowledge_modes", out)
    return out


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
