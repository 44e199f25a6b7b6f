"""Cascades: routing by the proxy's confidence, tuning the threshold on data, the embedding classifier as a
proxy, configuration, deployment and the CLI. Exact behaviour from test doubles; one real-model shape check."""

from __future__ import annotations

import json
import math
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from brickyard import ChatRequest, ChatResult, ConfigError, FakeModel, FunctionModel, UserError, Workspace
from brickyard._errors import InvalidRequestError
from brickyard.agents.runner import Agents
from brickyard.agents.spec import AgentKind, AgentSpec
from brickyard.config import Confidence, EndpointConfig, parse_settings
from brickyard.datasets import rotten_tomatoes
from brickyard.evals._types import Case
from brickyard.evals.cascade import tune_cascade
from brickyard.evals.cascade_deploy import deploy_cascade, save_proxy_classifier
from brickyard.evals.cli_cascade import register
from brickyard.evals.datasets import EvalDatasets
from brickyard.functions import classify, classify_requests
from brickyard.functions._rows import delimited
from brickyard.models import catalog
from brickyard.models._types import TokenLogprob, Usage
from brickyard.models.cascade import CascadeModel, ConfidenceModel, data_text, label_confidence, request_labels
from brickyard.models.classifier import ClassifierModel, ClassifierWeights, fit_classifier
from brickyard.models.metering import Price
from brickyard.sql.duckdb import connect

LABELS = ["pos", "neg"]


# -- a proxy and a strong model with known confidence and accuracy --------------------------------------
@dataclass(frozen=True)
class Row:
    text: str
    gold: str
    confidence: float
    proxy_right: bool
    strong_right: bool


