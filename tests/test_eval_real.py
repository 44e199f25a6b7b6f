"""A real sweep over the two bundled local models on real labelled data; the report opens in Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from brickyard import Workspace
from brickyard.agents.runner import Agents
from brickyard.agents.spec import OptimizationState, parse_spec
from brickyard.datasets import rotten_tomatoes
from brickyard.evals import Case, EvalDatasets, HalvingPlan, evaluate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


async def open_in_chromium(page_path: Path) -> list[str]:
    """Load the page in headless Chromium; return console errors and page errors."""
    from playwright.async_api import async_playwright

    problems: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = await browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        await page.goto(page_path.resolve().as_uri())
        assert (await page.locator("h1").inner_text()).startswith("Evaluation of agent")
        image = page.locator("img[alt='Pareto plot']")
        assert await image.evaluate("img => img.complete && img.naturalWidth > 0")
        rows = await page.locator("tbody tr").count()
        await browser.close()
    assert rows >= 2
    return problems


@pytest.mark.local_model
async def test_sweep_over_the_bundled_models_writes_a_report_that_opens(workspace: Workspace) -> None:
    agents = Agents(workspace)
    agents.create(parse_spec({"name": "rt", "kind": "classify", "labels": ["fresh", "rotten"], "endpoint": "smollm2"}))
    rows = rotten_tomatoes(48, seed=3)
    datasets = EvalDatasets(workspace.path)
    cases = [Case(id=str(i), input=r.text, expected=r.label) for i, r in enumerate(rows)]
    datasets.create("rt", cases, source="rotten_tomatoes", dev_fraction=0.25, seed=0)
    datasets.close()
    try:
        evaluation = await evaluate(
            workspace,
            "rt",
            "rt",
            candidates=["smollm2/zero-shot", "gemma3/zero-shot", "smollm2/few-shot-2"],
            plan=HalvingPlan(enabled=False),
        )
    finally:
        await workspace.aclose()
    rec = evaluation.record
    assert {row["id"] for row in rec["leaderboard"]} == {"smollm2/zero-shot", "gemma3/zero-shot", "smollm2/few-shot-2"}
    for row in rec["leaderboard"]:
        accuracy = row["metrics"]["accuracy"]
        assert row["cases"] == 36 and 0.0 <= accuracy["low"] <= accuracy["estimate"] <= accuracy["high"] <= 1.0
        assert row["latency_p50_s"] > 0
    assert rec["chosen"] in {row["id"] for row in rec["leaderboard"]}
    spec, _ = agents.store.get("rt")
    assert spec.optimization_state is OptimizationState.COMPLETED and spec.evidence["run_id"] == rec["run_id"]
    if CHROMIUM is None and not os.environ.get("CI"):  # in CI, `make test` installs it, so its absence fails
        pytest.skip("Chromium is not installed (make test installs Debian's chromium)")
    assert await open_in_chromium(evaluation.report_path) == []
