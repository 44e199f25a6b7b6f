"""AI-aware SQL: a LIMIT stops model calls, one query computes a call once, every function takes an endpoint.

The model is the deterministic stand-in wrapped to count what reaches it, with the response cache off, so a
call avoided is a call never made (not one served from the cache).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DETERMINISTIC_CONFIG, SERVER_CONFIG, make_key
from typer.testing import CliRunner

from brickyard import ChatRequest, FakeModel, FunctionModel, Workspace
from brickyard.cli import app
from brickyard.config import EndpointConfig
from brickyard.sql.declarations import FUNCTIONS, compatibility_table, macros_sql, public_message
from brickyard.sql.duckdb import connect
from brickyard.testing.deterministic import answer, content_of

ROWS = 2000


class Counting:
    """The deterministic model, counting the texts it is asked about."""

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    def __call__(self, request: ChatRequest) -> Any:
        self.requests.append(request)
        return answer(request)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.config_path.write_text(DETERMINISTIC_CONFIG)
    return Workspace(workspace.path)


def _register(con: Any, name: str, model: Any) -> None:
    con.brickyard.workspace.registry.register(
        name, model, EndpointConfig(model=f"function:{name}", max_retries=0, cache=False)
    )


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
def con(ws: Workspace, counting: Counting) -> Iterator[Any]:
    connection = connect(ws)
    _register(connection, "det", FunctionModel(counting, name="function:det"))
    connection.execute(
        f"CREATE TABLE reviews AS SELECT i AS id, 'review ' || i || CASE WHEN i % 3 = 0 THEN ' great' ELSE ' dull' END "
        f"AS txt FROM range({ROWS}) r(i)"
    )
    connection.execute("CREATE TABLE topics AS SELECT i AS tid, 'topic ' || i AS name FROM range(20) r(i)")
    yield connection
    connection.close()


def _passes(con: Any, predicate: str, column: str = "txt") -> dict[int, bool]:
    """Every row's verdict, computed by the unplanned engine (the reference)."""
    rows = con.duckdb.execute(f"SELECT id, ai_filter('{predicate}', {column}) FROM reviews ORDER BY id").fetchall()
    return dict(rows)


def test_limit_stops_model_calls_on_a_filter(con: Any, counting: Counting) -> None:
    truth = _passes(con, "is great")
    counting.requests.clear()
    rows = con.sql("SELECT id FROM reviews WHERE ai_filter('is great', txt) LIMIT 5").fetchall()
    assert len(rows) == 5 and all(truth[i] for (i,) in rows)  # five rows, each one really passes
    needed = [i for i in sorted(truth) if truth[i]][4] + 1  # rows read in order until the fifth pass
    assert len(counting.requests) <= 3 * needed, (len(counting.requests), needed)
    assert len(counting.requests) < ROWS / 10


def test_limit_without_an_ai_filter_result_loses_no_row(con: Any, counting: Counting) -> None:
    """A LIMIT larger than the answer: every row is judged once and the planned result equals the unplanned."""
    truth = _passes(con, "is great")
    counting.requests.clear()
    rows = con.sql("SELECT id FROM reviews WHERE ai_filter('is great', txt) LIMIT 100000").fetchall()
    assert sorted(i for (i,) in rows) == sorted(i for i, ok in truth.items() if ok)
    assert len(counting.requests) == ROWS  # each row once: no row judged twice, none skipped


def test_limit_stops_model_calls_on_a_semantic_join(con: Any, counting: Counting) -> None:
    query = (
        "SELECT r.id, t.tid FROM reviews r JOIN topics t "
        "ON ai_filter(prompt('Review {0} is about {1}', r.txt, t.name)) LIMIT 10"
    )
    rows = con.sql(query).fetchall()
    assert len(rows) == 10
    assert len(counting.requests) <= 200, len(counting.requests)  # 40,000 pairs; one probe batch is 8 × 20
    for review, topic in rows:  # each pair really satisfies the predicate (the unplanned engine agrees)
        (ok,) = con.duckdb.execute(
            "SELECT ai_filter(prompt('Review {0} is about {1}', r.txt, t.name)) FROM reviews r, topics t "
            "WHERE r.id = ? AND t.tid = ?",
            [review, topic],
        ).fetchone()
        assert ok is True
    # the small table written first: the planner still streams the large one
    counting.requests.clear()
    swapped = query.replace("FROM reviews r JOIN topics t", "FROM topics t JOIN reviews r")
    assert len(con.sql(swapped).fetchall()) == 10 and len(counting.requests) <= 200