def synthetic_rows(n: int, seed: int = 7) -> list[Row]:
    """60% of rows the proxy is sure of (confidence ≥ 0.8, right 95%), 40% unsure (< 0.8, right 50%);
    the strong model is right 98% everywhere."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sure = rng.random() < 0.6
        confidence = round(rng.uniform(0.8, 1.0) if sure else rng.uniform(0.5, 0.7999), 4)
        rows.append(
            Row(
                f"review {i}",
                rng.choice(LABELS),
                confidence,
                rng.random() < (0.95 if sure else 0.5),
                rng.random() < 0.98,
            )
        )
    return rows


def other(label: str) -> str:
    return LABELS[1 - LABELS.index(label)]


class Scripted:
    """The proxy and strong answer functions over a table of rows (keyed by the data text)."""

    def __init__(self, rows: list[Row]) -> None:
        self.by_text = {r.text: r for r in rows}

    def proxy(self, request: ChatRequest) -> ChatResult:
        row = self.by_text[data_text(request)]
        label = row.gold if row.proxy_right else other(row.gold)
        return ChatResult(
            text=json.dumps({"label": label}), model="proxy", json={"label": label}, usage=Usage(100, 2),
            confidence=row.confidence,
        )  # fmt: skip

    def strong(self, request: ChatRequest) -> dict[str, str]:
        row = self.by_text[data_text(request)]
        return {"label": row.gold if row.strong_right else other(row.gold)}


def cases_of(rows: list[Row]) -> list[Case]:
    return [Case(id=r.text, input=r.text, expected=r.gold) for r in rows]


async def test_a_tuned_cascade_meets_its_target_on_test_and_defers_the_unsure_rows() -> None:
    rows = synthetic_rows(800)
    dev, test = rows[:400], rows[400:]
    script = Scripted(rows)
    proxy = FunctionModel(script.proxy, name="function:proxy")
    strong = FunctionModel(script.strong, name="function:strong")
    prices = (Price(0.1, 0.1), Price(10.0, 40.0))

    report = await tune_cascade(
        cases_of(dev), cases_of(test), LABELS, proxy, strong, target=0.95, confidence=Confidence.score, prices=prices
    )

    assert report.met_target
    assert 0.5 < report.threshold < 0.8  # defers the unsure rows it must, keeps every sure one
    share = sum(1 for r in test if r.confidence < report.threshold) / len(test)
    assert report.test["cascade"].deferred == pytest.approx(share)
    assert report.test["cascade"].strong_calls == round(share * len(test))
    unsure = sum(1 for r in test if r.confidence < 0.8) / len(test)
    assert 0.8 * unsure <= share <= unsure  # to reach 95% of 0.98 it must defer most (≥ 84%) of the unsure rows
    cascade, alone, cheap = report.test["cascade"], report.test["strong"], report.test["proxy"]
    assert cascade.accuracy >= 0.95 * alone.accuracy
    assert cheap.accuracy < 0.95 * alone.accuracy  # the proxy alone would not do
    assert cascade.low <= cascade.accuracy <= cascade.high
    assert cheap.cost_usd < cascade.cost_usd < 0.5 * alone.cost_usd
    assert [p.threshold for p in report.curve] == sorted(p.threshold for p in report.curve)
    assert "meets the target" in report.summary()

    # The deployed CascadeModel at the chosen threshold routes exactly the rows the report counted.
    strong.calls.clear()
    cascade_model = CascadeModel(proxy, strong, report.threshold, confidence=Confidence.score)
    outcome = await classify([r.text for r in test], LABELS, cascade_model)
    assert len(strong.calls) == cascade.strong_calls
    right = sum(1 for r, v in zip(test, outcome.values, strict=True) if v == r.gold)
    assert right / len(test) == pytest.approx(cascade.accuracy)


async def test_without_a_safety_margin_the_threshold_is_the_cheapest_that_reaches_the_target_on_dev() -> None:
    rows = synthetic_rows(800)
    script = Scripted(rows)
    proxy, strong = FunctionModel(script.proxy), FunctionModel(script.strong)
    exact = await tune_cascade(cases_of(rows[:400]), cases_of(rows[400:]), LABELS, proxy, strong, safety_se=0.0)
    safe = await tune_cascade(cases_of(rows[:400]), cases_of(rows[400:]), LABELS, proxy, strong, safety_se=2.0)
    assert exact.dev_cascade_accuracy >= 0.95 * exact.dev_strong_accuracy
    lower = [p for p in exact.curve if p.threshold < exact.threshold]
    assert all(p.accuracy < 0.95 * exact.dev_strong_accuracy for p in lower)
    assert safe.threshold > exact.threshold and safe.dev_deferred > exact.dev_deferred


async def test_tuning_refuses_unlabelled_or_foreign_cases() -> None:
    model = FakeModel(['{"label": "pos"}'])
    with pytest.raises(UserError, match="no expected label"):
        await tune_cascade([Case("1", "x")], [Case("2", "y", "pos")], LABELS, model, model)
    with pytest.raises(UserError, match="outside"):
        await tune_cascade([Case("1", "x", "maybe")], [Case("2", "y", "pos")], LABELS, model, model)
    with pytest.raises(UserError, match="target"):
        await tune_cascade([Case("1", "x", "pos")], [Case("2", "y", "pos")], LABELS, model, model, target=1.5)


# -- routing ---------------------------------------------------------------------------------------------
def confident(table: dict[str, float | Exception]) -> FunctionModel:
    def answer(request: ChatRequest) -> ChatResult:
        value = table[data_text(request)]
        if isinstance(value, Exception):
            raise value
        return ChatResult(
            text='{"label": "pos"}',
            model="p",
            json={"label": "pos"},
            confidence=value,
            endpoint="cheap",
            cost_usd=0.001,
        )

    return FunctionModel(answer, name="function:proxy")


async def test_cascade_model_routes_each_row_by_the_proxy_confidence() -> None:
    proxy = confident({"sure": 0.9, "edge": 0.5, "unsure": 0.3, "broken": InvalidRequestError("proxy cannot")})

    def strong_answer(request: ChatRequest) -> ChatResult:
        return ChatResult(text='{"label": "neg"}', model="s", json={"label": "neg"}, endpoint="big", cost_usd=0.01)

    strong = FunctionModel(strong_answer, name="function:strong")
    cascade = CascadeModel(proxy, strong, 0.5, name="sentiment", confidence=Confidence.score)

    outcome = await classify(["sure", "edge", "unsure", "broken", None], LABELS, cascade)

    assert outcome.values == ["pos", "pos", "neg", "neg", None]
    assert sorted(data_text(r) for r in strong.calls) == ["broken", "unsure"]
    served = dict(zip(["sure", "edge", "unsure", "broken"], outcome.reports[0].results, strict=True))
    assert served["sure"].endpoint == "cheap" and served["sure"].confidence == 0.9
    assert served["unsure"].endpoint == "big" and served["unsure"].confidence == 0.3
    assert served["unsure"].cost_usd == pytest.approx(0.011)  # both calls
    assert served["broken"].endpoint == "big" and served["broken"].confidence is None
    with pytest.raises(UserError, match=r"threshold 1.2 is not in \[0, 1\]"):
        CascadeModel(proxy, strong, 1.2)


async def test_a_sure_answer_that_names_no_label_is_deferred() -> None:
    proxy = FunctionModel(
        lambda r: ChatResult(text='{"label": "maybe"}', model="p", json={"label": "maybe"}, confidence=1.0)
    )
    strong = FakeModel(['{"label": "neg"}'])
    outcome = await classify(["x"], LABELS, CascadeModel(proxy, strong, 0.5, confidence=Confidence.score))
    assert outcome.values == ["neg"] and len(strong.calls) == 1


async def test_capabilities_are_those_both_models_share() -> None:
    grammar_model = FakeModel(["pos"])
    grammar_model.supports_grammar = True
    json_only = FakeModel(['{"label": "pos"}'])
    both = CascadeModel(grammar_model, grammar_model, 0.5)
    mixed = CascadeModel(grammar_model, json_only, 0.5)
    assert both.supports_grammar and not mixed.supports_grammar and mixed.supports_json_schema
    request = classify_requests(["x"], LABELS, model=both)[0]
    assert request is not None and request.extra["grammar"] and request_labels(request) == LABELS
    request = classify_requests(["x"], LABELS, model=mixed)[0]
    assert request is not None and "grammar" not in request.extra and request_labels(request) == LABELS


async def test_a_json_proxy_before_a_grammar_model_keeps_the_grammar_for_the_strong_model() -> None:
    proxy = confident({"sure": 0.9, "unsure": 0.2})
    strong = FakeModel(["neg"])
    strong.supports_grammar = True
    cascade = CascadeModel(proxy, strong, 0.5, confidence=Confidence.score)
    assert cascade.supports_grammar

    outcome = await classify(["sure", "unsure"], LABELS, cascade)

    assert outcome.values == ["pos", "neg"]
    assert all("grammar" not in r.extra and r.json_schema and request_labels(r) == LABELS for r in proxy.calls)
    assert all((r.max_tokens or 0) > 1 for r in proxy.calls)  # room for the JSON answer
    assert [data_text(r) for r in strong.calls] == ["unsure"] and strong.calls[0].extra["grammar"]
    served = outcome.reports[0].results[0]
    assert served is not None and served.text == "pos" and served.json is None  # answered as the grammar asked


# -- confidence from log-probabilities and from samples ----------------------------------------------------
def tokens(*pieces: tuple[str, float, dict[str, float]]) -> list[TokenLogprob]:
    return [TokenLogprob(token, logprob, top) for token, logprob, top in pieces]


def test_label_confidence_normalises_over_the_label_alternatives() -> None:
    ln = math.log
    json_answer = ChatResult(
        text='{"label": "fresh"}',
        model="m",
        json={"label": "fresh"},
        logprobs=tokens(
            ('{"', 0.0, {}),
            ("label", 0.0, {}),
            ('":', 0.0, {}),
            (' "', 0.0, {}),
            ("fresh", ln(0.6), {"fresh": ln(0.6), "rot": ln(0.3), "the": ln(0.1)}),
            ('"}', 0.0, {}),
        ),
    )
    assert label_confidence(json_answer, ["fresh", "rotten"]) == pytest.approx(0.6 / 0.9)
    # a grammar-constrained one-token answer with the labels among the alternatives
    short = ChatResult(text="f", model="m", logprobs=tokens(("f", ln(0.7), {"f": ln(0.7), "r": ln(0.2), "x": ln(0.1)})))
    assert label_confidence(short, ["fresh", "rotten"]) == pytest.approx(0.7 / 0.9)
    # llama.cpp reports the distribution before the grammar: no label among the alternatives → unknown
    before_grammar = ChatResult(text="f", model="m", logprobs=tokens(("f", -7.6, {"The": -1.7, "This": -1.9})))
    assert label_confidence(before_grammar, ["fresh", "rotten"]) is None


async def test_auto_confidence_falls_back_to_the_agreement_of_samples() -> None:
    by_seed = {None: "f", 1: "f", 2: "r", 3: "f", 4: "f", 5: "r"}

    def answer(request: ChatRequest) -> ChatResult:
        text = by_seed[request.seed]
        logprobs = tokens((text, -7.6, {"The": -1.7})) if request.logprobs else None
        return ChatResult(text=text, model="m", finish_reason="length", logprobs=logprobs, cost_usd=0.5)

    proxy = FunctionModel(answer)
    proxy.supports_logprobs = True
    request = ChatRequest.from_prompt(delimited("a review"), extra={"grammar": 'root ::= "fresh" | "rotten"'})

    result = await ConfidenceModel(proxy, samples=5).complete(request)

    assert result.confidence == pytest.approx(3 / 5)
    assert result.cost_usd == pytest.approx(0.5 * 6)  # the answer and its five samples
    assert [r.temperature for r in proxy.calls[1:]] == [1.0] * 5
    assert sorted(r.seed for r in proxy.calls[1:] if r.seed is not None) == [1, 2, 3, 4, 5]


# -- configuration and the registry ---------------------------------------------------------------------
CASCADE_CONFIG = """
[endpoints.cheap]
model = "fake:cheap"

