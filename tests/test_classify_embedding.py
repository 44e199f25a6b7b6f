"""`ai_classify` on the small local models answers by embedding similarity: a person would accept its labels."""

from __future__ import annotations

from pathlib import Path

from brickyard import FakeModel, FunctionModel, Workspace
from brickyard.functions import classify
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