def test_limit_in_a_cte_a_projection_and_the_explain_output(con: Any, counting: Counting) -> None:
    rows = con.sql(
        "WITH recent AS (SELECT * FROM reviews WHERE id >= 1000) "
        "SELECT id FROM recent WHERE ai_filter('is great', txt) LIMIT 3"
    ).fetchall()
    assert len(rows) == 3 and all(i >= 1000 for (i,) in rows) and len(counting.requests) <= 60
    counting.requests.clear()
    assert len(con.sql("SELECT ai_summarize(txt) FROM reviews LIMIT 4").fetchall()) == 4
    assert len(counting.requests) == 4
    plan = con.plan("SELECT id FROM reviews WHERE ai_filter('is great', txt) LIMIT 5")
    assert plan.rewritten and "reviews" in plan.notes[0] and "LIMIT 5" in plan.notes[0]
    assert not con.plan("SELECT id FROM reviews LIMIT 5").rewritten  # no AI call: nothing to stop
    assert not con.plan("SELECT ai_gen(txt) FROM reviews").rewritten  # no LIMIT: every row is wanted


def test_cheap_predicates_run_before_ai_predicates(con: Any, counting: Counting) -> None:
    for where in ("ai_filter('is nice', txt) AND id < 10", "id < 10 AND ai_filter('is nice', txt)"):
        counting.requests.clear()
        con.sql(f"SELECT id FROM reviews WHERE {where}").fetchall()
        assert len(counting.requests) == 10, where


def test_temporary_and_uncommitted_tables_run_unplanned_and_right(con: Any, counting: Counting) -> None:
    con.execute("CREATE TEMP TABLE scratch AS SELECT * FROM reviews WHERE id < 50")
    rows = con.sql("SELECT id FROM scratch WHERE ai_filter('is great', txt) LIMIT 3").fetchall()
    assert len(rows) == 3 and all(i < 50 for (i,) in rows)
    con.execute("BEGIN TRANSACTION")
    con.execute("CREATE TABLE fresh AS SELECT * FROM reviews WHERE id < 30")
    rows = con.execute("SELECT id FROM fresh WHERE ai_filter('is great', txt) LIMIT 2").fetchall()
    con.execute("ROLLBACK")
    assert len(rows) == 2 and all(i < 30 for (i,) in rows)


def test_same_call_on_the_same_row_is_computed_once_per_query(con: Any, counting: Counting) -> None:
    rows = con.sql(
        "SELECT CASE ai_classify(txt, ARRAY['a', 'b', 'c']) WHEN 'a' THEN 1 WHEN 'b' THEN 2 ELSE 3 END "
        "FROM reviews WHERE id < 128"
    ).fetchall()
    assert len(rows) == 128 and len(counting.requests) == 128  # once per row, not once per WHEN
    counting.requests.clear()
    con.sql("SELECT ai_classify(txt, ARRAY['a', 'b', 'c']) FROM reviews WHERE id < 4").fetchall()
    assert len(counting.requests) == 4  # a new statement asks again (the response cache is off here)


def test_similarity_embeds_each_text_once_per_query(ws: Workspace) -> None:
    embedder = FakeModel(["x"], name="fake:emb")
    with connect(ws) as con:
        con.brickyard.workspace.registry.register("emb", embedder, EndpointConfig(model="fake:emb", cache=False))
        con.execute("CREATE TABLE docs AS SELECT 'doc ' || i AS txt FROM range(10) r(i)")
        rows = con.sql("SELECT ai_similarity(txt, 'cats') > ai_similarity(txt, 'dogs') FROM docs").fetchall()
    assert len(rows) == 10
    embedded = [t for call in embedder.embed_calls for t in call]
    assert sorted(embedded) == sorted({*(f"doc {i}" for i in range(10)), "cats", "dogs"})  # each text once


