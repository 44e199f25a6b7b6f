"""`ai_extract` with labelled examples: each row is shown the examples most similar to it as demonstrations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from brickyard import FunctionModel, Workspace
from brickyard._errors import InvalidRequestError
from brickyard.config import EndpointConfig
from brickyard.functions import extract
from brickyard.functions._grounding import occurs
from brickyard.models._types import ChatRequest, estimate_tokens
from brickyard.models.base import Demonstrations
from brickyard.sql.duckdb import connect

TOPICS = {"football": [1.0, 0.0, 0.0], "bank": [0.0, 1.0, 0.0], "flight": [0.0, 0.0, 1.0]}
EXAMPLES = [
    ("The football club Arsenal signed Bukayo Saka.", {"person": "Bukayo Saka", "organization": "Arsenal"}),
    ("The bank HSBC hired Noel Quinn.", {"person": "Noel Quinn", "organization": "HSBC"}),
    ("The flight from Paris was run by Air France.", {"organization": "Air France"}),
]


def topical(text: str) -> list[float]:
    """A vector per topic word; the closest example is the one on the same topic."""
    return next((v for word, v in TOPICS.items() if word in text.lower()), [0.3, 0.3, 0.3])


def recording(seen: list[ChatRequest]) -> FunctionModel:
    def answer(request: ChatRequest) -> dict[str, Any]:
        seen.append(request)
        return {"person": "Erling Haaland", "organization": "Unknown FC"}

    return FunctionModel(answer)


def demos_shown(request: ChatRequest) -> list[tuple[str, dict[str, Any]]]:
    """The (input, answer) demonstrations before the row's own text."""
    turns = request.messages[1:-1]
    return [
        (str(user["content"]), json.loads(str(reply["content"])))
        for user, reply in zip(turns[::2], turns[1::2], strict=True)
    ]


async def test_each_row_is_shown_the_examples_nearest_it_most_similar_last() -> None:
    seen: list[ChatRequest] = []
    embedder = FunctionModel(lambda r: "unused", embed_fn=topical)
    texts = ["Erling Haaland scored for the football club Manchester City.", None, "The bank Barclays fell."]
    outcome = await extract(
        texts, ["person", "organization"], recording(seen), examples=EXAMPLES, embedder=embedder, shots=1
    )
    assert len(seen) == 2  # no call for the NULL row
    football, bank = (demos_shown(r) for r in seen)
    assert [d for _, d in football] == [{"person": "Bukayo Saka", "organization": "Arsenal"}]
    assert [d for _, d in bank] == [{"person": "Noel Quinn", "organization": "HSBC"}]
    assert "Arsenal" in football[0][0] and "<text>" in football[0][0]  # the example's text, delimited as data
    # values are still copied from the row, never from an example: 'Unknown FC' is not in the text
    assert outcome.values == [
        {"person": "Erling Haaland", "organization": None},
        None,
        {"person": None, "organization": None},  # neither value is in the bank row's text
    ]

    seen.clear()
    await extract(texts[:1], ["person", "organization"], recording(seen), examples=EXAMPLES, embedder=embedder)
    shown = demos_shown(seen[0])
    assert len(shown) == 2 and shown[-1][1]["organization"] == "Arsenal"  # the nearest sits next to the input
    # a field an example leaves out is shown as null, so the model sees every field every time
    assert all(set(answer) == {"person", "organization"} for _, answer in shown)


async def test_without_an_embedder_the_first_examples_are_shown() -> None:
    seen: list[ChatRequest] = []
    await extract(["Haaland scored."], ["person", "organization"], recording(seen), examples=EXAMPLES, shots=2)
    assert [d["organization"] for _, d in demos_shown(seen[0])] == ["Arsenal", "HSBC"]


