"""Web console page times with real volumes: 100,000 usage records and 50 evaluation runs (issue 14: < 300 ms).

A fresh workspace gets 100,000 usage records over 30 days (8 keys, 4 endpoints, 6 tags, 2% errors), 2,000
payload log records, 9 keys with budgets, a 1,000-row warehouse table, and 50 evaluation runs: one real
evaluation (3 scripted candidates on 210 test cases) stored 50 times under new run ids with its per-case file.
`brickyard serve` runs in this process (uvicorn on 127.0.0.1); an httpx client signs in like a browser and loads
each page `LOADS` times, as an admin (everything) and as a team key (its own usage). Figures are the full HTTP
round trip of the HTML (no browser rendering), p50 and p95 in milliseconds, and the first load apart: the usage
page reads closed hours and days once and keeps them (`brickyard.web.usage.Rollups`), so later loads read only
the open bucket.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import save
from brickyard import FunctionModel, Workspace
from brickyard.agents.runner import Agents
from brickyard.agents.spec import parse_spec
from brickyard.config import EndpointConfig, PayloadsConfig, Window
from brickyard.evals import Case, EvalDatasets, HalvingPlan, evaluate
from brickyard.models._types import ChatRequest
from brickyard.server.app import create_app
from brickyard.server.keys import KEYS_NAME, KeyStore
from brickyard.server.runner import BackgroundServer
from brickyard.store.base import UsageRecord
from brickyard.store.payloads import PayloadLog

USAGE_RECORDS = 100_000
RUNS = 50
LOADS = 15
TARGET_MS = 300.0
KEYS = [f"team-{c}" for c in "abcdefgh"]
ENDPOINTS = ["gpt-5-mini", "claude-haiku", "gemma3", "smollm2"]
TAGS = ["etl", "support", "search", "reports", "adhoc", "evals"]
LABELS = ["pos", "neg"]
CONFIG = """
[defaults]
chat = "det"
embedding = "emb"

[endpoints.det]
model = "function:brickyard.testing.deterministic:answer"
price_input_per_1m = 1.0
price_output_per_1m = 2.0

[endpoints.emb]
model = "fake:emb"

[[budgets]]
endpoint = "det"
limit_usd = 50
window = "month"

[[budgets]]
tag = "etl"
limit_usd = 20
window = "day"
"""


def _scripted(accuracy: float, seed: int) -> FunctionModel:
    def answer(request: ChatRequest) -> dict[str, str]:
        i = int(re.search(r"case (\d+)", str(request.messages[-1]["content"])).group(1))  # type: ignore[union-attr]
        right = random.Random(seed * 100_003 + i).random() < accuracy
        return {"label": LABELS[i % 2] if right else LABELS[(i + 1) % 2]}

    return FunctionModel(answer, name=f"function:acc{accuracy}")


def seed(root: Path) -> tuple[Workspace, dict[str, str], str, float]:
    """The workspace, the keys' secrets (admin, team-a), a run id, and seconds spent seeding."""
    started = time.perf_counter()
    ws = Workspace.init(root / "ws")
    ws.config_path.write_text(CONFIG, encoding="utf-8")
    ws = Workspace(ws.path)
    keys = KeyStore(ws.path / KEYS_NAME)
    secrets = {"admin": keys.create("admin", ("*",), admin=True)[1]}
    for i, name in enumerate(KEYS):
        secrets[name] = keys.create(name, ("*", "agent:*"), sql=True, budget=(10.0 + i, Window.month))[1]
    keys.close()
    rng = random.Random(14)
    now = time.time()
    for i in range(USAGE_RECORDS):
        endpoint = ENDPOINTS[i % len(ENDPOINTS)]
        ws.store.record_usage(
            UsageRecord(
                ts=now - rng.random() * 30 * 86400,
                endpoint=endpoint,
                model=f"m-{endpoint}",
                key=KEYS[rng.randrange(len(KEYS))],
                tag=TAGS[rng.randrange(len(TAGS))],
                status="error" if rng.random() < 0.02 else "ok",
                input_tokens=rng.randrange(50, 2000),
                output_tokens=rng.randrange(1, 400),
                cost_usd=rng.random() / 1000,
                latency_s=rng.random() * 2,
            )
        )
    ws.store.flush()
    log = PayloadLog(ws.payloads_dir, PayloadsConfig())
    for i in range(2000):
        log.write(
            {
                "id": f"p{i}",
                "ts": now - i * 60,
                "endpoint": ENDPOINTS[i % 4],
                "key": KEYS[i % len(KEYS)],
                "status": "ok",
                "request": {"messages": [{"role": "user", "content": f"question {i} about invoices and refunds"}]},
                "response_text": f"answer {i}",
            }
        )
    log.close()
    import duckdb

    con = duckdb.connect(str(ws.warehouse_path))
    con.execute("CREATE TABLE tickets AS SELECT i AS id, 'ticket ' || i AS body FROM range(1000) t(i)")
    con.close()
    run_id = _evaluations(ws)
    return ws, secrets, run_id, time.perf_counter() - started