def test_every_function_takes_an_endpoint(con: Any, counting: Counting) -> None:
    other = Counting()
    _register(con, "other", FunctionModel(other, name="function:other"))
    calls = {
        "ai_query": "ai_query('other', txt)",
        "ai_classify": "ai_classify(txt, ARRAY['a', 'b'], endpoint => 'other')",
        "ai_extract": "ai_extract(txt, ARRAY['person'], endpoint => 'other')",
        "ai_extract_json": "ai_extract_json(txt, {'type': 'object', 'properties': {'p': {'type': 'string'}}}, "
        "endpoint => 'other')",
        "ai_summarize": "ai_summarize(txt, endpoint => 'other')",
        "ai_translate": "ai_translate(txt, 'fr', endpoint => 'other')",
        "ai_fix_grammar": "ai_fix_grammar(txt, endpoint => 'other')",
        "ai_gen": "ai_gen(txt, endpoint => 'other')",
        "ai_mask": "ai_mask(txt, ARRAY['person'], endpoint => 'other')",
        "ai_analyze_sentiment": "ai_analyze_sentiment(txt, endpoint => 'other')",
        "ai_filter": "ai_filter('is great', txt, endpoint => 'other')",
        "ai_agg": "ai_agg(list(txt), 'summarise', endpoint => 'other')",
        "ai_match": "ai_match(txt, ['is great', 'is dull'], endpoint => 'other')",
    }
    chat_functions = {f.name for f in FUNCTIONS} - {"ai_similarity", "ai_embed"}
    assert set(calls) == chat_functions  # a new function must be added here
    for name, call in calls.items():
        other.requests.clear()
        counting.requests.clear()
        source = "(SELECT * FROM reviews WHERE id < 3)"
        con.sql(f"SELECT {call} FROM {source}").fetchall()
        assert other.requests and not counting.requests, name
    with pytest.raises(Exception, match="unknown endpoint `nowhere`") as raised:
        con.sql("SELECT ai_filter('x', txt, endpoint => 'nowhere') FROM reviews WHERE id < 2").fetchall()
    assert "__by_" not in public_message(raised.value)


def test_prompt_over_several_columns_and_structs_never_show_internal_names(con: Any, counting: Counting) -> None:
    rows = con.sql(
        "SELECT ai_filter(prompt('Review {0} is better than review {1}', a.txt, b.txt)) "
        "FROM reviews a JOIN reviews b ON b.id = a.id + 1 WHERE a.id < 3"
    ).fetchall()
    assert len(rows) == 3 and all(isinstance(r[0], bool) for r in rows)
    sent = [str(r.messages[-1]["content"]) for r in counting.requests]
    assert any("Review review 0" in s and "better than review review 1" in s for s in sent)
    rows = con.sql("SELECT ai_filter('is great', {'title': txt, 'id': id}) FROM reviews WHERE id < 2").fetchall()
    assert len(rows) == 2
    with pytest.raises(Exception) as raised:
        con.sql("SELECT ai_filter('x', txt, 'det', 4) FROM reviews").fetchall()
    assert "__by_" not in public_message(raised.value)
    assert "__by_ai_filter" not in public_message(
        "Binder Error: No function matches the given name and argument types '__by_ai_filter(STRING_LITERAL)'"
    )


def test_out_of_range_struct_values_are_that_rows_error(con: Any) -> None:
    con.execute("CREATE TABLE values_ AS SELECT * FROM (VALUES (1, 'count 7'), (2, 'count 5000000000000000')) t(id, v)")
    rows = con.sql(
        "SELECT id, ai_query('det', v, failOnError => false, responseFormat => 'STRUCT<score: INT>') FROM values_ "
        "ORDER BY id"
    ).fetchall()
    good, bad = rows[0][1], rows[1][1]
    assert json.loads(good["result"]) == {"score": 7} and good["errorMessage"] is None
    assert bad["result"] is None and "maximum" in bad["errorMessage"] and "score" in bad["errorMessage"]
    big = con.sql(
        "SELECT ai_query('det', v, responseFormat => 'STRUCT<score: BIGINT>') FROM values_ WHERE id = 2"
    ).fetchall()
    assert json.loads(big[0][0]) == {"score": 5000000000000000}  # BIGINT holds it


