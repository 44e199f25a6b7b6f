"""`ai_classify` on the small local models answers by embedding similarity: a person would accept its labels."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from brickyard import FakeModel, FunctionModel, Workspace
from brickyard._errors import InvalidRequestError
from brickyard.functions import classify
from brickyard.functions.filter_agg import filter_
from brickyard.sql.duckdb import connect

OBVIOUS = [
    ("An absolute masterpiece, moving and beautifully acted.", "fresh"),
    ("I loved every minute; a joyous, funny, brilliant film.", "fresh"),
    ("One of the best films of the year, a triumph.", "fresh"),
    ("Gorgeous, smart and deeply satisfying. Go see it.", "fresh"),
    ("A delightful crowd-pleaser with a wonderful cast.", "fresh"),
    ("Thrilling from start to finish; I was captivated.", "fresh"),
    ("A boring, incoherent mess. I walked out.", "rotten"),
    ("Terrible acting and a dreadful script; a waste of time.", "rotten"),
    ("Dull, lifeless and far too long. Avoid it.", "rotten"),
    ("The worst film I have seen in years, painfully bad.", "rotten"),
    ("Lazy, clumsy and utterly forgettable.", "rotten"),
    ("A tedious disaster with no redeeming qualities.", "rotten"),
]


def test_ai_classify_on_the_default_endpoint_gets_obvious_reviews_right(tmp_path: Path) -> None:
    """The first wave answered `fresh` for all 12 (6 right); the bundled embedder separates them."""
    ws = Workspace.init(tmp_path / "ws")
    with connect(ws, database=":memory:") as con:
        con.execute("CREATE TABLE r (txt VARCHAR, gold VARCHAR)")
        con.executemany("INSERT INTO r VALUES (?, ?)", OBVIOUS)
        rows = con.execute("SELECT ai_classify(txt, ARRAY['fresh', 'rotten']), gold FROM r").fetchall()
    right = sum(label == gold for label, gold in rows)
    assert right >= 11 and {label for label, _ in rows} == {"fresh", "rotten"}


async def test_embedding_mechanism_applies_to_local_models_without_instructions() -> None:
    local = FakeModel(["fresh"])
    local.supports_grammar = True  # as llama.cpp
    embedder = FunctionModel(
        lambda r: "unused", embed_fn=lambda t: [1.0, 0.0] if ("good" in t or "fresh" in t) else [0.0, 1.0]
    )
    texts = ["a good film", "a bad film", None]
    outcome = await classify(texts, ["fresh", "rotten"], local, embedder=embedder, progress=False)
    assert outcome.values == ["fresh", "rotten", None] and local.calls == []
    assert outcome.mechanisms[:2] == ["embedding", "embedding"]
    assert outcome.confidences[0] is not None and outcome.confidences[0] > 0.9
    with_instructions = await classify(
        texts[:1], ["fresh", "rotten"], local, embedder=embedder, instructions="Judge the acting.", progress=False
    )
    assert with_instructions.mechanisms == ["generated"] and len(local.calls) == 1  # the task needs the model
    remote = FakeModel([{"label": "rotten"}])  # no grammar: a remote model keeps generating
    generated = await classify(texts[:1], ["fresh", "rotten"], remote, embedder=embedder, progress=False)
    assert generated.values == ["rotten"] and generated.mechanisms == ["generated"]


def test_examples_train_a_classifier_that_beats_zero_shot_on_a_held_out_split(tmp_path: Path) -> None:
    """`options => {'examples': 'table'}` fits logistic regression on the examples; no LLM call, real embedder."""
    from brickyard.datasets.rotten_tomatoes import rotten_tomatoes

    rows = rotten_tomatoes(260, seed=3)
    train, test = rows[:200], rows[200:]
    ws = Workspace.init(tmp_path / "ws")
    with connect(ws, database=str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE labelled (content VARCHAR, label VARCHAR)")
        con.executemany("INSERT INTO labelled VALUES (?, ?)", [(r.text, r.label) for r in train])
        con.execute("CREATE TABLE r (txt VARCHAR, gold VARCHAR)")
        con.executemany("INSERT INTO r VALUES (?, ?)", [(r.text, r.label) for r in test] + [(None, None)])
        answers = con.execute(
            "SELECT ai_classify(txt, ARRAY['fresh', 'rotten'], options => {'examples': 'labelled', 'confidence': true})"
            ", gold FROM r"
        ).fetchall()
    assert answers[-1] == (None, None)  # NULL in, NULL out
    parsed = [(json.loads(a), g) for a, g in answers[:-1]]
    assert all(p["mechanism"] == "trained" and 0.5 <= p["confidence"] <= 1.0 for p, _ in parsed)
    accuracy = sum(p["label"] == g for p, g in parsed) / len(parsed)
    majority = max(sum(g == "fresh" for _, g in parsed), sum(g == "rotten" for _, g in parsed)) / len(parsed)
    assert accuracy > majority + 0.05, (accuracy, majority)
    assert len({p["label"] for p, _ in parsed}) == 2


def test_examples_refuse_bad_tables_and_labels_with_a_fix(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    with connect(ws, database=str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE one_label AS SELECT 'great' AS content, 'fresh' AS label")
        con.execute("CREATE TABLE other AS SELECT 'great' AS content, 'meh' AS label UNION ALL SELECT 'bad', 'rotten'")
        con.execute("CREATE TABLE nolabel AS SELECT 'great' AS content")
        con.execute("CREATE TABLE r AS SELECT 'a fine film' AS txt")
        for relation, fragment in [
            ("one_label", "at least two labels"),
            ("other", "outside the label set"),
            ("nolabel", "needs `label`"),
            ("missing_table", "cannot read"),
            ("r; DROP TABLE r", "must name a table"),
        ]:
            with pytest.raises(duckdb.Error, match=fragment):
                con.execute(
                    f"SELECT ai_classify(txt, ARRAY['fresh', 'rotten'], options => {{'examples': '{relation}'}}) FROM r"
                ).fetchall()
        assert con.execute("SELECT count(*) FROM r").fetchone() == (1,)
        with pytest.raises(duckdb.Error, match="unknown option"):
            con.execute("SELECT ai_classify(txt, ARRAY['a', 'b'], options => {'confidance': true}) FROM r").fetchall()


def test_filter_examples_train_a_classifier_for_the_predicate(tmp_path: Path) -> None:
    """`ai_filter(p, txt, options => {'examples': 'table'})`: rows labelled true/false for the predicate train a
    classifier on the real embedder; held out, it keeps the liked reviews better than the majority answer."""
    from brickyard.datasets.rotten_tomatoes import rotten_tomatoes

    rows = rotten_tomatoes(260, seed=5)
    train, test = rows[:200], rows[200:]
    ws = Workspace.init(tmp_path / "ws")
    with connect(ws, database=str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE liked (content VARCHAR, label BOOLEAN)")
        con.executemany("INSERT INTO liked VALUES (?, ?)", [(r.text, r.label == "fresh") for r in train])
        con.execute("CREATE TABLE r (id INTEGER, txt VARCHAR, gold VARCHAR)")
        con.executemany("INSERT INTO r VALUES (?, ?, ?)", [(i, r.text, r.label) for i, r in enumerate(test)])
        kept = con.execute(
            "SELECT gold FROM r WHERE ai_filter('the reviewer liked the film', txt, options => {'examples': 'liked'})"
        ).fetchall()
        golds = [g for (g,) in con.execute("SELECT gold FROM r").fetchall()]
        con.execute("CREATE TABLE bad AS SELECT 'great' AS content, 'maybe' AS label UNION ALL SELECT 'bad', 'no'")
        with pytest.raises(duckdb.Error, match="must be true or false"):
            con.sql("SELECT count(*) FROM r WHERE ai_filter('liked', txt, options => {'examples': 'bad'})").fetchall()
        con.execute("CREATE TABLE all_true AS SELECT 'great' AS content, true AS label UNION ALL SELECT 'fine', true")
        with pytest.raises(duckdb.Error, match=r"ai_filter: the examples must cover at least two labels"):
            con.sql("SELECT count(*) FROM r WHERE ai_filter('ok', txt, options => {'examples': 'all_true'})").fetchall()
        with pytest.raises(duckdb.Error, match="two mechanisms"):
            con.execute(
                "SELECT count(*) FROM r WHERE ai_filter('liked', txt, options => {'examples': 'liked', "
                "'target_recall': 0.9})"
            ).fetchall()
    fresh = golds.count("fresh")
    true_positive = sum(g == "fresh" for (g,) in kept)
    assert 0 < len(kept) < len(golds)  # it filters, and not everything
    accuracy = (true_positive + (len(golds) - fresh - (len(kept) - true_positive))) / len(golds)
    assert accuracy > max(fresh, len(golds) - fresh) / len(golds) + 0.05, accuracy


async def test_filter_on_small_local_models_contrasts_the_predicate_with_its_negation() -> None:
    local = FakeModel(["true"])
    local.supports_grammar = True
    seen: list[str] = []

    def vector(text: str) -> list[float]:
        seen.append(text)
        return [0.0, 1.0] if (" not " in text or "bad" in text) else [1.0, 0.0]

    embedder = FunctionModel(lambda r: "unused", embed_fn=vector)
    outcome = await filter_("the film is good", ["a good film", "a bad film", None], local, embedder=embedder)
    assert outcome.values == [True, False, None] and local.calls == []
    assert "the film is not good" in seen  # negated at the verb, not "it is not true that ..."
    assert outcome.notes[0] is not None and "'the film is not good'" in outcome.notes[0]
    assert "cannot judge a predicate reliably" in outcome.notes[0]
    seen.clear()
    given = await filter_("the film is good", ["a good film"], local, embedder=embedder, contrast="a bad film")
    assert "a bad film" in seen and "the film is not good" not in seen and given.values == [True]
    with pytest.raises(InvalidRequestError, match="other than the predicate"):
        await filter_("the film is good", ["a good film"], local, embedder=embedder, contrast=" The film is good ")
    remote = FakeModel([{"label": "false"}])  # a capable remote model keeps judging the predicate itself
    judged = await filter_("the film is good", ["a good film"], remote, embedder=embedder)
    assert judged.values == [False] and len(remote.calls) == 1


@pytest.mark.parametrize(
    ("predicate", "keeps"),
    [
        ("the reviewer liked the film", "fresh"),
        ("the reviewer disliked the film", "rotten"),
        ("the film is boring", "rotten"),
        ("the review is negative about the movie", "rotten"),
    ],
)
def test_ai_filter_on_the_default_endpoint_keeps_the_right_obvious_reviews(
    tmp_path: Path, predicate: str, keeps: str
) -> None:
    """Negative statements too: compared with "it is not true that <predicate>" (the first contrast), a text
    full of negative words sat closer to the prefix and the filter kept the wrong reviews. Negated at the verb
    the real embedder keeps the reviews the predicate describes and drops the others."""
    ws = Workspace.init(tmp_path / "ws")
    with connect(ws, database=":memory:") as con:
        con.execute("CREATE TABLE r (txt VARCHAR, gold VARCHAR)")
        con.executemany("INSERT INTO r VALUES (?, ?)", OBVIOUS)
        kept = [g for (g,) in con.execute(f"SELECT gold FROM r WHERE ai_filter('{predicate}', txt)").fetchall()]
    right = sum(g == keeps for g in kept) + sum(g != keeps for _, g in OBVIOUS) - sum(g != keeps for g in kept)
    assert right >= 10 and 0 < len(kept) < len(OBVIOUS), (predicate, kept)


def test_ai_filter_contrast_option_names_the_opposite_statement(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    with connect(ws, database=str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE r (txt VARCHAR, gold VARCHAR)")
        con.executemany("INSERT INTO r VALUES (?, ?)", OBVIOUS)
        kept = con.execute(
            "SELECT gold FROM r WHERE ai_filter('a review that praises the film', txt, "
            "options => {'contrast': 'a review that pans the film'})"
        ).fetchall()
        assert sum(g == "fresh" for (g,) in kept) >= 5 and sum(g == "rotten" for (g,) in kept) <= 1, kept
        with pytest.raises(duckdb.Error, match="other than the predicate"):
            con.execute(
                "SELECT count(*) FROM r WHERE ai_filter('good', txt, options => {'contrast': 'Good'})"
            ).fetchall()
        con.execute("CREATE TABLE liked AS SELECT 'great' AS content, true AS label UNION ALL SELECT 'bad', false")
        with pytest.raises(duckdb.Error, match="two mechanisms"):
            con.execute(
                "SELECT count(*) FROM r WHERE ai_filter('good', txt, "
                "options => {'examples': 'liked', 'contrast': 'bad'})"
            ).fetchall()
