"""AI functions in DuckDB SQL, against a deterministic model for exact results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DETERMINISTIC_CONFIG

from brickyard import ChatRequest, FunctionModel, Workspace
from brickyard.config import EndpointConfig
from brickyard.sql.duckdb import connect
from brickyard.testing.deterministic import answer, stable_hash

CONFIG = DETERMINISTIC_CONFIG

REVIEWS = [
    (1, "A great Film by Bob Smith, warm and funny."),
    (2, "Awful movie. Call 555-0100 to complain."),
    (3, None),
    (4, "A great Film by Bob Smith, warm and funny."),
    (5, "Mediocre but Paris looks lovely."),
]


class Counting:
    """The deterministic model, counting the requests it receives."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.requests: list[ChatRequest] = []
        self.fail_on = fail_on

    def __call__(self, request: ChatRequest) -> Any:
        self.requests.append(request)
        if self.fail_on and self.fail_on in str(request.messages[-1]["content"]):
            raise ValueError(f"cannot answer a row containing {self.fail_on}")
        return answer(request)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.config_path.write_text(CONFIG)
    return Workspace(workspace.path)


@pytest.fixture
def counting() -> Counting:
    return Counting(fail_on="BOOM")


@pytest.fixture
def con(ws: Workspace, counting: Counting) -> Iterator[Any]:
    connection = connect(ws)
    connection.brickyard.workspace.registry.register(
        "det", FunctionModel(counting, name="function:det"), EndpointConfig(model="function:det", max_retries=0)
    )
    connection.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
    connection.executemany("INSERT INTO reviews VALUES (?, ?)", REVIEWS)
    yield connection
    connection.close()


def label_for(text: str, labels: list[str]) -> str:
    return labels[stable_hash(text) % len(labels)]


def column(con: Any, sql: str) -> list[Any]:
    return [row[0] for row in con.sql(sql).fetchall()]


def test_ai_classify_exact_labels_null_and_one_call_per_distinct_value(con: Any, counting: Counting) -> None:
    got = column(con, "SELECT ai_classify(txt, ARRAY['fresh', 'rotten']) FROM reviews ORDER BY id")
    texts = [t for _, t in REVIEWS]
    assert got == [None if t is None else label_for(t, ["fresh", "rotten"]) for t in texts]
    assert len(counting.requests) == 3  # four non-NULL rows, three distinct texts, NULL never sent
    column(con, "SELECT ai_classify(txt, ARRAY['fresh', 'rotten']) FROM reviews")
    assert len(counting.requests) == 3  # the re-run is served from the cache


def test_ai_classify_with_label_descriptions_and_options(con: Any, counting: Counting) -> None:
    labels = {"billing": "questions about invoices", "bug": "something is broken"}
    got = column(
        con,
        f"SELECT ai_classify(txt, '{json.dumps(labels)}', options => {{'instructions': 'Be strict.'}}) "
        "FROM reviews WHERE id = 2",
    )
    assert got == [label_for(REVIEWS[1][1], list(labels))]
    system = counting.requests[-1].messages[0]["content"]
    assert "billing: questions about invoices" in system and "Be strict." in system
    multi = column(
        con, "SELECT ai_classify(txt, ARRAY['a', 'b', 'c'], options => {'multilabel': true}) FROM reviews WHERE id = 1"
    )
    assert isinstance(json.loads(multi[0]), list) and set(json.loads(multi[0])) <= {"a", "b", "c"}


def test_ai_extract_returns_a_struct_with_a_field_per_label(con: Any) -> None:
    rows = column(con, "SELECT ai_extract(txt, ARRAY['person', 'city']) FROM reviews ORDER BY id")
    assert rows[2] is None
    assert rows[0] == {"person": "Film", "city": "Film"}  # the deterministic model's first capitalised word
    nested = column(
        con,
        "SELECT ai_extract_json(txt, {'type': 'object', 'properties': {'names': {'type': 'array', "
        "'items': {'type': 'string'}}, 'n': {'type': 'integer'}}}) FROM reviews WHERE id = 5",
    )
    # the stand-in answers n = the text's length, which the text does not hold: extraction drops it
    assert json.loads(nested[0]) == {"names": ["Mediocre"], "n": None}


