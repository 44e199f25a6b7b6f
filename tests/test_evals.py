"""The evaluator end to end on scripted candidates with known accuracies (exact assertions)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from conftest import DETERMINISTIC_CONFIG, write_config
from typer.testing import CliRunner

from brickyard import FakeModel, FunctionModel, UserError, Workspace
from brickyard._errors import MissingKeyError
from brickyard.agents.runner import Agents
from brickyard.agents.spec import OptimizationState, Strategy, parse_spec
from brickyard.cli import app
from brickyard.config import EndpointConfig
from brickyard.evals import Case, EvalDatasets, HalvingPlan, Policy, estimate, evaluate, rerun
from brickyard.evals.candidates import Candidate, parse_candidate
from brickyard.evals.datasets import cases_from_rows, split_cases
from brickyard.models._types import ChatRequest

LABELS = ["pos", "neg"]


def gold(i: int) -> str:
    return LABELS[i % 2]


def scripted(accuracy: float, seed: int) -> FunctionModel:
    """Answers case i right with probability `accuracy` (fixed per case by the seed)."""

    def answer(request: ChatRequest) -> dict[str, str]:
        i = int(re.search(r"case (\d+)", str(request.messages[-1]["content"])).group(1))  # type: ignore[union-attr]
        right = random.Random(seed * 100_003 + i).random() < accuracy
        return {"label": gold(i) if right else gold(i + 1)}

    return FunctionModel(answer, name=f"function:acc{accuracy}")


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    ws = write_config(workspace, DETERMINISTIC_CONFIG)
    for name, accuracy, price in (("good", 0.9, 4.0), ("mid", 0.8, 1.0), ("bad", 0.3, 0.5)):
        ws.registry.register(
            name,
            scripted(accuracy, seed=len(name)),
            EndpointConfig(model=f"function:{name}", price_input_per_1m=price, price_output_per_1m=price, cache=False),
        )
    agents = Agents(ws)
    agents.create(parse_spec({"name": "sentiment", "kind": "classify", "labels": LABELS, "endpoint": "det"}))
    agents.close()
    datasets = EvalDatasets(ws.path)
    cases = [Case(id=str(i), input=f"case {i}: some review text", expected=gold(i)) for i in range(300)]
    datasets.create("reviews", cases, source="test", dev_fraction=0.3, seed=7)
    datasets.close()
    return ws


async def test_halving_drops_the_scripted_bad_candidate_and_chooses_the_truly_best(ws: Workspace) -> None:
    evaluation = await evaluate(
        ws,
        "sentiment",
        "reviews",
        candidates=["good/zero-shot", "mid/zero-shot", "bad/zero-shot"],
        plan=HalvingPlan(min_cases=30, adaptive=False),
    )
    rec = evaluation.record
    assert rec["rungs"] == rec["halving"]["rungs"] == [53, 105, 210]  # the geometric schedule
    rows = {row["id"]: row for row in rec["leaderboard"]}
    assert rows["bad/zero-shot"]["dropped_at"] == 53 and rows["bad/zero-shot"]["cases"] == 53
    assert rec["chosen"] == "good/zero-shot"
    assert rows["good/zero-shot"]["cases"] == 210
    accuracy = rows["good/zero-shot"]["metrics"]["accuracy"]
    assert accuracy["low"] < accuracy["estimate"] < accuracy["high"] and 0.84 < accuracy["estimate"] < 0.96
    assert rec["halving"]["case_runs"] < rec["halving"]["case_runs_full"] == 630
    assert 0 < rec["halving"]["usd"] < rec["halving"]["usd_full_estimate"]
    # the choice is written into the agent spec as a new version, with its evidence
    spec, version = Agents(ws).store.get("sentiment")
    assert version == rec["applied_version"] == 2
    assert spec.endpoint == "good" and spec.optimization_state is OptimizationState.COMPLETED
    assert spec.evidence["candidate"] == "good/zero-shot" and spec.evidence["run_id"] == rec["run_id"]
    # record, per-case file and report are written; the run is listed
    assert json.loads(evaluation.record_path.read_text())["chosen"] == "good/zero-shot"
    page = evaluation.report_path.read_text()
    assert "Leaderboard" in page and "data:image/png;base64," in page and "good/zero-shot" in page
    lines = (evaluation.record_path.parent / f"{rec['run_id']}.cases.jsonl").read_text().splitlines()
    assert len(lines) == rec["halving"]["case_runs"]
    datasets = EvalDatasets(ws.path)
    assert datasets.runs("sentiment")[0]["run_id"] == rec["run_id"]
    datasets.close()


async def test_without_halving_every_candidate_sees_every_case_and_the_comparison_is_reported(ws: Workspace) -> None:
    rec = (
        await evaluate(
            ws, "sentiment", "reviews", candidates=["good/zero-shot", "mid/zero-shot"], plan=HalvingPlan(enabled=False)
        )
    ).record
    assert [row["cases"] for row in rec["leaderboard"]] == [210, 210]
    comparison = rec["comparison"]
    assert comparison["best"] == "good/zero-shot" and comparison["runner_up"] == "mid/zero-shot"
    assert comparison["diff"] > 0 and comparison["low"] <= comparison["diff"] <= comparison["high"]
    assert sorted(rec["pareto"]) == ["good/zero-shot", "mid/zero-shot"]  # better vs cheaper: both on the frontier


async def test_policies_trade_quality_for_cost(ws: Workspace) -> None:
    options = {
        "candidates": ["good/zero-shot", "mid/zero-shot", "bad/zero-shot"],
        "apply": False,
        "plan": HalvingPlan(enabled=False),
    }
    cheapest = await evaluate(ws, "sentiment", "reviews", policy=Policy.parse("cheapest_within:20"), **options)
    assert cheapest.record["chosen"] == "mid/zero-shot"  # 10 points below, a quarter of the price
    capped = await evaluate(ws, "sentiment", "reviews", policy=Policy.parse("best_under:0.1"), **options)
    rows = {r["id"]: r for r in capped.record["leaderboard"]}
    assert capped.record["chosen"] == "mid/zero-shot"
    assert rows["good/zero-shot"]["usd_per_1k"] > 0.1 >= rows["mid/zero-shot"]["usd_per_1k"]
    with pytest.raises(UserError, match="unknown policy"):
        Policy.parse("fastest")


async def test_estimate_counts_calls_and_usd_without_calling(ws: Workspace) -> None:
    spy = scripted(0.5, seed=1)
    ws.registry.register("spy", spy, EndpointConfig(model="function:spy", price_input_per_1m=2.0))
    numbers = await estimate(ws, "sentiment", "reviews", candidates=["spy/zero-shot", "spy/few-shot-2"])
    assert [c["calls"] for c in numbers["candidates"]] == [210, 210]
    assert numbers["calls"] == 420 and numbers["usd"] > 0
    few, zero = numbers["candidates"][1], numbers["candidates"][0]
    assert few["input_tokens"] > zero["input_tokens"]  # demonstrations make prompts longer
    assert spy.calls == []  # nothing was sent


async def test_max_cost_stops_cleanly_with_partial_results_kept(ws: Workspace) -> None:
    evaluation = await evaluate(
        ws,
        "sentiment",
        "reviews",
        candidates=["good/zero-shot", "mid/zero-shot"],
        max_cost_usd=0.0005,
        plan=HalvingPlan(enabled=False),
    )
    rec = evaluation.record
    assert rec["partial"] is True and rec["applied_version"] is None
    assert 0 < sum(row["cases"] for row in rec["leaderboard"]) < 420
    assert "cost cap" in evaluation.report_path.read_text()


async def test_failing_candidates_are_reported_not_fatal(ws: Workspace) -> None:
    ws.registry.register("broken", FunctionModel(lambda r: {"label": "maybe"}), EndpointConfig(model="function:b"))
    rec = (
        await evaluate(ws, "sentiment", "reviews", candidates=["broken/zero-shot", "good/zero-shot"], apply=False)
    ).record
    rows = {r["id"]: r for r in rec["leaderboard"]}
    assert rows["broken/zero-shot"]["errors"] == rows["broken/zero-shot"]["cases"] > 0
    assert "not one of the labels" in rows["broken/zero-shot"]["sample_errors"][0]
    assert rec["chosen"] == "good/zero-shot"
    only_broken = (await evaluate(ws, "sentiment", "reviews", candidates=["broken/zero-shot"], apply=False)).record
    assert only_broken["chosen"] is None and only_broken["comparison"] is None


async def test_few_shot_and_cot_candidates_send_what_they_claim(ws: Workspace) -> None:
    seen: list[ChatRequest] = []

    def answer(request: ChatRequest) -> dict[str, str]:
        seen.append(request)
        return {"label": "pos", "reasoning": "r"}

    ws.registry.register("spy", FunctionModel(answer), EndpointConfig(model="function:spy", cache=False))
    await evaluate(ws, "sentiment", "reviews", candidates=["spy/few-shot-2"], apply=False)
    assert len(seen) == 210
    assert all(len(r.messages) == 1 + 2 * 2 + 1 for r in seen)  # system, two demonstrations, the input
    assert all(r.messages[2]["role"] == "assistant" and r.messages[2]["content"] in LABELS for r in seen)
    seen.clear()
    await evaluate(ws, "sentiment", "reviews", candidates=["spy/cot"], apply=False)
    assert len(seen) == 210
    assert all("reasoning" in (r.json_schema or {}).get("properties", {}) for r in seen)


async def test_chosen_few_shot_spec_runs_with_similar_demonstrations(ws: Workspace) -> None:
    await evaluate(ws, "sentiment", "reviews", candidates=["good/few-shot-3"])
    spec, _ = Agents(ws).store.get("sentiment")
    assert spec.strategy is Strategy.few_shot and spec.few_shot_k == 3 and len(spec.examples) == 90
    run = await Agents(ws).run("sentiment", "case 4: a review")
    assert run.output in LABELS


async def test_rerun_adds_new_endpoints_and_says_whether_the_choice_changes(ws: Workspace) -> None:
    first = await evaluate(ws, "sentiment", "reviews", candidates=["mid/zero-shot"], apply=False)
    assert first.record["chosen"] == "mid/zero-shot"
    ws.registry.register("newer", scripted(0.97, seed=3), EndpointConfig(model="function:brickyard.testing.x:y"))
    monkey = pytest.MonkeyPatch()
    monkey.setattr("brickyard.evals.evaluator.usable_chat_endpoints", lambda w: ["mid", "newer"])
    try:
        evaluation, change = await rerun(ws, "sentiment")
    finally:
        monkey.undo()
    assert change["new_candidates"][0] == "newer/zero-shot"
    assert change["previous"] == "mid/zero-shot" and change["now"].startswith("newer/") and change["changed"]
    assert evaluation.record["dataset"]["version"] == first.record["dataset"]["version"]


async def test_labels_missing_are_a_clear_error(ws: Workspace) -> None:
    datasets = EvalDatasets(ws.path)
    datasets.create("raw", [Case(id=str(i), input=f"case {i}") for i in range(20)], source="t")
    datasets.close()
    with pytest.raises(UserError, match="--judge"):
        await evaluate(ws, "sentiment", "raw", candidates=["good/zero-shot"])


def test_dataset_rows_columns_and_split_are_checked(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": "a", "source": "x"} for i in range(10)]
    with pytest.raises(UserError, match=r"no column `input` \(columns: text, label, source\)"):
        cases_from_rows(rows)
    cases = cases_from_rows(rows, input_column="text", expected_column="label")
    assert cases[0].expected == "a" and cases[0].metadata == {"source": "x"}
    dev1, test1 = split_cases(cases, dev_fraction=0.3, seed=1)
    dev2, test2 = split_cases(cases, dev_fraction=0.3, seed=1)
    assert [c.id for c in test1] == [c.id for c in test2]
    assert [c.id for c in dev1] == [c.id for c in dev2] and len(dev1) == 3 and len(test1) == 7
    assert parse_candidate("gpt/few-shot-5") == Candidate("gpt", Strategy.few_shot, k=5)
    with pytest.raises(UserError, match="unknown strategy"):
        parse_candidate("gpt/many-shot")


def test_cli_dataset_create_show_and_estimate(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_text("review,label\n" + "".join(f"case {i} text,{gold(i)}\n" for i in range(40)), encoding="utf-8")
    runner = CliRunner()
    base = ["--workspace", str(ws.path)]
    made = runner.invoke(
        app,
        [
            "eval",
            "dataset",
            "create",
            "csvset",
            str(path),
            "--input-column",
            "review",
            "--expected-column",
            "label",
            *base,
        ],
    )
    assert made.exit_code == 0, made.output
    assert "12 dev + 28 test" in made.output
    shown = runner.invoke(app, ["eval", "dataset", "show", "csvset", *base])
    assert "csvset v1" in shown.output and "case" in shown.output
    bad = runner.invoke(app, ["eval", "dataset", "create", "x", str(path), *base])
    assert bad.exit_code != 0 and "no column `input`" in str(bad.exception)
    listed = runner.invoke(app, ["eval", "dataset", "list", *base])
    assert "csvset" in listed.output and "reviews" in listed.output


async def test_mlflow_export_writes_a_run_per_candidate(ws: Workspace, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from brickyard.evals.mlflow_export import export

    evaluation = await evaluate(ws, "sentiment", "reviews", candidates=["good/zero-shot", "mid/zero-shot"], apply=False)
    parent = export(evaluation.record, evaluation.report_path, tmp_path / "mlruns")
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert sorted(r.data.params["candidate"] for r in children) == ["good/zero-shot", "mid/zero-shot"]
    assert all(0 <= r.data.metrics["accuracy_low"] <= r.data.metrics["accuracy"] for r in children)
    assert [a.path for a in client.list_artifacts(parent)] == [evaluation.report_path.name]


async def test_synthetic_cases_from_a_teacher_are_stored_as_a_reviewable_dataset(ws: Workspace) -> None:
    from brickyard.evals.synthetic import synthesize

    prompts: list[str] = []

    def teacher(request: ChatRequest) -> dict[str, str]:
        prompt = str(request.messages[-1]["content"])
        prompts.append(prompt)
        if "Its correct label must be" in prompt:
            return {"text": f"a review written to be {prompt.split('`')[1]}"}
        return {"label": "neg" if "awful" in prompt else "pos"}

    ws.registry.register("teacher", FunctionModel(teacher), EndpointConfig(model="function:t", cache=False))
    spec, _ = Agents(ws).store.get("sentiment")
    invented = await synthesize(ws, spec, "teacher", n=6)
    assert [c.expected for c in invented] == ["pos", "neg"] * 3
    assert all(c.input.startswith("a review written to be") and c.metadata["synthetic"] for c in invented)
    labelled = await synthesize(ws, spec, "teacher", inputs=["an awful film", "a lovely film"])
    assert [(c.input, c.expected) for c in labelled] == [("an awful film", "neg"), ("a lovely film", "pos")]
    assert any("<text>\nan awful film\n</text>" in p for p in prompts)  # inputs go to the teacher as data
    datasets = EvalDatasets(ws.path)
    stored = datasets.create("synth", invented, source="synthetic:teacher", synthetic=True)
    assert datasets.get("synth").synthetic and len(stored.cases) == 6
    datasets.close()


async def test_instruction_variants_are_candidates_of_their_own(ws: Workspace) -> None:
    seen: list[str] = []

    def answer(request: ChatRequest) -> dict[str, str]:
        seen.append(str(request.messages[0]["content"]))
        return {"label": "pos"}

    ws.registry.register("spy", FunctionModel(answer), EndpointConfig(model="function:spy", cache=False))
    rec = (
        await evaluate(
            ws,
            "sentiment",
            "reviews",
            candidates=["spy/zero-shot"],
            variants={"terse": "Be terse."},
            apply=False,
            plan=HalvingPlan(enabled=False),  # two identical candidates: racing would stop at once
        )
    ).record
    assert sorted(row["id"] for row in rec["leaderboard"]) == ["spy/zero-shot", "spy/zero-shot/terse"]
    assert sum("Instructions: Be terse." in prompt for prompt in seen) == 210


async def test_max_cost_covers_judges_and_embeddings(ws: Workspace) -> None:
    from brickyard._errors import CostCapError
    from brickyard.models.budget import CostCap

    ws.registry.register(
        "paid-embedder", FakeModel(embedding_dim=4), EndpointConfig(model="x:e", price_input_per_1m=1000.0)
    )
    cap = CostCap(0.01, kind="sweep")
    embedder = cap.bind(ws.registry.get("paid-embedder"), ws.store)
    await embedder.embed(["a few words"])
    assert 0 < cap.spent_usd < 0.01
    with pytest.raises(CostCapError):
        await embedder.embed(["a much longer text " * 20])
    assert cap.reached

    judged: list[ChatRequest] = []

    def judge(request: ChatRequest) -> dict[str, str]:
        judged.append(request)
        return {"rationale": "ok", "verdict": "pass"}

    ws.registry.register(
        "judge", FunctionModel(judge), EndpointConfig(model="function:j", price_input_per_1m=500.0, cache=False)
    )
    Agents(ws).create(parse_spec({"name": "ruled", "kind": "classify", "labels": LABELS, "guidelines": ["be brief"]}))
    rec = (
        await evaluate(
            ws,
            "ruled",
            "reviews",
            candidates=["good/zero-shot"],
            judge="judge",
            max_cost_usd=0.5,
            plan=HalvingPlan(enabled=False),
        )
    ).record
    assert rec["partial"] is True and rec["applied_version"] is None  # the judge's spend reached the cap
    assert 0 < len(judged) < 210


async def test_default_policy_races_to_the_cheapest_equivalent_candidate_and_says_why(ws: Workspace) -> None:
    """Two candidates that answer identically at different prices: racing stops after the first rung (the
    answer is known) and the cheaper one is chosen, with the reason in words."""
    ws.registry.register(
        "twin",
        scripted(0.9, seed=len("good")),  # the same answers as `good`, at a quarter of its price
        EndpointConfig(model="function:twin", price_input_per_1m=1.0, price_output_per_1m=1.0, cache=False),
    )
    rec = (
        await evaluate(ws, "sentiment", "reviews", candidates=["good/zero-shot", "twin/zero-shot"], apply=False)
    ).record
    assert rec["policy"] == "cheapest_equivalent:2" and rec["chosen"] == "twin/zero-shot"
    assert rec["halving"]["stop_reason"] is not None and "equivalent within 2 points" in rec["halving"]["stop_reason"]
    assert rec["halving"]["case_runs"] <= rec["halving"]["case_runs_full"] // 2
    assert [t["equivalent"] for t in rec["equivalence"].values()] == [True]
    assert "equivalent to it within 2 points" in rec["choice_reason"] and "cheapest" in rec["choice_reason"]


async def test_racing_stops_when_one_candidate_is_left_and_keeps_going_when_unsure(ws: Workspace) -> None:
    clear = (
        await evaluate(ws, "sentiment", "reviews", candidates=["good/zero-shot", "bad/zero-shot"], apply=False)
    ).record
    assert clear["chosen"] == "good/zero-shot"
    assert clear["halving"]["stop_reason"] == "only good/zero-shot is left"
    assert clear["halving"]["case_runs"] <= clear["halving"]["case_runs_full"] // 2
    # 0.9 against 0.8: neither equivalent within 2 points nor, on the first rungs, surely different
    unsure = (
        await evaluate(ws, "sentiment", "reviews", candidates=["good/zero-shot", "mid/zero-shot"], apply=False)
    ).record
    rows = {row["id"]: row for row in unsure["leaderboard"]}
    if unsure["halving"]["stop_reason"] is None:
        assert rows["good/zero-shot"]["cases"] == 210
    assert unsure["equivalence"]["mid/zero-shot"]["equivalent"] is False
    assert unsure["chosen"] == "good/zero-shot"  # the cheaper mid is not shown equivalent, so quality decides


def test_equivalence_is_two_one_sided_tests_on_the_paired_difference() -> None:
    from brickyard.evals.scorers import Accuracy
    from brickyard.evals.stats import equivalence

    mean = Accuracy().aggregate

    from brickyard.evals._types import CaseScore

    rng = random.Random(0)
    right = [float(rng.random() < 0.8) for _ in range(400)]
    a = [CaseScore(x) for x in right]
    same = equivalence(a, list(a), mean, margin=0.02)
    assert same.equivalent and same.low == same.high == 0.0
    worse = [CaseScore(0.0 if (x and rng.random() < 0.15) else x) for x in right]  # about 12 points worse
    assert not equivalence(a, worse, mean, margin=0.02).equivalent
    assert equivalence(a, worse, mean, margin=0.30).equivalent
    few = equivalence(a[:10], a[:10][::-1], mean, margin=0.02)  # too few cases to show anything
    assert not few.equivalent


async def test_the_embedding_classifier_is_a_built_in_candidate_trained_on_the_dev_split(ws: Workspace) -> None:
    rec = (await evaluate(ws, "sentiment", "reviews", candidates=["e5-small/classifier"])).record
    assert [row["id"] for row in rec["leaderboard"]] == ["e5-small/classifier"]
    assert rec["chosen"] == "e5-small/classifier" and rec["applied_version"] == 2
    assert rec["leaderboard"][0]["errors"] == 0 and rec["leaderboard"][0]["usd_per_1k"] == 0.0
    spec, _ = Agents(ws).store.get("sentiment")
    assert spec.endpoint is not None and spec.endpoint.startswith("sentiment-classifier-")
    # the chosen spec keeps working after this process: its endpoint was written into brickyard.toml
    fresh = Workspace(ws.path)
    assert f"[endpoints.{spec.endpoint}]" in fresh.config_path.read_text()
    assert fresh.registry.config_for(spec.endpoint).model.startswith("classifier:")  # type: ignore[union-attr]
    # with no candidates named, a classify agent with labelled dev cases gets it by default
    from brickyard.evals.evaluator import candidates_for

    datasets = EvalDatasets(ws.path)
    default = candidates_for(ws, spec, datasets.get("reviews"), None)
    datasets.close()
    assert "emb/classifier" in {c.id for c in default}  # the default embedder's
    other = (await evaluate(ws, "sentiment", "reviews", candidates=["emb/classifier"])).record
    assert other["applied_version"] is None and "Not applied" in other["choice_reason"]
    with pytest.raises(UserError, match="unknown strategy"):
        parse_candidate("emb/classifer")
    with pytest.raises(UserError, match="an answer mode is for knowledge agents"):
        await evaluate(ws, "sentiment", "reviews", candidates=["good/extractive"])


async def test_a_teacher_proposes_instructions_from_dev_failures_and_each_is_a_candidate(ws: Workspace) -> None:
    seen: list[str] = []

    def teacher(request: ChatRequest) -> dict[str, list[str]]:
        seen.append(str(request.messages[-1]["content"]))
        return {"proposals": ["Label odd-numbered cases neg.", "Label odd-numbered cases neg.", "Read closely."]}

    def student(request: ChatRequest) -> dict[str, str]:
        i = int(re.search(r"case (\d+)", str(request.messages[-1]["content"])).group(1))  # type: ignore[union-attr]
        if "odd-numbered" in str(request.messages[0]["content"]):
            return {"label": gold(i)}  # the revised instructions fix every case
        return {"label": "pos"}

    ws.registry.register("teacher", FunctionModel(teacher), EndpointConfig(model="function:teacher", cache=False))
    ws.registry.register("student", FunctionModel(student), EndpointConfig(model="function:student", cache=False))
    rec = (
        await evaluate(ws, "sentiment", "reviews", candidates=["student/zero-shot"], teacher="teacher", apply=False)
    ).record
    # the teacher saw the failures on the dev split (the odd cases, answered "pos" instead of "neg")
    assert len(seen) == 1 and "expected: neg" in seen[0] and "actual: " in seen[0]
    assert [p["name"] for p in rec["proposals"]] == ["proposed-1", "proposed-2"]  # the repeat is dropped
    assert 0 < rec["proposals"][0]["from_failures"] <= 90  # the agent's own endpoint's failures on the 90 dev cases
    ids = {row["id"] for row in rec["leaderboard"]}
    assert {"student/zero-shot", "student/zero-shot/proposed-1", "student/zero-shot/proposed-2"} <= ids
    assert rec["chosen"] == "student/zero-shot/proposed-1"  # chosen on the test split


async def test_judge_agreement_is_measured_from_people_s_verdicts_or_said_to_be_unknown(ws: Workspace) -> None:
    """A judge that passes everything: on a set without human verdicts its agreement is `unknown` (record,
    report); on a set whose cases carry verdicts it is measured, and flagged (it passes what people failed)."""
    ws.registry.register(
        "judge", FunctionModel(lambda r: {"rationale": "ok", "verdict": "pass"}), EndpointConfig(model="function:j")
    )
    Agents(ws).create(parse_spec({"name": "ruled", "kind": "classify", "labels": LABELS, "guidelines": ["be brief"]}))
    plan = HalvingPlan(enabled=False)
    unknown = await evaluate(ws, "ruled", "reviews", candidates=["good/zero-shot"], judge="judge", plan=plan)
    (name, agreement), *_ = unknown.record["judge_agreement"].items()
    assert agreement == {"judge": name, "cases": 0, "unknown": True}
    html = unknown.report_path.read_text(encoding="utf-8")
    assert "agreement with people unknown" in html and f"brickyard eval label {unknown.record['run_id']}" in html

    cases = [
        Case(
            id=str(i),
            input=f"case {i}: some review text",
            expected=gold(i),
            metadata={"judged_output": gold(i + i % 2), "human_verdict": "pass" if i % 2 == 0 else "fail"},
        )
        for i in range(60)
    ]
    datasets = EvalDatasets(ws.path)
    datasets.create("verdicts", cases, source="test", dev_fraction=0.5, seed=7)
    datasets.close()
    measured = await evaluate(ws, "ruled", "verdicts", candidates=["good/zero-shot"], judge="judge", plan=plan)
    agreement = measured.record["judge_agreement"][name]
    assert agreement["cases"] == 60 and abs(agreement["accuracy"] - 0.5) < 1e-9 and agreement["flagged"]
    html = measured.report_path.read_text(encoding="utf-8")
    assert "FLAGGED" in html and "kappa" in html and "unknown" not in html


async def test_a_teacher_without_a_key_fails_before_the_dev_run_spends_anything(ws: Workspace) -> None:
    ws = write_config(
        ws,
        DETERMINISTIC_CONFIG
        + "\n[endpoints.remote_teacher]\nmodel = 'openai:gpt-5-mini'\napi_key_env = 'BRICKYARD_TEST_ABSENT_KEY'\n",
    )
    assert "BRICKYARD_TEST_ABSENT_KEY" not in ws.env
    student: list[ChatRequest] = []
    ws.registry.register(
        "det", FunctionModel(lambda r: student.append(r) or {"label": "pos"}), EndpointConfig(model="function:det")
    )
    with pytest.raises(MissingKeyError, match="BRICKYARD_TEST_ABSENT_KEY"):
        await evaluate(ws, "sentiment", "reviews", candidates=["det/zero-shot"], teacher="remote_teacher", apply=False)
    assert student == []  # the agent's own endpoint never ran on the dev split


async def test_racing_stops_once_the_cheapest_candidate_cannot_be_beaten_by_more_than_the_margin(
    ws: Workspace,
) -> None:
    ws.registry.register(
        "ace",
        scripted(0.97, seed=11),  # the best and the cheapest
        EndpointConfig(model="function:ace", price_input_per_1m=0.5, price_output_per_1m=0.5, cache=False),
    )
    rec = (
        await evaluate(
            ws,
            "sentiment",
            "reviews",
            candidates=["good/zero-shot", "mid/zero-shot", "ace/zero-shot"],
            apply=False,
            plan=HalvingPlan(adaptive=False),  # the stop rule on the geometric schedule; sizing: test_eval_rungs.py
        )
    ).record
    assert rec["chosen"] == "ace/zero-shot"
    assert "ace/zero-shot is the cheapest, then fastest" in rec["halving"]["stop_reason"]
    assert rec["halving"]["case_runs"] <= rec["halving"]["case_runs_full"] // 2