async def test_the_model_says_how_many_examples_it_learns_from_and_its_context_bounds_them() -> None:
    """By default a row is shown `model.demonstrations.shown` examples (8 on the pre-trained Gemma 3, measured), the
    least similar dropped while they would fill more than a quarter of the context window; the nearest stays."""
    from brickyard.functions.extract import DEMO_CONTEXT_SHARE, DEMO_TURN_TOKENS

    many = [(f"Club number {i} signed a player.", {"person": None, "organization": f"Club {i}"}) for i in range(12)]
    seen: list[ChatRequest] = []
    model = recording(seen)
    model.demonstrations = Demonstrations(shown=8)
    await extract(["Haaland scored."], ["person", "organization"], model, examples=many)
    assert len(demos_shown(seen[0])) == 8
    seen.clear()
    model.context_window = 320  # room for 80 tokens of demonstrations
    each = estimate_tokens(many[0][0]) + estimate_tokens('{"person": null, "organization": "Club 0"}') + 20
    fits = 80 // each
    assert 1 < fits < 8
    await extract(["Haaland scored."], ["person", "organization"], model, examples=many)
    shown = demos_shown(seen[0])
    assert [a["organization"] for _, a in shown] == [f"Club {i}" for i in range(fits)]
    assert DEMO_CONTEXT_SHARE == 0.25 and DEMO_TURN_TOKENS == 20  # each example also costs its turns' markers
    seen.clear()
    long = [("word " * 400, {"person": "Ada", "organization": None}), ("word " * 400, {"person": "Bo"})]
    await extract(["Ada wrote."], ["person", "organization"], model, examples=long, shots=2)
    assert len(demos_shown(seen[0])) == 1  # over budget alone, but one example is always shown
    seen.clear()
    embedder = FunctionModel(lambda r: "unused", embed_fn=topical)
    await extract(
        ["The football club Leeds."], ["person", "organization"], model, examples=EXAMPLES * 20, embedder=embedder
    )
    nearest_kept = demos_shown(seen[0])
    assert 1 <= len(nearest_kept) <= 3 and nearest_kept[-1][1]["organization"] == "Arsenal"


def test_bundled_models_say_how_they_are_shown_examples() -> None:
    from brickyard.models.catalog import CATALOG

    assert CATALOG["gemma3-270m"].demonstrations == Demonstrations(shown=8, compact_json=True)
    assert CATALOG["smollm2-135m"].demonstrations == Demonstrations(shown=2, compact_json=False)


@pytest.mark.parametrize("compact", [False, True])
async def test_demonstrations_are_written_compact_for_a_model_that_learns_better_so(compact: bool) -> None:
    """Gemma 3 is shown answers without spaces (measured: higher F1, fewer tokens); other models as usual. The
    values are the same either way, and the model's own answer is still parsed and grounded."""
    seen: list[ChatRequest] = []
    model = recording(seen)
    model.demonstrations = Demonstrations(shown=2, compact_json=compact)
    outcome = await extract(["Erling Haaland scored."], ["person", "organization"], model, examples=EXAMPLES)
    replies = [str(m["content"]) for m in seen[0].messages[2:-1:2]]
    assert len(replies) == 2
    assert all((" " not in r.replace("Bukayo Saka", "").replace("Noel Quinn", "")) == compact for r in replies)
    assert [d for _, d in demos_shown(seen[0])] == [
        {"person": "Bukayo Saka", "organization": "Arsenal"},
        {"person": "Noel Quinn", "organization": "HSBC"},
    ]
    assert outcome.values == [{"person": "Erling Haaland", "organization": None}]


@pytest.mark.parametrize(
    ("examples", "fragment"),
    [
        ([("text", "not json")], "must be a JSON object"),
        ([("text", '["a list"]')], "must be a JSON object"),
        ([("text", {"persons": "Ada"})], r"fields \['persons'\] that are not asked for"),
        ([(None, {"person": "Ada"}), ("  ", {"person": "Ada"})], "no text"),
    ],
)
async def test_bad_examples_are_refused_before_any_call(examples: list[tuple[Any, Any]], fragment: str) -> None:
    seen: list[ChatRequest] = []
    with pytest.raises(InvalidRequestError, match=fragment):
        await extract(["Ada wrote."], ["person", "organization"], recording(seen), examples=examples)
    assert seen == []


def register(ws: Workspace, name: str, model: FunctionModel) -> None:
    ws.registry.register(name, model, EndpointConfig(model=f"function:{name}", cache=False))


