"""`ai_extract` copies instead of inventing: values checked against the text, typed, de-duplicated, bounded."""

from __future__ import annotations

from typing import Any

import pytest

from brickyard import FunctionModel
from brickyard.functions import extract
from brickyard.functions._grounding import bounded_schema, ground, normalise, occurs, output_budget
from brickyard.models._types import ChatRequest

EMAIL = (
    "Payment received. Mercury Technologies Inc. paid USD 12,450.00 on 03/11/2026 for invoice 88. "
    "The transfer was approved: yes."
)


def answering(answer: dict[str, Any], seen: list[ChatRequest] | None = None) -> FunctionModel:
    def fn(request: ChatRequest) -> dict[str, Any]:
        if seen is not None:
            seen.append(request)
        return answer

    return FunctionModel(fn)


def test_normalising_compares_case_spacing_separators_and_currency() -> None:
    assert normalise("  USD 12,450.00 ") == "12450.00"
    assert occurs("mercury  technologies inc", EMAIL) and occurs("$12450.00", EMAIL)
    assert not occurs("Mercury Technologies Inc. (MCTS)", EMAIL)


async def test_values_not_in_the_text_are_null_with_the_reason_noted() -> None:
    model = answering({"payee": "Mercury Technologies Inc. (MCTS) (MCTS) (MCTS)", "amount_paid": "12,450.00"})
    outcome = await extract([EMAIL], ["payee", "amount_paid"], model)
    assert outcome.values == [{"payee": None, "amount_paid": "12,450.00"}]
    assert outcome.notes[0] is not None and "payee" in outcome.notes[0] and "not in the text" in outcome.notes[0]
    assert outcome.errors == [None]


async def test_typed_fields_are_parsed_and_validated() -> None:
    schema = {
        "type": "object",
        "properties": {
            "amount": {"type": "number"},
            "invoice": {"type": "integer"},
            "paid_on": {"type": "string", "format": "date"},
            "approved": {"type": "boolean"},
            "currency": {"type": "string", "enum": ["USD", "EUR"]},
            "payer": {"type": ["string", "null"]},
            "made_up": {"type": "integer"},
        },
    }
    answer = {
        "amount": "USD 12,450.00",
        "invoice": 88,
        "paid_on": "03/11/2026",
        "approved": "yes",
        "currency": "usd",
        "payer": "mercury technologies inc.",
        "made_up": 4242,
    }
    outcome = await extract([EMAIL], schema, answering(answer))
    assert outcome.values[0] == {
        "amount": 12450,
        "invoice": 88,
        "paid_on": "2026-11-03",
        "approved": True,
        "currency": "USD",
        "payer": "mercury technologies inc.",
        "made_up": None,
    }
    assert "made_up" in (outcome.notes[0] or "")


async def test_arrays_lose_duplicates_and_invented_items() -> None:
    schema = {"type": "object", "properties": {"persons": {"type": "array", "items": {"type": "string"}}}}
    text = "Soccer: Ronaldo and Messi met Ronaldo's coach in Lisbon."
    answer = {"persons": ["Ronaldo", "Messi", "Ronaldo", "ronaldo", "Soccer Star", "Messi"]}
    outcome = await extract([text], schema, answering(answer))
    assert outcome.values[0] == {"persons": ["Ronaldo", "Messi"]}


async def test_each_row_is_bounded_by_its_text_and_local_models_get_anti_repetition() -> None:
    seen: list[ChatRequest] = []
    model = answering({"person": None}, seen)
    model.supports_grammar = True  # as the local llama.cpp provider
    texts = ["Ada wrote.", "A much longer sentence about Grace Hopper and the first compiler in 1952."]
    await extract(texts, ["person"], model)
    short, long = (r.json_schema["properties"]["person"]["maxLength"] for r in seen)  # type: ignore[index]
    assert short == max(8, len(texts[0])) and long == len(texts[1])
    assert seen[0].max_tokens is not None and seen[0].max_tokens < seen[1].max_tokens  # type: ignore[operator]
    assert all(r.extra.get("dry_multiplier") for r in seen)
    plain: list[ChatRequest] = []
    await extract(["Ada wrote."], ["person"], answering({"person": "Ada"}, plain))  # a remote model: no sampler keys
    assert "dry_multiplier" not in plain[0].extra


def test_array_bounds_follow_the_number_of_words() -> None:
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}
    bounded = bounded_schema(schema, "three short words")
    assert bounded["properties"]["tags"]["maxItems"] == 3
    assert 32 <= output_budget(bounded) <= 2048


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        ("12.5", {"type": "number"}, None),  # not in the text
        ("maybe", {"type": "boolean"}, None),
        ("tomorrow", {"type": "string", "format": "date"}, None),
        ("GBP", {"type": "string", "enum": ["USD", "EUR"]}, None),
        ("88", {"type": "integer"}, 88),
    ],
)
def test_invalid_typed_values_are_dropped(value: str, schema: dict[str, Any], expected: Any) -> None:
    dropped: dict[str, str] = {}
    assert ground(value, schema, EMAIL, "f", dropped) == expected
    assert ("f" in dropped) == (expected is None)


async def test_typed_labels_name_their_sql_type_in_capitals() -> None:
    seen: list[ChatRequest] = []
    model = answering({"amount_paid": "USD 12,450.00", "paid_on": "03/11/2026", "due date": "03/11/2026"}, seen)
    outcome = await extract([EMAIL], ["amount_paid DOUBLE", "paid_on DATE", "due date"], model)
    assert outcome.values == [{"amount_paid": 12450, "paid_on": "2026-11-03", "due date": "03/11/2026"}]
    properties = seen[0].json_schema["properties"]  # type: ignore[index]
    assert properties["amount_paid"]["type"] == ["number", "null"] and properties["paid_on"]["format"] == "date"
    assert properties["due date"]["type"] == ["string", "null"]  # a lower-case last word is part of the name


def test_typed_labels_give_a_typed_struct_in_sql_on_the_default_endpoint(tmp_path: Any) -> None:
    """Real SmolLM2 through DuckDB: the STRUCT's fields have the labels' types; values come from the text or NULL."""
    from brickyard import Workspace
    from brickyard.sql.duckdb import connect

    ws = Workspace.init(tmp_path / "ws")
    with connect(ws, database=":memory:") as con:
        con.execute("CREATE TABLE mails (txt VARCHAR)")
        con.execute("INSERT INTO mails VALUES (?), (NULL)", [EMAIL])
        relation = con.sql(
            "SELECT ai_extract(txt, ARRAY['amount_paid DOUBLE', 'paid_on DATE', 'payee']) AS e FROM mails"
        )
        assert str(relation.types[0]) == "STRUCT(amount_paid DOUBLE, paid_on DATE, payee VARCHAR)"
        first, second = relation.fetchall()
    assert second == (None,)
    value = first[0]
    assert value["amount_paid"] is None or value["amount_paid"] in (12450.0, 88.0, 2026.0, 3.0, 11.0)
    assert value["payee"] is None or occurs(value["payee"], EMAIL)
