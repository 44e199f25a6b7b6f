"""`ai_filter` at a recall target: the proxy rejects only what the sample shows it may, the model judges the rest."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from conftest import DETERMINISTIC_CONFIG

from brickyard import ChatRequest, FunctionModel, Workspace
from brickyard.config import EndpointConfig
from brickyard.functions.filter_cascade import filter_with_recall, threshold_for, wilson
from brickyard.sql.duckdb import connect
from brickyard.testing.deterministic import content_of


def test_wilson_interval_contains_the_proportion_and_narrows_with_n() -> None:
    low, high = wilson(95, 100)
    assert low < 0.95 < high and 0.88 < low < 0.9
    assert wilson(950, 1000)[0] > low  # more evidence, tighter
    assert wilson(0, 0) == (0.0, 1.0)


def test_threshold_keeps_the_target_recall_at_95_percent_confidence() -> None:
    scores = [i / 100 for i in range(100)]
    threshold = threshold_for(scores, 0.9)
    assert threshold is not None
    kept = sum(s >= threshold for s in scores)
    assert wilson(kept, 100)[0] >= 0.9 and wilson(kept - 1, 100)[0] < 0.9  # the highest such threshold
    assert threshold_for([0.1, 0.2, 0.3], 0.95) is None  # three positives prove nothing: reject nothing


def _world(n: int, noise: float, seed: int) -> tuple[list[str], set[str], FunctionModel, FunctionModel]:
    """Texts whose oracle verdict is known; the proxy (embedding contrast) tracks it with `noise`."""
    rng = random.Random(seed)
    texts = [f"row {i}" for i in range(n)]
    positive = {t for t in texts if rng.random() < 0.3}
    lean = {t: (1.0 if t in positive else -1.0) + rng.gauss(0, noise) for t in texts}

    def vector(text: str) -> list[float]:
        if text == "is not positive":  # the predicate's negation (`_negation.contrast`)
            return [0.0, 1.0]
        if text in lean:
            return [1.0 + lean[text], 1.0 - lean[text]]
        return [1.0, 0.0]

    def oracle(request: ChatRequest) -> Any:
        return {"label": "true" if content_of(request) in positive else "false"}

    return texts, positive, FunctionModel(oracle, name="function:oracle"), FunctionModel(lambda r: "", embed_fn=vector)


async def test_a_good_proxy_avoids_calls_and_keeps_recall() -> None:
    texts, positive, oracle, embedder = _world(1000, noise=0.3, seed=1)
    outcome, report = await filter_with_recall("is positive", texts, oracle, embedder, target_recall=0.95)
    kept = {t for t, ok in zip(texts, outcome.values, strict=True) if ok}
    assert kept <= positive  # the model judged every row it kept
    assert len(kept) / len(positive) >= 0.95
    assert report.calls_avoided > 0.35 and report.model_calls + report.rejected_by_proxy == 1000
    assert report.recall_interval[0] <= report.recall_estimate <= report.recall_interval[1]


async def test_the_recall_target_holds_across_seeds_with_a_noisy_proxy() -> None:
    met = 0
    for seed in range(10):
        texts, positive, oracle, embedder = _world(600, noise=1.0, seed=seed)
        outcome, _ = await filter_with_recall("is positive", texts, oracle, embedder, target_recall=0.9, seed=seed)
        kept = {t for t, ok in zip(texts, outcome.values, strict=True) if ok}
        met += len(kept) / len(positive) >= 0.9
    assert met >= 9


async def test_a_useless_proxy_rejects_little_and_few_positives_reject_nothing() -> None:
    texts, positive, oracle, embedder = _world(400, noise=50.0, seed=3)
    outcome, report = await filter_with_recall("is positive", texts, oracle, embedder, target_recall=0.95)
    kept = {t for t, ok in zip(texts, outcome.values, strict=True) if ok}
    assert len(kept) / len(positive) >= 0.85 and report.calls_avoided < 0.3
    few = [f"row {i}" for i in range(60)]
    _, rare = await filter_with_recall(
        "is never true", few, FunctionModel(lambda r: {"label": "false"}), embedder, target_recall=0.95
    )
    assert rare.threshold is None and rare.rejected_by_proxy == 0 and rare.notes


def test_sql_options_reach_the_cascade_and_bad_values_are_refused(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(DETERMINISTIC_CONFIG)
    texts, positive, oracle, embedder = _world(1500, noise=0.3, seed=5)
    with connect(Workspace(ws.path)) as con:
        registry = con.brickyard.workspace.registry
        registry.register("oracle", oracle, EndpointConfig(model="function:oracle", cache=False))
        registry.register("emb", embedder, EndpointConfig(model="function:emb", cache=False))
        con.execute("CREATE TABLE t (txt VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?)", [(t,) for t in texts])
        rows = con.sql(
            "SELECT txt FROM t WHERE ai_filter('is positive', txt, options => {'target_recall': 0.95}, "
            "endpoint => 'oracle')"
        ).fetchall()
        (report,) = con.brickyard.cascades
        assert {r for (r,) in rows} <= positive and report.calls_avoided > 0.2
        for bad, message in (
            ("{'target_recall': 1.5}", "target_recall must be"),
            ("{'recall': 0.9}", "unknown option"),
        ):
            with pytest.raises(Exception, match=message):
                con.sql(f"SELECT ai_filter('x', txt, options => {bad}, endpoint => 'oracle') FROM t").fetchall()