def test_sql_reads_examples_from_a_table_with_struct_or_json_answers(tmp_path: Path) -> None:
    """`options => {'examples': ...}` on DuckDB: a STRUCT answer column arrives as JSON, not as a Python repr;
    the real bundled embedder picks the demonstrations."""
    seen: list[ChatRequest] = []
    ws = Workspace.init(tmp_path / "ws")
    register(ws, "fx", recording(seen))
    with connect(ws, database=str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE ex_struct (content VARCHAR, label STRUCT(person VARCHAR, organization VARCHAR))")
        con.executemany(
            "INSERT INTO ex_struct VALUES (?, {'person': ?, 'organization': ?})",
            [(t, a.get("person"), a.get("organization")) for t, a in EXAMPLES],
        )
        con.execute("CREATE TABLE ex_json AS SELECT content, to_json(label) AS label FROM ex_struct")
        con.execute("CREATE TABLE r (txt VARCHAR)")
        con.execute("INSERT INTO r VALUES ('Erling Haaland scored for Manchester City.'), (NULL)")
        for table in ("ex_struct", "ex_json"):
            seen.clear()
            rows = con.execute(
                "SELECT ai_extract(txt, ARRAY['person', 'organization'], "
                f"options => {{'examples': '{table}', 'instructions': 'Names as written.'}}, endpoint => 'fx') FROM r"
            ).fetchall()
            assert rows == [({"person": "Erling Haaland", "organization": None},), (None,)]
            assert len(seen) == 1 and "Names as written." in str(seen[0].messages[0]["content"])
            shown = demos_shown(seen[0])
            assert len(shown) == 2 and all(set(a) == {"person", "organization"} for _, a in shown)
        seen.clear()
        con.execute(
            "SELECT ai_extract(txt, ARRAY['person', 'organization'], options => {'examples': 'ex_json', 'shots': 1}, "
            "endpoint => 'fx') FROM r"
        ).fetchall()
        assert len(demos_shown(seen[0])) == 1
        for bad, fragment in [
            ("{'shots': 2}", "add {'examples'"),
            ("{'examples': 'ex_json', 'shots': 0}", "at least 1"),
            ("{'examples': 'ex_json', 'shots': 1.5}", "whole number"),
            ("{'examples': 'ex_json', 'shots': 'many'}", "must be a number"),
        ]:
            with pytest.raises(duckdb.Error, match=fragment):
                con.execute(
                    f"SELECT ai_extract(txt, ARRAY['person', 'organization'], options => {bad}, "
                    "endpoint => 'fx') FROM r"
                ).fetchall()
        with pytest.raises(duckdb.Error, match="unknown option"):
            con.execute("SELECT ai_extract(txt, ARRAY['person'], options => {'exemples': 'ex_json'}) FROM r").fetchall()
        with pytest.raises(duckdb.Error, match="not asked for"):
            con.execute(
                "SELECT ai_extract(txt, ARRAY['person'], options => {'examples': 'ex_json'}, endpoint => 'fx') FROM r"
            ).fetchall()


def test_examples_on_the_default_endpoint_give_values_from_the_text(tmp_path: Path) -> None:
    """Real SmolLM2 and e5 through DuckDB: with two demonstrations per row, values come from the row's text."""
    sentences = [
        "Germany 's representative to the European Union , Werner Zwingmann , said on Wednesday .",
        "Peter Blackburn reported from Brussels for Reuters .",
        "Japan began the defence of their Asian Cup title with a win over Syria .",
    ]
    ws = Workspace.init(tmp_path / "ws")
    with connect(ws, database=str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE ex (content VARCHAR, label JSON)")
        con.executemany(
            "INSERT INTO ex VALUES (?, ?)",
            [
                ("Rafael Nadal beat Roger Federer in Madrid .", '{"person": "Rafael Nadal", "location": "Madrid"}'),
                ("The United Nations met in Geneva on Monday .", '{"person": null, "location": "Geneva"}'),
                ("Angela Merkel visited Paris .", '{"person": "Angela Merkel", "location": "Paris"}'),
            ],
        )
        con.execute("CREATE TABLE s (txt VARCHAR)")
        con.executemany("INSERT INTO s VALUES (?)", [(s,) for s in sentences])
        rows = con.execute(
            "SELECT txt, ai_extract(txt, ARRAY['person', 'location'], options => {'examples': 'ex'}) FROM s"
        ).fetchall()
    assert len(rows) == 3
    for text, value in rows:
        assert set(value) == {"person", "location"}
        assert all(v is None or occurs(v, text) for v in value.values()), (text, value)
    assert any(v is not None for _, value in rows for v in value.values())  # not all null
