"""The local runtime on a shared machine (issue: repeatable answers, two processes, bounded memory).

1. Repeatable answers: the same 119 Rotten Tomatoes rows classified (generated, with instructions) and 40
   rows extracted, twice from cold (no response cache), with `parallel = 4`: one request at a time
   (`deterministic = true`, the default) against slots decoded together (`deterministic = false`).
2. Two processes at once: the same classification in one process alone, then in two processes started
   together, with the host lease on (`share_host = true`, the default) and off.
3. Memory over a long query: resident memory of a process running `ai_query` (one output token) over
   thousands of distinct rows, sampled as it goes.

Run: `python -m bench.local_runtime` (one thing at a time: nothing else should use llama.cpp meanwhile).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import RESULTS, fresh_workspace, save
from brickyard.datasets.rotten_tomatoes import LABELS, rotten_tomatoes
from brickyard.functions.classify import classify
from brickyard.functions.extract import extract
from brickyard.functions.query import query
from brickyard.models import catalog

INSTRUCTIONS = "Is the review positive (fresh) or negative (rotten)?"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _answers(endpoint: str, deterministic: bool) -> tuple[list[str], float]:
    rows = rotten_tomatoes(119, seed=2)
    ws = fresh_workspace(f"parallel = 4\ndeterministic = {str(deterministic).lower()}\n")
    model = ws.model(endpoint)
    try:
        started = time.perf_counter()
        labels = await classify([r.text for r in rows], list(LABELS), model, instructions=INSTRUCTIONS, progress=False)
        fields = await extract([r.text for r in rows[:40]], ["film", "actor"], model, progress=False)
        seconds = time.perf_counter() - started
        return [str(v) for v in labels.values] + [json.dumps(v, sort_keys=True) for v in fields.values], seconds
    finally:
        await ws.aclose()


async def repeatability(endpoint: str) -> dict[str, Any]:
    out: dict[str, Any] = {"endpoint": endpoint, "rows": 159}
    for deterministic in (True, False):
        first, s1 = await _answers(endpoint, deterministic)
        second, s2 = await _answers(endpoint, deterministic)
        out["deterministic" if deterministic else "slots_together"] = {
            "rows_differing": sum(a != b for a, b in zip(first, second, strict=True)),
            "seconds": [round(s1, 1), round(s2, 1)],
            "load_before": _load(),
        }
    return out


async def _worker(rows: int, seed: int, share_host: bool) -> dict[str, Any]:
    data = rotten_tomatoes(rows, seed=seed)
    ws = fresh_workspace(f"share_host = {str(share_host).lower()}\n")
    model = ws.model("smollm2")
    try:
        await classify(["warm up"], list(LABELS), model, instructions=INSTRUCTIONS, progress=False)
        started = time.perf_counter()
        await classify([r.text for r in data], list(LABELS), model, instructions=INSTRUCTIONS, progress=False)
        seconds = time.perf_counter() - started
        return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 2)}
    finally:
        await ws.aclose()


def _processes(count: int, rows: int, share_host: bool) -> list[dict[str, Any]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.local_runtime", "worker", str(rows), str(10 + k), str(int(share_host))],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(count)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def sharing(rows: int) -> dict[str, Any]:
    load = _load()
    alone = _processes(1, rows, True)[0]
    together = _processes(2, rows, True)
    fighting = _processes(2, rows, False)
    total = sum(r["rows_per_s"] for r in together)
    return {
        "rows_per_process": rows,
        "load_before": load,
        "alone": alone,
        "two_with_lease": together,
        "two_without_lease": fighting,
        "together_share_of_alone": round(total / alone["rows_per_s"], 3),
        "without_lease_share_of_alone": round(sum(r["rows_per_s"] for r in fighting) / alone["rows_per_s"], 3),
        "target": ">= 0.80",
    }


async def memory(rows: int) -> dict[str, Any]:
    data = [r.text for r in rotten_tomatoes(rows, seed=5)]
    ws = fresh_workspace()
    model = ws.model("smollm2")
    samples = []
    try:
        started = time.perf_counter()
        for start in range(0, rows, 250):
            chunk = [f"Say yes or no. {t}" for t in data[start : start + 250]]
            await query(chunk, model, model_parameters=json.dumps({"max_tokens": 1}), progress=False)
            samples.append({"rows": start + len(chunk), "rss_mib": round(_rss_mib(), 1)})
        seconds = time.perf_counter() - started
    finally:
        await ws.aclose()
    first = samples[1]["rss_mib"] if len(samples) > 1 else samples[0]["rss_mib"]
    return {
        "rows": rows,
        "distinct": len(set(data)),
        "seconds": round(seconds, 1),
        "samples": samples,
        "growth_after_500_rows_mib": round(samples[-1]["rss_mib"] - first, 1),
        "peak_rss_mib": max(s["rss_mib"] for s in samples),
        "prompt_cache_mib": 256,
    }


def run(rows: int = 160, memory_rows: int = 10_000) -> dict[str, Any]:
    endpoint = "gemma3" if catalog.pulled_path("gemma3-270m", catalog.default_models_dir()) else "smollm2"
    figures = {
        "repeatability": asyncio.run(repeatability(endpoint)),
        "sharing": sharing(rows),
        "memory": asyncio.run(memory(memory_rows)),
    }
    save("local_runtime", figures)
    return figures


def run_memory(rows: int) -> dict[str, Any]:
    """Only the long query's memory, merged into the saved figures (the other parts are kept as they were)."""
    path = RESULTS / "local_runtime.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures = {k: v for k, v in figures.items() if k not in ("benchmark", "machine")}
    figures["memory"] = asyncio.run(memory(rows)) | {"load_before": _load()}
    save("local_runtime", figures)
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        print(json.dumps(asyncio.run(_worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"))))
    elif sys.argv[1:2] == ["memory"]:  # python -m bench.local_runtime memory 10000
        print(json.dumps(run_memory(int(sys.argv[2]))["memory"], indent=2))
    else:
        print(json.dumps(run(*(int(a) for a in sys.argv[1:])), indent=2))
