"""Classification and filters by scoring: label probabilities from log-probabilities, calibrated.

Scripted models return `ChatResult(logprobs=[TokenLogprob(...)])`, so every figure is exact; one small
test runs the bundled SmolLM2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from brickyard.functions import _scoring
from brickyard.functions.classify import classify
from brickyard.functions.filter_agg import filter_
from brickyard.models._types import ChatRequest, ChatResult, TokenLogprob
from brickyard.models.testing import FunctionModel
from brickyard.workspace import Workspace

BIAS = (4.0, 1.0)
"""The scripted model prefers `positive` by this factor, whatever the text."""


def row_text(request: ChatRequest) -> str:
    return str(request.messages[-2 if request.messages[-1]["role"] == "assistant" else -1]["content"])


def content(text: str) -> tuple[float, float]:
    """What the text says, as (positive, negative): the model's view before its bias."""
    if "good" in text:
        return 0.7, 0.3
    if "bad" in text:
        return 0.3, 0.7
    return 0.5, 0.5  # content-free


def scored_answer(top: dict[str, float], first: str | None = None) -> ChatResult:
    logprobs = {token: math.log(p) for token, p in top.items()}
    token = first or max(logprobs, key=lambda t: logprobs[t])
    return ChatResult(text=token, model="scripted", logprobs=[TokenLogprob(token, logprobs[token], logprobs)])


def biased(request: ChatRequest) -> Any:
    """A model with log-probabilities and a constant bias toward `positive`; generates `positive` too."""
    if not request.logprobs:
        return {"label": "positive"}
    pos, neg = content(row_text(request))
    pos, neg = pos * BIAS[0], neg * BIAS[1]
    total = (pos + neg) / 0.8  # the labels hold 80% of the mass; the rest goes to an unrelated token
    return scored_answer({" Positive": pos / total, "negative": neg / total, "The": 0.2})


def scoring_model(fn: Any) -> FunctionModel:
    model = FunctionModel(fn)
    model.supports_logprobs = model.supports_grammar = True  # as llama.cpp
    return model


TEXTS = ["a good film", "a bad film", None, "so good", "so bad"]


async def test_calibration_removes_a_constant_bias() -> None:
    model = scoring_model(biased)
    raw = await classify(TEXTS, ["positive", "negative"], model, progress=False, calibrate=False, scoring=True)
    assert raw.values == ["positive", "positive", None, "positive", "positive"]  # the bias decides
    assert raw.mechanisms == ["scored-uncalibrated", "scored-uncalibrated", None] + ["scored-uncalibrated"] * 2

    model = scoring_model(biased)
    calibrated = await classify(TEXTS, ["positive", "negative"], model, progress=False, scoring=True)
    assert calibrated.values == ["positive", "negative", None, "positive", "negative"]  # the content decides
    assert calibrated.mechanisms == ["scored", "scored", None, "scored", "scored"]
    assert calibrated.prior == pytest.approx({"positive": 0.8, "negative": 0.2})
    assert calibrated.confidences[0] == pytest.approx(0.7) and calibrated.confidences[1] == pytest.approx(0.7)
    assert calibrated.probabilities[1] == pytest.approx({"positive": 0.3, "negative": 0.7})
    assert calibrated.errors == [None] * 5 and calibrated.notes == [None] * 5
    # 4 rows + 3 content-free inputs, each one token with its alternatives after the answer prefix
    assert len(model.calls) == 4 + len(_scoring.CONTENT_FREE)
    assert all(r.max_tokens == 1 and r.logprobs and r.extra["top_logprobs"] == 400 for r in model.calls)
    assert all(r.messages[-1] == {"role": "assistant", "content": "Label:"} for r in model.calls)
    assert {row_text(r) for r in model.calls[4:]} == {
        "<text>\nN/A\n</text>",
        "<text>\n\n</text>",
        "<text>\n[MASK]\n</text>",
    }


def test_a_label_missing_from_the_alternatives_gets_a_floor() -> None:
    result = scored_answer({" fresh": 0.5, "The": 0.2, "A": 0.1})
    scored = _scoring.score(result, ["fresh", "rotten"])
    assert scored.probabilities == pytest.approx((0.5 / 0.55, 0.05 / 0.55))  # floor: half the smallest listed


def test_tokens_match_labels_ignoring_case_and_spaces() -> None:
    result = scored_answer({" Fresh": 0.3, "fresh": 0.1, "FR": 0.1, " rot": 0.2, "R": 0.05, "x": 0.01})
    scored = _scoring.score(result, ["fresh", "rotten"])
    # "R" is a single letter (an answer-letter habit, not a label start): it does not count
    assert scored.probabilities == pytest.approx((0.5 / 0.7, 0.2 / 0.7))


def test_unscorable_label_sets() -> None:
    assert _scoring.unscorable(["fresh", "rotten"], logprobs=True) is None
    assert "log-probabilities" in str(_scoring.unscorable(["a", "b"], logprobs=False))
    assert "begin alike" in str(_scoring.unscorable(["not spam", "not sure"], logprobs=True))
    assert "begin alike" in str(_scoring.unscorable(["pos", "positive"], logprobs=True))
    assert "more than 20" in str(_scoring.unscorable([f"label{i}" for i in range(21)], logprobs=True))


