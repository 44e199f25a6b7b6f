"""Benchmark 1: classify real review snippets with local SmolLM2 through the batch engine.

Compared, side by side in one run on the same prompts and the same GGUF file:
  - brickyard: `classify()` through the batch engine (grammar-constrained labels, slots, prompt cache);
  - loop: the same prompts sent one by one with the official `openai` SDK to llama.cpp's own
    OpenAI-compatible HTTP server (started in-process by xllamacpp), answers parsed from free text;
  - raw: the exact payloads the batch engine sends, pushed straight into xllamacpp's in-process
    server from as many threads as it has slots: the engine's best throughput with no brickyard layer.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai

from bench.common import free_port, fresh_workspace, save
from brickyard import BrickyardError, ChatResult
from brickyard.datasets.rotten_tomatoes import LABELS, rotten_tomatoes
from brickyard.functions.classify import classify, classify_requests, parse_label
from brickyard.models import catalog
from brickyard.models.local import LocalModel

MODEL = "smollm2-135m"
PARALLEL = 4


def _accuracy(predicted: list[str | None], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def _label_from_text(text: str) -> str | None:
    found = [label for label in LABELS if label in text.lower()]
    return found[0] if len(found) == 1 else None


def _label_from_raw(answer: dict[str, Any]) -> str | None:
    """Read a raw engine answer the way `classify` does (a one-token answer names a label by prefix)."""
    choice = answer["choices"][0]
    result = ChatResult(text=choice["message"]["content"], model="raw", finish_reason=choice["finish_reason"])
    try:
        return parse_label(result, list(LABELS))
    except BrickyardError:
        return None


def _server(path: str, *, port: int | None = None) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = path
    params.n_parallel = PARALLEL if port is None else 1
    params.n_ctx = 2048 * params.n_parallel
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = len(os.sched_getaffinity(0))
    params.cache_prompt = True
    params.warmup = False
    params.verbosity = -1
    if port is not None:
        params.port = port
    return xllamacpp.Server(params)


def run(rows: int = 500) -> dict[str, Any]:
    data = rotten_tomatoes(rows, seed=0, install=True)
    texts, gold = [d.text for d in data], [d.label for d in data]
    path = catalog.pull(MODEL, catalog.default_models_dir())
    figures: dict[str, Any] = {"rows": rows, "model": f"local:{MODEL}", "parallel_slots": PARALLEL}

    # brickyard batch engine
    ws = fresh_workspace(f"parallel = {PARALLEL}\n")  # goes under [local]
    model = ws.model("smollm2")
    started = time.perf_counter()
    outcome = asyncio.run(classify(texts, list(LABELS), model, progress=False))
    elapsed = time.perf_counter() - started
    figures["brickyard"] = {
        "rows_per_s": rows / elapsed,
        "accuracy": _accuracy(outcome.values, gold),
        "seconds": elapsed,
        "errors": sum(e is not None for e in outcome.errors),
        "fresh_share": outcome.values.count("fresh") / rows,
        "calls": outcome.calls,
        "distinct": outcome.reports[0].distinct,
    }
    asyncio.run(ws.aclose())

    # raw engine: the same payloads, no brickyard layer, as many threads as slots
    requests = classify_requests(texts, list(LABELS), model=LocalModel(path, parallel=PARALLEL))
    shaper = LocalModel(path, parallel=PARALLEL)
    payloads = [shaper.payload(r) for r in requests if r is not None]
    server = _server(str(path))
    server.handle_chat_completions(payloads[0])  # load and warm like the engine's first call
    started = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(server.handle_chat_completions, payloads))
    elapsed = time.perf_counter() - started
    raw_labels = [_label_from_raw(a) for a in answers]
    figures["raw_engine"] = {"rows_per_s": rows / elapsed, "accuracy": _accuracy(raw_labels, gold), "seconds": elapsed}
    del server

    # one-by-one loop with the openai SDK against llama.cpp's HTTP server
    port = free_port()
    http_server = _server(str(path), port=port)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="none")
    loop_labels: list[str | None] = []
    started = time.perf_counter()
    for request in requests:
        assert request is not None
        reply = client.chat.completions.create(model=MODEL, messages=request.messages, max_tokens=16, temperature=0)  # type: ignore[arg-type]
        loop_labels.append(_label_from_text(reply.choices[0].message.content or ""))
    elapsed = time.perf_counter() - started
    figures["openai_sdk_loop"] = {
        "rows_per_s": rows / elapsed,
        "accuracy": _accuracy(loop_labels, gold),
        "seconds": elapsed,
        "unparseable": loop_labels.count(None),
    }
    client.close()
    del http_server

    by = figures["brickyard"]["rows_per_s"]
    figures["ratio_vs_loop"] = by / figures["openai_sdk_loop"]["rows_per_s"]
    figures["ratio_vs_raw"] = by / figures["raw_engine"]["rows_per_s"]
    figures["majority_share"] = max(gold.count(label) for label in LABELS) / rows
    figures["targets"] = {"ratio_vs_loop": ">= 2.0", "ratio_vs_raw": ">= 0.9"}
    save("local_batch", figures)
    return figures
