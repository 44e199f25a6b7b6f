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
    figures["targets"] = {"embedded_filter.planned.judged": f"<= 3 × rows_needed ({limit} rows wanted)"}
    save("sql_planning", figures)
    return figures


if __name__ == "__main__":
    print(run())