def generating(label: str) -> Any:
    def answer(request: ChatRequest) -> Any:
        if request.logprobs:
            return scored_answer({" ap": 0.6, "The": 0.3})  # a first token shared by both labels
        return {"label": label}

    return answer


@pytest.mark.parametrize(
    ("labels", "note"),
    [
        (["not spam", "not sure"], "generated: labels 'not spam' and 'not sure' begin alike"),
        ([f"topic {i}" for i in range(30)], "generated: more than 20 labels"),
        (["apple", "apricot"], f"generated: {_scoring.AMBIGUOUS}"),  # found at run time: both start " ap"
    ],
)
async def test_label_sets_that_cannot_be_scored_are_generated_with_a_note(labels: list[str], note: str) -> None:
    model = scoring_model(generating(labels[1]))
    outcome = await classify(["one", None, "two"], labels, model, progress=False, scoring=True)
    assert outcome.values == [labels[1], None, labels[1]] and outcome.errors == [None] * 3
    assert outcome.mechanisms == ["generated", None, "generated"]
    assert outcome.notes == [note, None, note]


async def test_a_row_whose_labels_are_not_among_the_alternatives_is_generated() -> None:
    def answer(request: ChatRequest) -> Any:
        if not request.logprobs:
            return {"label": "rotten"}
        if "odd" in row_text(request):
            return scored_answer({"The": 0.5, "A": 0.2})
        return scored_answer({" fresh": 0.5, " rotten": 0.25})

    outcome = await classify(["fine", "odd"], ["fresh", "rotten"], scoring_model(answer), progress=False, scoring=True)
    assert outcome.values == ["fresh", "rotten"]
    assert outcome.mechanisms == ["scored", "generated"]
    assert outcome.notes == [None, f"generated: {_scoring.NOT_IN_TOP}"]


async def test_a_model_without_logprobs_generates_and_says_so() -> None:
    outcome = await classify(
        ["x"], ["fresh", "rotten"], FunctionModel(lambda r: {"label": "fresh"}), progress=False, scoring=True
    )
    assert outcome.values == ["fresh"] and outcome.mechanisms == ["generated"]
    assert outcome.notes == ["generated: the model reports no log-probabilities"]
    logprobs_only = FunctionModel(lambda r: {"label": "fresh"})
    logprobs_only.supports_logprobs = True  # e.g. a remote endpoint: no answer prefix, 20 alternatives at most
    remote = await classify(["x"], ["fresh", "rotten"], logprobs_only, progress=False, scoring=True)
    assert remote.notes == ["generated: label scoring runs on llama.cpp endpoints only"]
    forced = await classify(["x"], ["fresh", "rotten"], scoring_model(lambda r: {"label": "fresh"}), scoring=False)
    assert forced.mechanisms == ["generated"] and forced.notes == [None]


async def test_filter_is_a_calibrated_yes_no_scoring() -> None:
    def answer(request: ChatRequest) -> Any:
        yes, no = content(row_text(request))
        return scored_answer({"Yes": yes * 0.9, " no": no * 0.1})  # a model that nearly always says yes

    model = scoring_model(answer)
    kept = await filter_("is positive", TEXTS, model, progress=False, scoring=True)
    assert kept.values == [True, False, None, True, False]
    assert kept.confidences[0] == pytest.approx(0.7)
    assert "Answer yes if" in str(model.calls[0].messages[0]["content"])


@pytest.mark.local_model
async def test_smollm2_scores_mixed_reviews_into_both_labels(tmp_path: Path, smollm2_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.path / "brickyard.toml").write_text(f'[local]\nmodels_dir = "{smollm2_path.parent}"\nparallel = 2\n')
    ws = Workspace(ws.path)
    texts = [
        "A joyous, moving film, one of the best of the year.",
        "Dull, lifeless and far too long.",
        "A delight from start to finish.",
        "A tedious mess with no redeeming qualities.",
        "Brilliant performances and a gorgeous score.",
        "Boring. I walked out halfway through.",
        "Funny, warm and wise.",
        "The worst film I have seen in years.",
        None,
        "A triumph.",
        "Awful script, wooden acting.",
    ]
    try:
        # labels the model knows the meaning of: with ARRAY['fresh', 'rotten'] SmolLM2's scores rank the rows
        # but its content-free prior (≈ 0.99 fresh) is more extreme than any review, so every row gets rotten
        outcome = await classify(texts, ["positive", "negative"], ws.model("smollm2"), progress=False, scoring=True)
    finally:
        await ws.aclose()
    answered = [v for v in outcome.values if v is not None]
    assert len(answered) == 10 and outcome.values[8] is None and set(answered) <= {"positive", "negative"}
    assert len(set(answered)) == 2  # not the same label for every row
    assert outcome.prior is not None and set(outcome.prior) == {"positive", "negative"}
    for value, mechanism, confidence in zip(outcome.values, outcome.mechanisms, outcome.confidences, strict=True):
        if mechanism in ("scored", "scored-uncalibrated"):
            assert value is not None and confidence is not None and 0.5 <= confidence <= 1.0
