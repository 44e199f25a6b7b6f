"""Guardrails: PII found by pattern (with checksums), masked or blocked on input and output, streams too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brickyard import ChatRequest, ChatResult, GuardrailError, InvalidRequestError, Workspace
from brickyard._errors import ServerError
from brickyard.config import EndpointConfig, GuardrailsConfig, PiiAction
from brickyard.models import _pii
from brickyard.models.base import Model
from brickyard.models.guardrails import Guard
from brickyard.models.testing import FakeModel, FunctionModel

POSITIVES = [
    ("email", "write to jane.doe+news@example.co.uk today"),
    ("email", "Contact: JOHN_SMITH99@Mail.Example.COM."),
    ("phone", "call +44 20 7946 0958 now"),
    ("phone", "+1 (415) 555-2671"),
    ("phone", "0044 20 7946 0958"),
    ("phone", "ring 020 7946 0958"),
    ("phone", "mobile 06 12 34 56 78"),
    ("phone", "(415) 555-2671"),
    ("phone", "415-555-2671"),
    ("phone", "+33612345678"),
    ("phone", "Tel. (0)30 1234567"),
    ("card", "4111 1111 1111 1111"),
    ("card", "card 4111-1111-1111-1111."),
    ("card", "5500005555555559"),
    ("card", "amex 378282246310005"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("iban", "FR1420041010050500013M02606"),
    ("iban", "pay to NL91ABNA0417164300 today"),
    ("national_id", "SSN 123-45-6789"),
    ("national_id", "NINO AB 12 34 56 C"),
    ("national_id", "AB123456D"),
    ("national_id", "NIR 1 85 05 78 006 084 91"),
    ("national_id", "DNI 12345678Z"),
    ("national_id", "NIE X1234567L"),
]

NEGATIVES = [
    "order 4111111111111112",  # Luhn fails
    "4111 1111 1111 1112",
    "GB82 WEST 1234 5698 7654 33",  # mod-97 fails
    "DE89370400440532013001",
    "on 2024-01-15 at 12:30",
    "version 1.2.3.4 and ip 192.168.100.1",
    "total 1,234,567.89 EUR",
    "customer id 1234567890",
    "SSN 000-12-3456",  # never issued
    "666-12-3456",
    "invoice 20240115",
    "call me at 5551234",
    "pi is 3.14159265358",
    "NIR 1 85 05 78 006 084 36",  # wrong key
    "12345678A",  # wrong DNI letter
    "user@localhost",
    "QQ 12 34 56 C",  # not a NINO prefix
    "tracking 1Z999AA10123456784",
    "ISBN 978-3-16-148410-0",
    "room 0 12",
]


@pytest.mark.parametrize(("kind", "text"), POSITIVES)
def test_each_kind_is_found_and_masked(kind: str, text: str) -> None:
    findings = _pii.find(text, _pii.KINDS)
    assert [f.kind for f in findings] == [kind]
    masked = _pii.mask(text, findings)
    assert _pii.MASKS[kind] in masked
    assert not _pii.find(masked, _pii.KINDS)  # nothing left to find


@pytest.mark.parametrize("text", NEGATIVES)
def test_lookalikes_are_left_alone(text: str) -> None:
    assert _pii.find(text, _pii.KINDS) == []


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1111 123",  # followed by a CVV
        "5555 5555 5555 4444 321",
        "pay 2 4111 1111 1111 1111",  # preceded by an amount
        "card 4111 1111 1111 1111 12 27",  # followed by an expiry
    ],
)
def test_a_card_next_to_other_digits_is_still_found(text: str) -> None:
    findings = _pii.find(text, _pii.KINDS)
    assert "card" in [f.kind for f in findings]
    masked = _pii.mask(text, findings)
    assert "[CARD]" in masked and "1111 1111" not in masked and "5555 4444" not in masked


def test_checksums() -> None:
    assert _pii.luhn_ok("4111111111111111") and not _pii.luhn_ok("4111111111111121")
    assert _pii.luhn_ok("79927398713") and not _pii.luhn_ok("79927398710")
    assert _pii.iban_ok("GB82WEST12345698765432")
    assert not _pii.iban_ok("GB82WEST12345698765433")  # checksum
    assert not _pii.iban_ok("GB82WEST1234569876543")  # too short for GB
    assert _pii.iban_ok("NO9386011117947")


def test_only_configured_kinds_and_overlaps() -> None:
    text = "mail a.b@example.com, card 4111 1111 1111 1111"
    assert [f.kind for f in _pii.find(text, ["card"])] == ["card"]
    assert [f.kind for f in _pii.find("x+4412345678@example.org", _pii.KINDS)] == ["email"]  # not a phone inside


def _workspace(tmp_path: Path, model: Model, guardrails: GuardrailsConfig, *, cache: bool = True) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    ws.registry.register("guarded", model, EndpointConfig(model="x:m", guardrails=guardrails, cache=cache))
    return ws


SECRET_TEXT = "I am jane@example.com, card 4111 1111 1111 1111, phone +44 20 7946 0958."


def test_input_mask_reaches_the_model_masked(tmp_path: Path) -> None:
    model = FunctionModel(lambda r: "noted")
    ws = _workspace(tmp_path, model, GuardrailsConfig(input_pii=PiiAction.mask))
    result = asyncio.run(ws.registry.get("guarded").complete(ChatRequest.from_prompt(SECRET_TEXT, system="be brief")))
    assert result.text == "noted"
    sent = model.calls[0].messages[-1]["content"]
    assert sent == "I am [EMAIL], card [CARD], phone [PHONE]."
    assert model.calls[0].messages[0]["content"] == "be brief"


def test_input_block_names_the_kinds_never_the_values(tmp_path: Path) -> None:
    model = FunctionModel(lambda r: "noted")
    ws = _workspace(tmp_path, model, GuardrailsConfig(input_pii=PiiAction.block))
    with pytest.raises(GuardrailError) as caught:
        asyncio.run(ws.registry.get("guarded").complete(ChatRequest.from_prompt(SECRET_TEXT)))
    err = caught.value
    assert isinstance(err, InvalidRequestError)
    assert (err.direction, err.kinds) == ("input", ["card", "email", "phone"])
    assert "jane@example.com" not in str(err) and "4111" not in str(err) and "7946" not in str(err)
    assert "guarded" in str(err) and "email address" in str(err)
    assert model.calls == []  # nothing left the gateway


def test_output_mask_and_block(tmp_path: Path) -> None:
    answer = "Reach her at jane@example.com or GB82 WEST 1234 5698 7654 32."
    masked = _workspace(tmp_path / "a", FunctionModel(lambda r: answer), GuardrailsConfig(output_pii=PiiAction.mask))
    result = asyncio.run(masked.registry.get("guarded").complete(ChatRequest.from_prompt("who?")))
    assert result.text == "Reach her at [EMAIL] or [IBAN]."

    blocked = _workspace(tmp_path / "b", FunctionModel(lambda r: answer), GuardrailsConfig(output_pii=PiiAction.block))
    with pytest.raises(GuardrailError) as caught:
        asyncio.run(blocked.registry.get("guarded").complete(ChatRequest.from_prompt("who?")))
    assert (caught.value.direction, caught.value.kinds) == ("output", ["email", "iban"])
    assert len(blocked.store.usage()) == 1  # the upstream call happened and is still charged


def test_input_mask_with_output_none_leaves_answers(tmp_path: Path) -> None:
    ws = _workspace(
        tmp_path, FunctionModel(lambda r: "mail me: bob@example.org"), GuardrailsConfig(input_pii=PiiAction.mask)
    )
    result = asyncio.run(ws.registry.get("guarded").complete(ChatRequest.from_prompt("hi")))
    assert result.text == "mail me: bob@example.org"


def test_blocked_keywords_whole_words_any_case_both_ways(tmp_path: Path) -> None:
    config = GuardrailsConfig(blocked_keywords=["password", "project x"])
    model = FunctionModel(lambda r: "the PASSWORD is hunter2" if "leak" in r.prompt_text() else "fine")
    ws = _workspace(tmp_path, model, config)
    stack = ws.registry.get("guarded")
    assert asyncio.run(stack.complete(ChatRequest.from_prompt("about passwords and projects"))).text == "fine"
    with pytest.raises(GuardrailError) as caught:
        asyncio.run(stack.complete(ChatRequest.from_prompt("Tell me about Project X.")))
    assert (caught.value.direction, caught.value.kinds) == ("input", ["keyword"])
    assert "Project X" not in str(caught.value)
    with pytest.raises(GuardrailError) as caught:
        asyncio.run(stack.complete(ChatRequest.from_prompt("leak it")))
    assert caught.value.direction == "output"


def test_json_answers_are_masked_inside_and_stay_json(tmp_path: Path) -> None:
    answer = {"name": "Jane", "email": "jane@example.com", "card": 4111111111111111, "n": 3}
    ws = _workspace(tmp_path, FunctionModel(lambda r: answer), GuardrailsConfig(output_pii=PiiAction.mask))
    request = ChatRequest.from_prompt("extract", json_schema={"type": "object"})
    result = asyncio.run(ws.registry.get("guarded").complete(request))
    expected = {"name": "Jane", "email": "[EMAIL]", "card": "[CARD]", "n": 3}
    assert result.json == expected
    assert json.loads(result.text) == expected


def test_tool_call_arguments_are_masked(tmp_path: Path) -> None:
    call = {"id": "1", "type": "function", "function": {"name": "send", "arguments": '{"to": "a@example.com"}'}}
    result = ChatResult(text="", model="m", tool_calls=[call])
    out = Guard(GuardrailsConfig(output_pii=PiiAction.mask), endpoint="e").check_result(result)
    assert out.tool_calls is not None and out.tool_calls[0]["function"]["arguments"] == '{"to": "[EMAIL]"}'


def test_cache_never_serves_an_unmasked_answer(tmp_path: Path) -> None:
    model = FunctionModel(lambda r: "her number is +44 20 7946 0958")
    ws = _workspace(tmp_path, model, GuardrailsConfig(output_pii=PiiAction.mask), cache=True)
    stack = ws.registry.get("guarded")
    first = asyncio.run(stack.complete(ChatRequest.from_prompt("number?")))
    second = asyncio.run(stack.complete(ChatRequest.from_prompt("number?")))
    assert len(model.calls) == 1 and second.cached
    assert first.text == second.text == "her number is [PHONE]"


def test_fallbacks_only_see_masked_input(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    backup = FunctionModel(lambda r: "from backup")
    ws.registry.register("backup", backup, EndpointConfig(model="x:b"))
    primary = FakeModel([ServerError("down", status=503)])
    guard = GuardrailsConfig(input_pii=PiiAction.mask)
    ws.registry.register(
        "primary", primary, EndpointConfig(model="x:p", guardrails=guard, fallbacks=["backup"], max_retries=0)
    )
    result = asyncio.run(ws.registry.get("primary").complete(ChatRequest.from_prompt("I am jane@example.com")))
    assert result.text == "from backup"
    assert backup.calls[0].messages[-1]["content"] == "I am [EMAIL]"


def test_embedding_inputs_are_masked(tmp_path: Path) -> None:
    seen: list[str] = []

    def embed(text: str) -> list[float]:
        seen.append(text)
        return [1.0, 0.0]

    model = FunctionModel(lambda r: "x", embed_fn=embed)
    ws = _workspace(tmp_path, model, GuardrailsConfig(input_pii=PiiAction.mask))
    asyncio.run(ws.registry.get("guarded").embed(["call 415-555-2671", "plain"]))
    assert seen == ["call [PHONE]", "plain"]


class Chunked(Model):
    """Streams a fixed answer in pieces of `size` characters."""

    def __init__(self, answer: str, size: int) -> None:
        self.answer, self.size = answer, size
        self.name = "chunked"

    async def _complete(self, request: ChatRequest) -> ChatResult:
        return ChatResult(text=self.answer, model=self.name)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str]:
        for i in range(0, len(self.answer), self.size):
            yield self.answer[i : i + self.size]


async def _collect(model: Model, request: ChatRequest, into: list[str]) -> None:
    async for piece in model.stream(request):
        into.append(piece)


LONG_ANSWER = (
    "Sure. " + "Some filler text here. " * 8 + "Her email is jane.doe@example.com and her card is 4111 1111 1111 1111; "
    "the IBAN GB82 WEST 1234 5698 7654 32 and phone +44 20 7946 0958. " + "More words. " * 5 + "Last: bob@example.org"
)


@pytest.mark.parametrize("size", [1, 3, 7, 50, 1000])
def test_streamed_output_is_masked_across_chunk_boundaries(tmp_path: Path, size: int) -> None:
    ws = _workspace(tmp_path, Chunked(LONG_ANSWER, size), GuardrailsConfig(output_pii=PiiAction.mask))
    pieces: list[str] = []
    asyncio.run(_collect(ws.registry.get("guarded"), ChatRequest.from_prompt("go"), pieces))
    expected = _pii.mask(LONG_ANSWER, _pii.find(LONG_ANSWER, _pii.KINDS))
    assert "".join(pieces) == expected
    assert expected.count("[") == 5
    if size < 50:
        assert len(pieces) > 1  # still streamed, not one block at the end


def test_streamed_output_block_stops_before_the_value_is_sent(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, Chunked(LONG_ANSWER, 4), GuardrailsConfig(output_pii=PiiAction.block))
    pieces: list[str] = []
    with pytest.raises(GuardrailError) as caught:
        asyncio.run(_collect(ws.registry.get("guarded"), ChatRequest.from_prompt("go"), pieces))
    assert caught.value.kinds == ["email"]
    sent = "".join(pieces)
    assert LONG_ANSWER.startswith(sent) and "jane" not in sent and "@" not in sent
    [record] = ws.store.usage()  # the upstream stream was closed and charged for what it sent
    assert record.status == "error" and record.output_tokens > 0 and record.cost_usd >= 0


def test_streams_without_output_checks_pass_through(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, Chunked("a@example.com", 2), GuardrailsConfig(input_pii=PiiAction.mask))
    pieces: list[str] = []
    asyncio.run(_collect(ws.registry.get("guarded"), ChatRequest.from_prompt("go"), pieces))
    assert pieces == ["a@", "ex", "am", "pl", "e.", "co", "m"]


def test_guardrails_config_from_toml(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(
        '[endpoints.g]\nmodel = "fake:g"\noptions = { answers = ["id 123-45-6789"] }\n'
        '[endpoints.g.guardrails]\noutput_pii = "mask"\npii_kinds = ["national_id"]\n',
        encoding="utf-8",
    )
    ws = Workspace(ws.path)
    result = asyncio.run(ws.registry.get("g").complete(ChatRequest.from_prompt("id?")))
    assert result.text == "id [NATIONAL_ID]"