def test_text_functions(con: Any) -> None:
    row = con.sql(
        "SELECT ai_summarize(txt), ai_summarize(txt, max_words => 2), ai_translate(txt, 'es'), "
        "ai_fix_grammar(txt), ai_gen(txt), ai_analyze_sentiment(txt) FROM reviews WHERE id = 2"
    ).fetchone()
    text = REVIEWS[1][1]
    echo = "echo: " + " ".join(text.split()[:12])
    assert row[:5] == (echo, "echo: Awful", echo, echo, echo)
    assert row[5] == label_for(text, ["positive", "negative", "neutral", "mixed"])


def test_ai_mask_replaces_only_the_listed_entities(con: Any) -> None:
    got = column(con, "SELECT ai_mask(txt, ARRAY['person']) FROM reviews WHERE id = 1")
    assert got == ["A great [MASKED] by Bob Smith, warm and funny."]  # the model listed 'Film'


def test_ai_filter_in_where_and_join(con: Any) -> None:
    expected = {i for i, t in REVIEWS if t is not None and label_for(t, ["true", "false"]) == "true"}
    got = set(column(con, "SELECT id FROM reviews WHERE ai_filter('is positive', txt)"))
    assert got == expected
    con.execute("CREATE TABLE topics AS SELECT * FROM (VALUES ('film'), ('phone')) t(topic)")
    pairs = con.sql(
        "SELECT r.id, t.topic FROM reviews r JOIN topics t ON ai_filter('mentions ' || t.topic, r.txt)"
    ).fetchall()
    assert all(isinstance(i, int) and topic in ("film", "phone") for i, topic in pairs)


def test_ai_query_plain_structured_and_fail_on_error(con: Any) -> None:
    got = column(con, "SELECT ai_query('det', txt) FROM reviews ORDER BY id")
    assert got[0] == "echo: " + " ".join(REVIEWS[0][1].split()[:12]) and got[2] is None
    structured = column(
        con,
        "SELECT ai_query('det', txt, responseFormat => 'STRUCT<name: STRING, n: INT>') FROM reviews WHERE id = 5",
    )
    assert json.loads(structured[0]) == {"name": "Mediocre", "n": len(REVIEWS[4][1])}
    schema = json.dumps(
        {
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
            },
        }
    )
    assert isinstance(
        json.loads(column(con, f"SELECT ai_query('det', 'q', responseFormat => '{schema}')")[0])["ok"], bool
    )
    con.execute("INSERT INTO reviews VALUES (6, 'this row goes BOOM')")
    safe = con.sql("SELECT id, ai_query('det', txt, failOnError => false) AS r FROM reviews ORDER BY id").fetchall()
    assert len(safe) == 6  # no row lost
    by_id = {i: r for i, r in safe}
    assert by_id[6]["result"] is None and "BOOM" in by_id[6]["errorMessage"]
    assert by_id[1]["errorMessage"] is None and by_id[1]["result"].startswith("echo:")
    with pytest.raises(Exception, match=r"ai_query: .*BOOM.*failOnError"):
        con.sql("SELECT ai_query('det', txt) FROM reviews").fetchall()


def test_ai_query_model_parameters_reach_the_request(con: Any, counting: Counting) -> None:
    column(con, "SELECT ai_query('det', 'hi', modelParameters => {'max_tokens': 7, 'temperature': 0.5})")
    request = counting.requests[-1]
    assert request.max_tokens == 7 and request.temperature == 0.5
    with pytest.raises(Exception, match="unknown model parameter `top_q`"):
        column(con, "SELECT ai_query('det', 'hi', modelParameters => {'top_q': 1})")


def test_embeddings_and_similarity(con: Any) -> None:
    vectors = column(con, "SELECT ai_embed(txt) FROM reviews ORDER BY id")
    assert vectors[2] is None and len(vectors[0]) == 8 and vectors[0] == vectors[3]
    same, other, null = con.sql(
        "SELECT ai_similarity('a warm film', 'a warm film'), ai_similarity('a warm film', 'tax law'), "
        "ai_similarity(NULL, 'x')"
    ).fetchone()
    assert same == pytest.approx(1.0, abs=1e-5) and 0.0 <= other < same and null is None


def test_ai_agg_map_reduces_many_rows(con: Any, counting: Counting) -> None:
    con.execute(
        "CREATE TABLE many AS SELECT 'review number ' || i || ' ' || repeat('word ', 60) AS t FROM range(200) r(i)"
    )
    before = len(counting.requests)
    (result,) = con.sql("SELECT ai_agg(list(t), 'Summarise the reviews') FROM many").fetchone()
    assert result.startswith("echo:")
    assert len(counting.requests) - before > 2  # several map calls and at least one reduce


