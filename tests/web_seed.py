"""A workspace for the console tests: keys, usage of two teams, budgets, payload logs, a warehouse, an evaluation."""

from __future__ import annotations

import asyncio
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from conftest import SERVER_CONFIG, make_key

from brickyard import FunctionModel, Workspace
from brickyard.agents.runner import Agents
from brickyard.agents.spec import parse_spec
from brickyard.config import EndpointConfig, PayloadsConfig, Window
from brickyard.evals import Case, EvalDatasets, HalvingPlan, evaluate
from brickyard.models._types import ChatRequest
from brickyard.store.base import UsageRecord
from brickyard.store.payloads import PayloadLog

CONFIG = (
    SERVER_CONFIG
    + """
[[budgets]]
endpoint = "det"
limit_usd = 2.0
window = "month"
"""
)
LABELS = ["pos", "neg"]
TICKETS = 120
"""Rows of the `tickets` table; every seventh one holds `boom`, which the `flaky` endpoint refuses."""


@dataclass
class Seeded:
    workspace: Workspace
    admin: str
    team_a: str
    team_b: str
    run_id: str
    team_a_usd: float
    team_b_usd: float


def _scripted(accuracy: float, seed: int) -> FunctionModel:
    def answer(request: ChatRequest) -> dict[str, str]:
        i = int(re.search(r"case (\d+)", str(request.messages[-1]["content"])).group(1))  # type: ignore[union-attr]
        right = random.Random(seed * 100_003 + i).random() < accuracy
        return {"label": LABELS[i % 2] if right else LABELS[(i + 1) % 2]}

    return FunctionModel(answer, name=f"function:acc{accuracy}")


def _flaky(request: ChatRequest) -> str:
    text = str(request.messages[-1]["content"])
    if "boom" in text:
        raise ValueError("the flaky endpoint refuses rows that say boom")
    return "fine: " + text[-20:]


def register_models(ws: Workspace) -> None:
    """Endpoints that exist only in this process (the server is given this very Workspace)."""
    for name, accuracy, price in (("good", 0.9, 4.0), ("mid", 0.7, 1.0)):
        ws.registry.register(
            name,
            _scripted(accuracy, seed=len(name)),
            EndpointConfig(model=f"function:{name}", price_input_per_1m=price, price_output_per_1m=price, cache=False),
        )

    async def slow(request: ChatRequest) -> dict[str, str]:
        await asyncio.sleep(2.0)  # long enough to cancel a sweep of it
        return {"label": LABELS[0]}

    ws.registry.register(
        "slow", FunctionModel(slow, name="function:slow"), EndpointConfig(model="function:slow", cache=False)
    )
    ws.registry.register(
        "flaky", FunctionModel(_flaky, name="function:flaky"), EndpointConfig(model="function:flaky", cache=False)
    )


def seed(root: Path) -> Seeded:
    ws = Workspace.init(root / "ws")
    ws.config_path.write_text(CONFIG, encoding="utf-8")
    ws = Workspace(ws.path)
    register_models(ws)
    admin = make_key(ws, "admin", admin=True)
    team_a = make_key(ws, "team-a", ("*", "agent:*"), sql=True, budget=(0.5, Window.month))
    team_b = make_key(ws, "team-b", ("det",))
    now = time.time()
    spent = {"team-a": 0.0, "team-b": 0.0}
    for i in range(48):
        key = "team-a" if i % 2 else "team-b"
        cost = 0.01 if key == "team-a" else 0.02
        ws.store.record_usage(
            UsageRecord(
                ts=now - i * 1800,
                endpoint="det",
                model="function:det",
                key=key,
                tag=f"tag-{key}",
                status="error" if i % 8 == 0 else "ok",
                input_tokens=100,
                output_tokens=50,
                cost_usd=cost,
                latency_s=0.05 + i / 1000,
            )
        )
        spent[key] += cost
    ws.store.flush()
    log = PayloadLog(ws.payloads_dir, PayloadsConfig())
    for key, word in (("team-a", "alpha"), ("team-b", "bravo")):
        log.write(
            {
                "id": f"p-{key}",
                "endpoint": "det",
                "key": key,
                "status": "ok",
                "request": {"messages": [{"role": "user", "content": f"{word} question from {key}"}]},
                "response_text": f"{word} answer",
            }
        )
    log.close()
    import duckdb

    con = duckdb.connect(str(ws.warehouse_path))
    con.execute(
        "CREATE TABLE tickets AS SELECT i AS id, 'ticket ' || i || CASE WHEN i % 7 = 0 THEN ' boom' ELSE '' END "
        f"AS body FROM range(1, {TICKETS + 1}) t(i)"
    )
    con.close()
    agents = Agents(ws)
    agents.create(parse_spec({"name": "sentiment", "kind": "classify", "labels": LABELS, "endpoint": "det"}))
    agents.close()  # version 2 comes after the evaluation (it evaluates version 1)
    datasets = EvalDatasets(ws.path)
    cases = [Case(id=str(i), input=f"case {i}: a review", expected=LABELS[i % 2]) for i in range(60)]
    datasets.create("reviews", cases, source="test", dev_fraction=0.3, seed=7)
    datasets.close()
    job = evaluate(
        ws,
        "sentiment",
        "reviews",
        candidates=["good/zero-shot", "mid/zero-shot"],
        plan=HalvingPlan(enabled=False),
        apply=False,
    )
    with ThreadPoolExecutor(1) as pool:  # its own thread: a caller (Playwright's sync API) may run a loop here
        evaluation = pool.submit(asyncio.run, job).result()
    agents = Agents(ws)
    spec = {"name": "sentiment", "kind": "classify", "labels": LABELS, "endpoint": "det"}
    agents.create(parse_spec({**spec, "instructions": "Label the review's overall sentiment."}))
    agents.close()
    return Seeded(ws, admin, team_a, team_b, evaluation.record["run_id"], spent["team-a"], spent["team-b"])