def test_declarations_generate_the_macros_and_the_readme_table() -> None:
    sql = macros_sql()
    for function in FUNCTIONS:
        assert f"CREATE OR REPLACE MACRO {function.name}(" in sql
        assert f"`{function.signature()}`" in compatibility_table()
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert compatibility_table() in readme, "README's function table is stale: paste compatibility_table()"


def test_cli_explain_and_estimate_is_the_full_scan_upper_bound(ws: Workspace) -> None:
    with connect(ws) as con:
        con.execute("CREATE TABLE reviews AS SELECT i AS id, 'review ' || i AS txt FROM range(300) r(i)")
    runner = CliRunner()
    query = "SELECT id FROM reviews WHERE ai_filter('is great', txt) LIMIT 5"
    explained = runner.invoke(app, ["sql", "-w", str(ws.path), "--explain", query])
    assert explained.exit_code == 0, explained.output
    assert "growing batches" in explained.output and "__by_stream" in explained.output
    estimated = runner.invoke(app, ["sql", "-w", str(ws.path), "--estimate", query])
    assert estimated.exit_code == 0 and "300 model calls" in estimated.output.replace("\n", " ")


def test_server_sql_api_row_limit_stops_model_calls(tmp_path: Path, serve: Any) -> None:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.config_path.write_text(SERVER_CONFIG + "\n[server]\nsql_row_limit = 3\n", encoding="utf-8")
    ws = Workspace(workspace.path)
    with connect(ws) as con:
        con.execute(f"CREATE TABLE reviews AS SELECT 'review ' || i AS txt FROM range({ROWS}) r(i)")
    key = make_key(ws, "analyst", ("det",), sql=True)
    server = serve(ws)
    response = httpx.post(
        server.url + "/api/sql",
        json={"query": "SELECT txt FROM reviews WHERE ai_filter('is about a film', txt, endpoint => 'det')"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["row_count"] == 3 and body["truncated"] is True
    calls = sum(1 for r in ws.store.usage(endpoint="det"))
    assert 4 <= calls <= 40, calls  # 3 rows shown (+1 to know it was truncated), not 2,000


def test_a_statement_inside_a_transaction_sees_its_own_rows(con: Any) -> None:
    """Streaming reads through another cursor, which would miss uncommitted rows: such a statement is not planned."""
    con.execute("BEGIN TRANSACTION")
    con.execute("DELETE FROM reviews")
    con.execute("INSERT INTO reviews VALUES (1, 'only row, great')")
    rows = con.execute("SELECT id FROM reviews WHERE ai_filter('is great', txt) OR true LIMIT 5").fetchall()
    con.execute("ROLLBACK")
    assert rows == [(1,)]


def test_semantic_join_asks_once_per_row_with_every_predicate(con: Any, counting: Counting) -> None:
    query = "SELECT r.id, t.tid FROM reviews r JOIN topics t ON ai_filter('is about ' || t.name, r.txt) WHERE r.id < 50"
    plan = con.plan(query)
    assert plan.rewritten and "ai_match" in plan.sql and "20 predicates" in plan.notes[0]
    con.planner.release()
    rows = con.sql(query).fetchall()
    assert len(counting.requests) == 50  # one multi-label request per review, not 50 × 20 pairs
    asked = counting.requests[0]
    assert "is about topic 0" in json.dumps(asked.json_schema) and "is about topic 19" in json.dumps(asked.json_schema)
    for review, topic in rows:  # every joined pair is one the model chose for that review
        (chosen,) = con.duckdb.execute(
            "SELECT ai_match(txt, ?) FROM reviews WHERE id = ?",
            [json.dumps(sorted(f"is about topic {i}" for i in range(20))), review],  # as the planner lists them
        ).fetchone()
        assert f"is about topic {topic}" in chosen
    con.execute("CREATE TABLE many AS SELECT 'topic ' || i AS name FROM range(100) r(i)")
    wide = con.plan("SELECT r.id FROM reviews r JOIN many m ON ai_filter('is about ' || m.name, r.txt)")
    assert not wide.rewritten and "more than 64 predicates" in wide.notes[0]


def test_semantic_join_on_the_embedded_default_changes_the_cost_not_the_answer(tmp_path: Path) -> None:
    """On the small local models ai_match judges each predicate as ai_filter does: the same pairs, fewer rows."""
    ws = Workspace.init(tmp_path / "ws")
    with connect(ws) as con:
        con.execute(
            "CREATE TABLE r AS SELECT * FROM (VALUES (1, 'A moving drama about a family in Paris.'), "
            "(2, 'A goofy comedy with talking animals.'), (3, 'A tense thriller set on a submarine.'), "
            "(4, 'A romantic comedy in New York.')) t(id, txt)"
        )
        con.execute("CREATE TABLE g AS SELECT * FROM (VALUES ('comedy'), ('thriller'), ('drama')) t(genre)")
        query = "SELECT r.id, g.genre FROM r JOIN g ON ai_filter('is a ' || g.genre, r.txt) ORDER BY 1, 2"
        memo = con.brickyard.memo
        before = memo.computed
        rewritten = con.sql(query).fetchall()
        one_per_row = memo.computed - before
        con.brickyard.begin_statement()
        before = memo.computed
        pairwise = con.duckdb.execute(query).fetchall()
        per_pair = memo.computed - before
    assert rewritten == pairwise and rewritten  # identical verdicts
    assert (one_per_row, per_pair) == (4, 12)


async def test_match_on_the_embedding_mechanism_keeps_the_predicates_a_text_stands_out_for() -> None:
    from brickyard.functions import match

    topics = [f"topic{i}" for i in range(10)]

    def vector(text: str) -> list[float]:  # each topic its own direction; a text leans to the topics it names
        return [1.0 if t in text else 0.05 for t in topics]

    local = FakeModel(["unused"])
    local.supports_grammar = True  # as llama.cpp: the embedding mechanism applies
    embedder = FunctionModel(lambda r: "unused", embed_fn=vector)
    claims = [f"is about {t}" for t in topics]
    outcome = await match(["a text on topic3", "nothing in particular", None], claims, local, embedder=embedder)
    assert outcome.values == [["is about topic3"], [], None] and local.calls == []
    with pytest.raises(Exception, match="predicates is empty"):
        await match(["x"], [], local, embedder=embedder)


def test_several_ai_predicates_run_cheapest_and_most_selective_first(con: Any) -> None:
    import time as clock

    slow, fast = Counting(), Counting()

    def slow_model(request: ChatRequest) -> Any:
        clock.sleep(0.003)
        return slow(request)

    def fast_model(request: ChatRequest) -> Any:  # passes about one row in ten, at once
        fast.requests.append(request)
        number = int(content_of(request).split()[1])
        return {"label": "true" if number % 10 == 7 else "false"}

    _register(con, "slow", FunctionModel(slow_model, name="function:slow"))
    _register(con, "fast", FunctionModel(fast_model, name="function:fast"))
    query = (
        "SELECT id FROM reviews WHERE ai_filter('a', txt, endpoint => 'slow') AND id < 300 "
        "AND ai_filter('b', txt, endpoint => 'fast')"
    )
    plan = con.plan(query)
    assert "ordered by cost" in " ".join(plan.notes) and plan.sql.index("'fast'") < plan.sql.index("'slow'")
    con.planner.release()
    slow.requests.clear()
    planned = sorted(con.sql(query).fetchall())
    asked_planned = len(slow.requests)
    con.brickyard.begin_statement()
    slow.requests.clear()
    written = sorted(con.duckdb.execute(query).fetchall())
    assert planned == written and planned  # the same rows
    assert asked_planned < len(slow.requests) / 3, (asked_planned, len(slow.requests))