def test_bad_arguments_name_the_function_and_argument(con: Any) -> None:
    for sql, message in [
        ("SELECT ai_classify(txt, ARRAY['only']) FROM reviews", "ai_classify: at least two labels"),
        ("SELECT ai_classify(txt, 'not json') FROM reviews", "ai_classify: labels must be"),
        ("SELECT ai_query('nope', txt) FROM reviews", "unknown endpoint `nope`"),
        ("SELECT ai_query('det', txt, responseFormat => 'STRUCT<a STRIN>') FROM reviews", "unknown type STRIN"),
        ("SELECT ai_translate(txt, '') FROM reviews", "ai_translate: to_lang is empty"),
    ]:
        with pytest.raises(Exception, match=message):
            con.sql(sql).fetchall()
    with pytest.raises(Exception, match="does not support the supplied arguments"):
        con.sql("SELECT ai_summarize(txt, 1, 'det', 2) FROM reviews").fetchall()


def test_estimate_runs_nothing_and_counts_calls(ws: Workspace, counting: Counting) -> None:
    with connect(ws) as con:
        con.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?)", REVIEWS)
    with connect(ws, dry_run=True) as dry:
        dry.brickyard.workspace.registry.register("det", FunctionModel(counting, name="function:det"))
        dry.sql("SELECT ai_classify(txt, ARRAY['a', 'b']) FROM reviews WHERE ai_filter('x', txt)").fetchall()
        estimate = dry.brickyard.estimate()
    assert counting.requests == []
    assert estimate.per_endpoint["det"].distinct == 6  # 3 distinct texts × (filter + classify)
    assert estimate.calls == 6 and estimate.cost_usd > 0


def test_max_cost_stops_a_runaway_query(ws: Workspace) -> None:
    with connect(ws, max_cost_usd=0.0002) as con:
        con.execute("CREATE TABLE big AS SELECT 'text number ' || i AS t FROM range(300) r(i)")
        with pytest.raises(Exception, match="cost cap"):
            con.sql("SELECT ai_gen(t) FROM big").fetchall()
        cap = con.brickyard.cap
    # The query stopped early; what it spent past the cap is at most the calls that were in flight.
    per_call_max = 0.0002 / 10
    assert cap.spent_usd <= cap.limit_usd + 8 * per_call_max


@pytest.mark.local_model
def test_every_function_with_the_real_local_model_has_the_right_shape(tmp_path: Path, smollm2_path: Path) -> None:
    ws = Workspace.init(tmp_path / "real")
    ws.config_path.write_text(f'[local]\nmodels_dir = "{smollm2_path.parent}"\nparallel = 2\ncontext_per_slot = 1024\n')
    with connect(Workspace(ws.path)) as con:
        con.execute("CREATE TABLE r AS SELECT * FROM (VALUES (1, 'A moving film.'), (2, NULL)) v(id, txt)")
        row = con.sql(
            "SELECT ai_classify(txt, ARRAY['fresh', 'rotten']), ai_extract(txt, ARRAY['film', 'person']), "
            "ai_query('smollm2', 'Name a film: ' || txt, responseFormat => 'STRUCT<title: STRING, year: INT>', "
            "modelParameters => {'max_tokens': 60}), ai_filter('is positive', txt), "
            "ai_summarize(txt, max_words => 5), ai_analyze_sentiment(txt), ai_similarity(txt, 'a touching movie'), "
            "ai_embed(txt), ai_mask(txt, ARRAY['person']), ai_translate(txt, 'French'), ai_fix_grammar(txt) "
            "FROM r ORDER BY id"
        ).fetchall()
        label, extracted, structured, keep, summary, sentiment, similarity, vector, masked, french, fixed = row[0]
        assert label in ("fresh", "rotten")
        assert set(extracted) == {"film", "person"}
        assert all(v is None or isinstance(v, str) for v in extracted.values())
        parsed = json.loads(structured)
        assert isinstance(parsed["title"], str) and isinstance(parsed["year"], int)
        assert isinstance(keep, bool)
        assert isinstance(summary, str) and len(summary.split()) <= 5
        assert sentiment in ("positive", "negative", "neutral", "mixed")
        assert 0.0 <= similarity <= 1.0 and len(vector) == 384
        assert isinstance(masked, str) and isinstance(french, str) and isinstance(fixed, str)
        assert all(v is None for v in row[1])  # the NULL row: NULL everywhere, no call


