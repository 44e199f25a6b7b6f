"""AI-aware SQL (issue 13): how many rows reach the model when a LIMIT is met, planned against unplanned.

Side by side in one run: the same statement through brickyard's planner (`con.sql`) and through DuckDB as
written (`con.duckdb.execute`). "Rows judged" are the rows the AI function computed (the statement's memo
counts them), which on the embedded default are the rows embedded and on a chat endpoint the requests.
"Rows needed" is where, in scan order, the LIMIT's last row lies: no plan can judge fewer.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import fresh_workspace, save
from brickyard import FunctionModel
from brickyard.config import EndpointConfig
from brickyard.datasets import rotten_tomatoes
from brickyard.sql.duckdb import connect
from brickyard.testing.deterministic import answer

PREDICATE = "the reviewer liked the film"


def _judged(con: Any, statement: str, planned: bool) -> dict[str, Any]:
    memo = con.brickyard.memo
    before = memo.computed
    started = time.perf_counter()
    rows = con.sql(statement).fetchall() if planned else con.duckdb.execute(statement).fetchall()
    return {"rows": len(rows), "judged": memo.computed - before, "seconds": time.perf_counter() - started}


def _filter_limit(con: Any, limit: int) -> dict[str, Any]:
    verdicts = con.duckdb.execute(f"SELECT ai_filter('{PREDICATE}', txt) FROM reviews ORDER BY id").fetchall()
    passing = [i for i, (ok,) in enumerate(verdicts) if ok]
    statement = f"SELECT id FROM reviews WHERE ai_filter('{PREDICATE}', txt) LIMIT {limit}"
    con.brickyard.begin_statement()  # forget the reference run's answers
    return {
        "statement": statement,
        "rows_needed": passing[limit - 1] + 1,
        "pass_share": len(passing) / len(verdicts),
        "unplanned": _judged(con, statement, planned=False),
        "planned": _judged(con, statement, planned=True),
    }


def run(rows: int = 2000, limit: int = 5) -> dict[str, Any]:
    ws = fresh_workspace('[endpoints.det]\nmodel = "function:brickyard.testing.deterministic:answer"\ncache = false\n')
    reviews = rotten_tomatoes(rows)
    figures: dict[str, Any] = {"rows": rows, "limit": limit}
    with connect(ws) as con:
        con.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?)", [(i, r.text) for i, r in enumerate(reviews)])
        con.execute("CREATE TABLE topics AS SELECT i AS tid, 'topic ' || i AS name FROM range(20) r(i)")
        # 1. the embedded default: ai_filter by embedding contrast with the bundled embedder
        figures["embedded_filter"] = _filter_limit(con, limit)
        # 2. a chat endpoint (the deterministic stand-in: one request per row, no cache)
        con.brickyard.workspace.registry.register(
            "det", FunctionModel(answer, name="function:det"), EndpointConfig(model="function:det", cache=False)
        )
        join = (
            "SELECT r.id, t.tid FROM reviews r JOIN topics t ON ai_filter('the statement is true', "
            "prompt('Review {0} is about {1}', r.txt, t.name), endpoint => 'det') LIMIT 10"
        )
        det_limit = f"SELECT id FROM reviews WHERE ai_filter('{PREDICATE}', txt, endpoint => 'det') LIMIT {limit}"
        figures["chat_filter"] = {
            "statement": det_limit,
            "unplanned": _judged(con, det_limit, planned=False),
            "planned": _judged(con, det_limit, planned=True),
        }
        figures["chat_join"] = {
            "statement": join,
            "pairs": rows * 20,
            "unplanned": _judged(con, join, planned=False),
            "planned": _judged(con, join, planned=True),
        }
    figures["semantic_join"] = semantic_join(rows)
    figures["cascade_filter"] = cascade_filter(rows)
    figures["targets"] = {
        "embedded_filter.planned.judged": f"<= 3 × rows_needed ({limit} rows wanted)",
        "semantic_join": ">= 10x fewer calls than pairwise, F1 within 5 points",
    }
    save("sql_planning", figures)
    return figures


TOPICS = [
    "music",
    "acting",
    "comedy",
    "horror",
    "love",
    "family",
    "war",
    "children",
    "action",
    "script",
    "director",
    "story",
    "characters",
    "performance",
    "humor",
    "drama",
    "documentary",
    "animation",
    "thriller",
    "romance",
]
"""The small side of the semantic join: 20 topics; a review is about a topic when it uses the word (the truth)."""


def _f1(pairs: set[tuple[int, str]], truth: set[tuple[int, str]]) -> float:
    hits = len(pairs & truth)
    return 0.0 if not pairs or not truth else 2 * hits / (len(pairs) + len(truth))


def semantic_join(rows: int = 2000) -> dict[str, Any]:
    """2,000 reviews × 20 topics on the embedded default: ai_filter per pair against ai_match per review."""
    ws = fresh_workspace()
    reviews = rotten_tomatoes(rows)
    truth = {(i, t) for i, r in enumerate(reviews) for t in TOPICS if t in r.text.lower().split()}
    query = "SELECT r.id, t.topic FROM reviews r JOIN topics t ON ai_filter('is about ' || t.topic, r.txt)"
    figures: dict[str, Any] = {"rows": rows, "topics": len(TOPICS), "true_pairs": len(truth)}
    with connect(ws) as con:
        con.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?)", [(i, r.text) for i, r in enumerate(reviews)])
        con.execute("CREATE TABLE topics (topic VARCHAR)")
        con.executemany("INSERT INTO topics VALUES (?)", [(t,) for t in TOPICS])
        figures["explain"] = con.plan(query).notes
        con.planner.release()
        memo = con.brickyard.memo
        for key, planned in (("pairwise", False), ("rewritten", True)):
            con.brickyard.begin_statement()
            before = memo.computed
            started = time.perf_counter()
            pairs = set(con.sql(query).fetchall() if planned else con.duckdb.execute(query).fetchall())
            figures[key] = {
                "judged": memo.computed - before,
                "texts_embedded": len(memo.vectors),
                "joined_pairs": len(pairs),
                "f1": _f1(pairs, truth),
                "seconds": time.perf_counter() - started,
            }
    return figures


def cascade_filter(rows: int = 2000) -> dict[str, Any]:
    """`ai_filter(..., options => {'target_recall': r})` on real reviews: the real proxy, a perfect oracle.

    The proxy is the embedded default's (the bundled embedder's contrast of 'the reviewer liked the film'
    with its negation). The strong model is simulated by the gold labels, so the figures isolate what the
    proxy and the threshold rule save, and recall is measured against the truth.
    """
    import asyncio

    from brickyard.functions.filter_cascade import filter_with_recall, wilson
    from brickyard.testing.deterministic import content_of

    ws = fresh_workspace()
    reviews = rotten_tomatoes(rows)
    gold = {r.text: r.label == "fresh" for r in reviews}
    texts = [r.text for r in reviews]

    def oracle(request: Any) -> Any:
        return {"label": "true" if gold[content_of(request)] else "false"}

    out: dict[str, Any] = {"rows": rows, "positives": sum(gold.values())}

    async def both() -> None:
        embedder = ws.model("e5-small")
        for target in (0.9, 0.95):
            started = time.perf_counter()
            outcome, report = await filter_with_recall(
                PREDICATE, texts, FunctionModel(oracle, name="function:gold"), embedder, target_recall=target
            )
            kept = sum(1 for t, ok in zip(texts, outcome.values, strict=True) if ok and gold[t])
            low, high = wilson(kept, out["positives"])
            out[str(target)] = {
                "calls_avoided": report.calls_avoided,
                "model_calls": report.model_calls,
                "sampled": report.sampled,
                "recall": kept / out["positives"],
                "recall_interval": [low, high],
                "sample_recall_estimate": report.recall_estimate,
                "seconds": time.perf_counter() - started,
            }
        await ws.aclose()

    asyncio.run(both())
    return out


if __name__ == "__main__":
    print(run())