[endpoints.big]
model = "fake:big"

[endpoints.sentiment]
cascade = { proxy = "cheap", strong = "big", threshold = 0.8 }

[functions]
ai_classify = "sentiment"
"""


def test_cascade_config_parses_and_names_bad_keys() -> None:
    settings = parse_settings(tomllib.loads(CASCADE_CONFIG), "brickyard.toml")
    cascade = settings.endpoints["sentiment"].cascade
    assert cascade is not None and (cascade.proxy, cascade.strong, cascade.threshold) == ("cheap", "big", 0.8)
    assert cascade.confidence is Confidence.auto
    bad = [
        ("threshold = 1.5", "endpoints.sentiment.cascade.threshold"),
        ('threshold = 0.8, confidence = "vibes"', "endpoints.sentiment.cascade.confidence"),
        ("thresold = 0.8", "endpoints.sentiment.cascade"),
    ]
    for options, key in bad:
        text = CASCADE_CONFIG.replace("threshold = 0.8", options)
        with pytest.raises(ConfigError) as caught:
            parse_settings(tomllib.loads(text), "brickyard.toml")
        assert caught.value.key.startswith(key)
    with pytest.raises(ConfigError, match=r"`nope`") as caught:
        parse_settings(tomllib.loads(CASCADE_CONFIG.replace('proxy = "cheap"', 'proxy = "nope"')), "f")
    assert caught.value.key == "endpoints.sentiment.cascade"
    both = CASCADE_CONFIG.replace("[endpoints.sentiment]\n", '[endpoints.sentiment]\nmodel = "fake:x"\n')
    with pytest.raises(ConfigError, match="exactly one of `model`, `split` or `cascade`"):
        parse_settings(tomllib.loads(both), "f")


def cascade_workspace(tmp_path: Path, proxy: FunctionModel, strong: FunctionModel) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(CASCADE_CONFIG)
    ws = Workspace(ws.path)
    ws.registry.register("cheap", proxy, EndpointConfig(model="function:cheap", max_retries=0))
    ws.registry.register("big", strong, EndpointConfig(model="function:big", max_retries=0, price_input_per_1m=5.0))
    return ws


async def test_the_registry_builds_a_cascade_usable_from_sql_and_by_an_agent(tmp_path: Path) -> None:
    proxy = confident({"great film": 0.95, "odd film": 0.4})
    strong = FunctionModel(lambda request: {"label": "neg"}, name="function:big")
    ws = cascade_workspace(tmp_path, proxy, strong)
    model = ws.registry.get("sentiment")
    assert "CascadeModel" in repr(model) and ws.registry.readiness("sentiment") is None
    assert ws.registry.price("sentiment") == Price(5.0, 0.0)  # an estimate's upper bound: both models answer

    con = connect(ws)
    try:
        con.execute("CREATE TABLE reviews AS SELECT * FROM (VALUES ('great film'), ('odd film')) t(txt)")
        got = con.sql("SELECT txt, ai_classify(txt, ARRAY['pos', 'neg']) FROM reviews ORDER BY txt").fetchall()
    finally:
        con.close()
    assert got == [("great film", "pos"), ("odd film", "neg")]
    assert [data_text(r) for r in strong.calls] == ["odd film"]

    agents = Agents(ws)
    agents.create(AgentSpec(name="reviews", kind=AgentKind.classify, labels=LABELS, endpoint="sentiment"))
    run = await agents.run("reviews", "great film")
    assert run.output == "pos"
    agents.close()
    await ws.aclose()


# -- the embedding classifier as a proxy ----------------------------------------------------------------
@pytest.fixture(scope="module")
def rt_rows() -> list[Any]:
    return rotten_tomatoes(350, seed=11)


async def test_an_embedding_classifier_beats_the_majority_baseline_and_works_through_classify(
    tmp_path: Path, rt_rows: list[Any]
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    train, held_out = rt_rows[:200], rt_rows[200:]
    path = await save_proxy_classifier(
        ws, "rt", [Case(str(i), r.text, r.label) for i, r in enumerate(train)], ["fresh", "rotten"]
    )
    saved = json.loads(path.read_text())
    assert saved["classes"] == ["fresh", "rotten"] and saved["embedder"] == "e5-small" and saved["trained_rows"] == 200

    model = ws.registry.get(f"classifier:{path}")
    assert not model.supports_grammar and model.supports_json_schema
    texts = [r.text for r in held_out]
    outcome = await classify(texts, ["fresh", "rotten"], model)
    accuracy = sum(v == r.label for v, r in zip(outcome.values, held_out, strict=True)) / len(held_out)
    majority = max(sum(r.label == label for r in held_out) for label in ("fresh", "rotten")) / len(held_out)
    assert outcome.first_error() is None
    assert accuracy > majority + 0.05, (accuracy, majority)
    confidences = [r.confidence for r in outcome.reports[0].results if r is not None]
    assert all(c is not None and 0.5 <= c <= 1.0 for c in confidences)
    assert len({round(c or 0, 3) for c in confidences}) > 10  # graded, not constant

    # plain-text requests get the label as text; labels it was not trained on are a clear per-row error
    request = ChatRequest.from_prompt(delimited(texts[0]), system="classify")
    plain = await model.complete(request)
    assert plain.text in ("fresh", "rotten") and plain.json is None
    wrong = await classify(texts[:1], ["spam", "ham"], model)
    assert wrong.errors[0] is not None and "trained on labels ['fresh', 'rotten']" in wrong.errors[0]
    await ws.aclose()


def test_classifier_files_and_embedders_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no classifier at"):
        ClassifierWeights.load(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text('{"format": "other"}')
    with pytest.raises(UserError, match="not a brickyard classifier"):
        ClassifierWeights.load(tmp_path / "junk.json")
    weights = fit_classifier([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], ["a", "a", "b", "b"], embedder="fake")
    weights.save(tmp_path / "fake.json")
    ws = Workspace.init(tmp_path / "ws")
    with pytest.raises(UserError, match="embeds with e5-small only"):
        ws.registry.get(f"classifier:{tmp_path / 'fake.json'}")
    with pytest.raises(UserError, match="at least two labels"):
        fit_classifier([[1.0], [2.0]], ["a", "a"], embedder="fake")


async def test_a_classifier_with_any_embedder_answers_in_python() -> None:
    weights = fit_classifier([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], ["a", "a", "b", "b"], embedder="x")
    embedder = FunctionModel(lambda r: "", embed_fn=lambda text: [1.0, 0.0] if "yes" in text else [0.0, 1.0])
    model = ClassifierModel(weights, embedder)
    outcome = await classify(["yes please", "no thanks"], ["a", "b"], model)
    assert outcome.values == ["a", "b"]


# -- deploying, and the command line --------------------------------------------------------------------
def test_deploy_appends_a_valid_endpoint_and_a_new_agent_version(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    before = ws.config_path.read_text()
    agents = Agents(ws)
    agents.create(AgentSpec(name="reviews", kind=AgentKind.classify, labels=["fresh", "rotten"]))
    agents.close()

    version = deploy_cascade(ws, "rt-cascade", "smollm2", "gemma3", 0.812345678, agent="reviews", evidence={"x": 1})

    text = ws.config_path.read_text()
    assert text.startswith(before)  # comments and settings kept
    fresh = Workspace(ws.path)
    cascade = fresh.settings.endpoints["rt-cascade"].cascade
    assert cascade is not None and cascade.threshold == 0.812345678 and cascade.proxy == "smollm2"
    agents = Agents(fresh)
    spec, number = agents.store.get("reviews")
    agents.close()
    assert version == number == 2 and spec.endpoint == "rt-cascade"
    assert spec.evidence["cascade"] == {"endpoint": "rt-cascade", "x": 1}

    with pytest.raises(UserError, match="already exists"):
        deploy_cascade(fresh, "rt-cascade", "smollm2", "gemma3", 0.5)
    with pytest.raises(ConfigError, match="`nope`"):
        deploy_cascade(fresh, "other", "nope", "gemma3", 0.5)
    with pytest.raises(UserError, match="letters, digits"):
        deploy_cascade(fresh, "bad name", "smollm2", "gemma3", 0.5)
    assert fresh.config_path.read_text() == text  # a refused deploy writes nothing


def scripted_answer(request: ChatRequest) -> Any:
    """`function:` endpoint for the CLI test: sure (0.9) and right on 'vivid' texts, unsure (0.6) on 'plain' ones,
    where it always answers 'pos'."""
    text = data_text(request)
    sure = "vivid" in text
    guess = ("pos" if "good" in text else "neg") if sure else "pos"
    return ChatResult(
        text=json.dumps({"label": guess}), model="p", json={"label": guess}, confidence=0.9 if sure else 0.6
    )


def strong_answer(request: ChatRequest) -> Any:
    return {"label": "pos" if "good" in data_text(request) else "neg"}


def test_the_cascade_command_tunes_reports_and_deploys(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(
        ws.config_path.read_text()
        + '\n[endpoints.cheap]\nmodel = "function:test_cascade:scripted_answer"\n'
        + '\n[endpoints.big]\nmodel = "function:test_cascade:strong_answer"\nprice_input_per_1m = 3.0\n'
    )
    texts = [f"{kind} {mood} film {i}" for i in range(12) for kind in ("plain", "vivid") for mood in ("good", "bad")]
    cases = [Case(t, t, "pos" if "good" in t else "neg") for t in texts]
    dataset = EvalDatasets(ws.path).create("films", cases, source="test", dev_fraction=0.5)
    plain_share = sum("plain" in c.input for c in dataset.test) / len(dataset.test)
    agents = Agents(ws)
    agents.create(AgentSpec(name="films", kind=AgentKind.classify, labels=LABELS))
    agents.close()
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a group, so `cascade` is a subcommand as under `brickyard eval`

    args = ["cascade", "films", "--dataset", "films", "--proxy", "cheap", "--strong", "big", "-w", str(ws.path)]
    result = CliRunner().invoke(app, [*args, "--target", "0.99", "--deploy", "films-cascade", "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["met_target"] and report["threshold"] == 0.9
    assert report["test"]["cascade"]["deferred"] == pytest.approx(plain_share)  # the 'plain' rows
    assert report["test"]["cascade"]["accuracy"] == 1.0 and report["agent_version"] == 2
    fresh = Workspace(ws.path)
    assert fresh.settings.endpoints["films-cascade"].cascade is not None
    missing = CliRunner().invoke(
        app, ["cascade", "nobody", "--dataset", "films", "--proxy", "cheap", "-w", str(ws.path)]
    )
    assert missing.exit_code == 1 and "error" in missing.output


# -- one real-model check ---------------------------------------------------------------------------------
@pytest.mark.local_model
async def test_a_cascade_of_the_bundled_models_answers_every_row(tmp_path: Path, smollm2_path: Path) -> None:
    if catalog.pulled_path("gemma3-270m", catalog.default_models_dir()) is None:
        pytest.skip("gemma3-270m is not pulled (brickyard models pull gemma3-270m)")
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(
        ws.config_path.read_text()
        + '\n[endpoints.rt]\ncascade = { proxy = "smollm2", strong = "gemma3", threshold = 0.9, samples = 3 }\n'
    )
    ws = Workspace(ws.path)
    rows = rotten_tomatoes(6, seed=5)
    outcome = await classify([r.text for r in rows], ["fresh", "rotten"], ws.registry.get("rt"))
    assert outcome.first_error() is None and set(outcome.values) <= {"fresh", "rotten"}
    results = [r for r in outcome.reports[0].results if r is not None]
    assert len(results) == len(rows)
    for result in results:
        assert result.endpoint in ("smollm2", "gemma3")
        assert result.confidence is not None and 0.0 <= result.confidence <= 1.0
        assert (result.endpoint == "smollm2") == (result.confidence >= 0.9)
    await ws.aclose()