def test_databricks_documentation_examples_run_with_minimal_changes(con: Any) -> None:
    """Examples from Databricks' AI Functions docs; the only edits: single-quoted strings, ARRAY[...] for
    array(...), {'k': v} for named_struct(...). Named arguments with `=>` run as written."""
    con.execute("CREATE TABLE research_papers AS SELECT 'Deep learning for tables. By Ada Lovelace.' AS abstract")
    con.execute("CREATE TABLE customer_reviews AS SELECT 'The blender broke after a week.' AS review_text")
    examples = {
        "query": "SELECT ai_query('det', 'Describe Databricks SQL in 30 words.') AS summary",
        "response_format": (
            "SELECT ai_query('det', 'Extract research paper details from the following abstract: ' || abstract, "
            "responseFormat => 'STRUCT<research_paper_extraction:STRUCT<title:STRING, authors:ARRAY<STRING>, "
            "abstract:STRING, keywords:ARRAY<STRING>>>') FROM research_papers"
        ),
        "fail_on_error": (
            "SELECT ai_query('det', review_text, failOnError => false) AS response FROM customer_reviews"
        ),
        "model_parameters": (
            "SELECT ai_query('det', review_text, modelParameters => {'max_tokens': 256, 'temperature': 0.1}) "
            "FROM customer_reviews"
        ),
        "classify": "SELECT ai_classify('My password is leaked.', ARRAY['urgent', 'not urgent'])",
        "classify_descriptions": (
            """SELECT ai_classify(review_text, '{"defect": "the product is broken", "delivery": "late or lost"}') """
            "FROM customer_reviews"
        ),
        "extract": (
            "SELECT ai_extract('John Doe lives in New York and works for Acme Corp.', "
            "ARRAY['person', 'location', 'organization'])"
        ),
        "mask": (
            "SELECT ai_mask('John Doe lives in New York. His email is john.doe@example.com.', ARRAY['person', 'email'])"
        ),
        "sentiment": "SELECT ai_analyze_sentiment('I am happy')",
        "similarity": "SELECT ai_similarity('Apache Spark', 'Apache Spark')",
        "summarize": "SELECT ai_summarize('Apache Spark is a unified analytics engine for large-scale data.', 5)",
        "translate": "SELECT ai_translate('Hello, how are you?', 'es')",
        "fix_grammar": "SELECT ai_fix_grammar('This sentence have some mistake')",
        "gen": "SELECT ai_gen('Generate a concise, cheerful email title for a summer bike sale with 20% discount')",
    }
    results = {name: con.sql(sql).fetchone()[0] for name, sql in examples.items()}
    paper = json.loads(results["response_format"])["research_paper_extraction"]
    assert set(paper) == {"title", "authors", "abstract", "keywords"} and isinstance(paper["authors"], list)
    assert set(results["fail_on_error"]) == {"result", "errorMessage"}
    assert results["classify"] in ("urgent", "not urgent")
    assert results["classify_descriptions"] in ("defect", "delivery")
    assert set(results["extract"]) == {"person", "location", "organization"}
    assert "[MASKED]" in results["mask"]
    assert results["sentiment"] in ("positive", "negative", "neutral", "mixed")
    assert results["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert all(isinstance(results[k], str) and results[k] for k in ("summarize", "translate", "fix_grammar", "gen"))


def test_vector_search_over_an_index(con: Any) -> None:
    from brickyard.sql.search import create_search_index, search

    con.execute(
        "CREATE TABLE docs AS SELECT * FROM (VALUES (10, 'a warm family film'), (11, 'tax law of 1920'), "
        "(12, 'a warm family movie night'), (13, NULL)) v(id, body)"
    )
    assert create_search_index(con, "docs_idx", "docs", "body", key="id") == 3
    rows = con.sql("SELECT key, text, score FROM vector_search('docs_idx', 'a warm family film', k => 2)").fetchall()
    assert rows[0][0] == 10 and len(rows) == 2 and rows[0][2] == pytest.approx(1.0, abs=1e-5)
    hnsw = search(con, "docs_idx", "a warm family film", 2)
    assert [r[0] for r in hnsw] == [r[0] for r in rows]
    text_hits = search(con, "docs_idx", "tax", 3, mode="text")
    assert [r[0] for r in text_hits] == [11]
    with pytest.raises(Exception, match="letters, digits"):
        create_search_index(con, "bad name", "docs", "body")