def _evaluations(ws: Workspace) -> str:
    for name, accuracy, price in (("good", 0.9, 4.0), ("mid", 0.8, 1.0), ("cheap", 0.7, 0.5)):
        ws.registry.register(
            name,
            _scripted(accuracy, seed=len(name)),
            EndpointConfig(model=f"function:{name}", price_input_per_1m=price, price_output_per_1m=price, cache=False),
        )
    agents = Agents(ws)
    agents.create(parse_spec({"name": "sentiment", "kind": "classify", "labels": LABELS, "endpoint": "det"}))
    agents.close()
    datasets = EvalDatasets(ws.path)
    cases = [Case(id=str(i), input=f"case {i}: a review", expected=LABELS[i % 2]) for i in range(300)]
    datasets.create("reviews", cases, source="bench", dev_fraction=0.3, seed=7)
    datasets.close()
    job = evaluate(
        ws,
        "sentiment",
        "reviews",
        candidates=["good/zero-shot", "mid/zero-shot", "cheap/zero-shot"],
        plan=HalvingPlan(enabled=False),
        apply=False,
    )
    with ThreadPoolExecutor(1) as pool:
        rec = pool.submit(asyncio.run, job).result().record
    agents = Agents(ws)
    spec = {"name": "sentiment", "kind": "classify", "labels": LABELS, "endpoint": "det"}
    agents.create(parse_spec({**spec, "instructions": "Label the review's overall sentiment."}))
    agents.close()
    folder = ws.path / "evals" / "runs"
    first = str(rec["run_id"])
    for i in range(1, RUNS):
        copy = {**rec, "run_id": f"{first}-{i:02d}"}
        shutil.copy(folder / f"{first}.cases.jsonl", folder / f"{copy['run_id']}.cases.jsonl")
        ws.eval_store.save_run(copy["run_id"], "sentiment", "reviews", 1, copy)
    return first


def _sign_in(url: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    response = client.post("/login", data={"key": key}, headers={"Origin": url})
    assert response.status_code == 303, response.text
    return client


def _time(client: httpx.Client, path: str) -> dict[str, float]:
    times = []
    for _ in range(LOADS):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    first = times[0]
    times.sort()
    return {
        "first_ms": first,
        "p50_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        "max_ms": times[-1],
    }


def run() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="brickyard-bench-web-"))
    ws, secrets, run_id, seed_s = seed(root)
    server = BackgroundServer(create_app(ws)).start()
    try:
        admin = _sign_in(server.url, secrets["admin"])
        team = _sign_in(server.url, secrets["team-a"])
        case_id = re.search(r"/cases/([^\"]+)\"", admin.get(f"/evals/{run_id}").text)[1]  # type: ignore[index]
        pages = [
            ("usage, 7 days per day by endpoint (admin)", admin, "/usage"),
            ("usage, 7 days per hour by key (admin)", admin, "/usage?span=7d&bucket=hour&by=key"),
            ("usage, 30 days per day by model (admin)", admin, "/usage?span=30d&by=model"),
            ("usage, 30 days per day by tag (team key)", team, "/usage?span=30d&by=tag"),
            ("payload log search (admin)", admin, "/usage/payloads?q=refunds&span=7d"),
            ("keys (admin)", admin, "/keys"),
            ("SQL editor", team, "/sql"),
            (f"evaluations ({RUNS} runs)", admin, "/evals"),
            ("one evaluation: leaderboard, plot, 210 cases", admin, f"/evals/{run_id}"),
            ("one evaluation, disagreements only", admin, f"/evals/{run_id}?show=disagreements"),
            ("one case side by side", admin, f"/evals/{run_id}/cases/{case_id}"),
            ("playground", team, "/playground"),
            ("agents", team, "/agents"),
            ("an agent: versions side by side, runs", team, "/agents/sentiment"),
        ]
        load_before = os.getloadavg()
        figures = [{"page": name, "path": path, **_time(client, path)} for name, client, path in pages]
        admin.close()
        team.close()
    finally:
        server.stop()
        ws.store.close()
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "usage_records": USAGE_RECORDS,
        "evaluation_runs": RUNS,
        "loads_per_page": LOADS,
        "target_ms": TARGET_MS,
        "seed_s": seed_s,
        "load_average_before": list(load_before),
        "pages": figures,
        "all_under_target": all(p["p95_ms"] < TARGET_MS for p in figures),
    }
    save("web_console", result)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
