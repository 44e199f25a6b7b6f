"""`brickyard eval ...`: datasets, sweeps, estimates, reruns. A thin surface over brickyard.evals."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from brickyard._cli_common import WorkspaceOpt, err, out, run_and_close
from brickyard._errors import UserError
from brickyard.workspace import Workspace

eval_app = typer.Typer(no_args_is_help=True, help="Measure models and prompt strategies on your data; choose.")
dataset_app = typer.Typer(no_args_is_help=True, help="Evaluation sets: create, show, list, export, synthesize.")
eval_app.add_typer(dataset_app, name="dataset")


@dataset_app.command("create")
def dataset_create(
    name: str,
    source: Annotated[str, typer.Argument(help="a .csv/.jsonl/.json/.parquet file, or table:NAME in the warehouse")],
    input_column: Annotated[str, typer.Option(help="the column holding the input")] = "input",
    expected_column: Annotated[str | None, typer.Option(help="the column holding the expected output")] = "expected",
    id_column: Annotated[str | None, typer.Option(help="a column of unique case ids")] = None,
    dev_fraction: Annotated[float, typer.Option(help="share of cases in the dev split (demos, tuning)")] = 0.3,
    seed: Annotated[int, typer.Option(help="the split's shuffle seed")] = 0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Store a file or warehouse table as an evaluation set (a new version when the name exists)."""
    from brickyard.evals.datasets import EvalDatasets

    ws = Workspace(workspace)
    datasets = EvalDatasets(ws)
    try:
        dataset = datasets.create_from(
            name,
            source,
            input_column=input_column,
            expected_column=expected_column,
            id_column=id_column,
            dev_fraction=dev_fraction,
            seed=seed,
        )
    finally:
        datasets.close()
    labelled = "labelled" if dataset.labelled else "not fully labelled (judge-only scorers for the rest)"
    out.print(f"dataset {name} v{dataset.version}: {len(dataset.dev)} dev + {len(dataset.test)} test cases, {labelled}")


@dataset_app.command("synthesize")
def dataset_synthesize(
    name: str,
    agent: Annotated[str, typer.Option(help="the agent whose data the cases come from")],
    teacher: Annotated[str, typer.Option(help="the endpoint that writes the cases")],
    n: Annotated[int, typer.Option(help="how many cases")] = 50,
    source: Annotated[
        str | None, typer.Option("--from", help="unlabelled inputs to label (file or table:NAME)")
    ] = None,
    input_column: Annotated[str, typer.Option(help="the input column of --from")] = "input",
    dev_fraction: float = 0.3,
    seed: int = 0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Make synthetic cases with a teacher endpoint (questions from a knowledge base's chunks; labels for inputs)."""
    from brickyard.agents.runner import Agents
    from brickyard.evals.datasets import EvalDatasets, read_rows
    from brickyard.evals.synthetic import synthesize

    ws = Workspace(workspace)
    agents = Agents(ws)
    spec, _ = agents.store.get(agent)
    agents.close()
    inputs = None
    if source is not None:
        inputs = [str(r[input_column]) for r in read_rows(source, workspace_path=ws.path) if r.get(input_column)]
    cases = asyncio.run(run_and_close(ws, synthesize(ws, spec, teacher, n=n, inputs=inputs, seed=seed)))
    datasets = EvalDatasets(ws)
    try:
        dataset = datasets.create(
            name, cases, source=f"synthetic:{teacher}", dev_fraction=dev_fraction, seed=seed, synthetic=True
        )
    finally:
        datasets.close()
    out.print(
        f"dataset {name} v{dataset.version}: {len(cases)} synthetic cases by {teacher}. Review them with "
        f"`brickyard eval dataset export {name} FILE.jsonl`, edit, and create a new version from the file"
    )


@dataset_app.command("list")
def dataset_list(workspace: WorkspaceOpt = None) -> None:
    """Every evaluation set: latest version, split sizes, labels."""
    from brickyard.evals.datasets import EvalDatasets

    datasets = EvalDatasets(Workspace(workspace))
    try:
        rows = datasets.summaries()
    finally:
        datasets.close()
    table = Table("name", "version", "dev", "test", "unlabelled", "synthetic", "source")
    for row in rows:
        table.add_row(
            row["name"],
            str(row["version"]),
            str(row["dev"]),
            str(row["test"]),
            str(row["unlabelled"]),
            "yes" if row["synthetic"] else "",
            row["source"],
        )
    out.print(table)


@dataset_app.command("show")
def dataset_show(
    name: str,
    version: Annotated[int | None, typer.Option(help="a version (default: the latest)")] = None,
    limit: Annotated[int, typer.Option(help="cases to print")] = 10,
    workspace: WorkspaceOpt = None,
) -> None:
    """A dataset's cases, dev split first."""
    from brickyard.evals.datasets import EvalDatasets

    datasets = EvalDatasets(Workspace(workspace))
    try:
        dataset = datasets.get(name, version)
    finally:
        datasets.close()
    out.print(
        f"{name} v{dataset.version} from {dataset.source}: {len(dataset.dev)} dev, {len(dataset.test)} test "
        f"(seed {dataset.seed}{', synthetic' if dataset.synthetic else ''})"
    )
    table = Table("split", "id", "input", "expected")
    for split, cases in (("dev", dataset.dev), ("test", dataset.test)):
        for case in cases[:limit]:
            table.add_row(split, case.id, case.input[:100], json.dumps(case.expected, ensure_ascii=False)[:80])
    out.print(table)


@dataset_app.command("export")
def dataset_export(name: str, path: Path, version: int | None = None, workspace: WorkspaceOpt = None) -> None:
    """Write a dataset as JSONL (id, input, expected, split, metadata) for review and editing."""
    from brickyard.evals.datasets import EvalDatasets

    datasets = EvalDatasets(Workspace(workspace))
    try:
        dataset = datasets.get(name, version)
    finally:
        datasets.close()
    with path.open("w", encoding="utf-8") as handle:
        for split, cases in (("dev", dataset.dev), ("test", dataset.test)):
            for case in cases:
                row = {"id": case.id, "input": case.input, "expected": case.expected, "split": split, **case.metadata}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.print(
        f"wrote {len(dataset.cases)} cases to {path}; edit, then `brickyard eval dataset create {name} {path} "
        "--id-column id`"
    )


@eval_app.command("run")
def eval_run(
    agent: str,
    dataset: Annotated[str, typer.Option(help="the evaluation set")],
    candidates: Annotated[
        str | None, typer.Option(help="comma-separated ENDPOINT or ENDPOINT/STRATEGY (default: every usable endpoint)")
    ] = None,
    judge: Annotated[str | None, typer.Option(help="an endpoint for LLM judges")] = None,
    policy: Annotated[
        str,
        typer.Option(
            help="cheapest_equivalent[:POINTS] (the cheapest candidate equivalent to the best, 2 points by default) "
            "| max_quality | cheapest_within:POINTS | best_under:USD_PER_1K"
        ),
    ] = "cheapest_equivalent:2",
    max_cost: Annotated[
        float | None, typer.Option(help="stop the sweep at this many USD (partial results kept)")
    ] = None,
    estimate: Annotated[
        bool, typer.Option("--estimate", help="print expected calls, tokens and USD; run nothing")
    ] = False,
    halving: Annotated[
        bool, typer.Option(help="successive halving and racing (drop clearly worse candidates, stop when known)")
    ] = True,
    min_cases: Annotated[int, typer.Option(help="least size of the first halving rung (under twice this)")] = 30,
    adaptive_rungs: Annotated[
        bool, typer.Option(help="size each rung after the first from the differences seen (default: geometric)")
    ] = False,
    shots: Annotated[int, typer.Option(help="demonstrations per input for few-shot candidates")] = 3,
    variants: Annotated[
        Path | None, typer.Option(help="a YAML/JSON file of name: instructions, tried besides the spec's own")
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(help="an endpoint that proposes revised instructions from the failures on the dev split"),
    ] = None,
    proposals: Annotated[int, typer.Option(help="instruction proposals asked of the teacher", min=1, max=8)] = 3,
    apply: Annotated[bool, typer.Option(help="write the choice into the agent spec (new version)")] = True,
    report: Annotated[Path | None, typer.Option(help="where to write the HTML report")] = None,
    mlflow: Annotated[Path | None, typer.Option(help="also export to an MLflow file store in this folder")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run candidates on the dataset's test split, print the leaderboard, write the report, choose."""
    from brickyard.evals.evaluator import estimate as estimate_sweep
    from brickyard.evals.evaluator import evaluate
    from brickyard.evals.policy import Policy
    from brickyard.evals.sweep import HalvingPlan

    ws = Workspace(workspace)
    given = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    if estimate:
        numbers = asyncio.run(
            run_and_close(ws, estimate_sweep(ws, agent, dataset, candidates=given, judge=judge, k=shots))
        )
        print_estimate(numbers)
        return
    chosen_policy = Policy.parse(policy)
    evaluation = asyncio.run(
        run_and_close(
            ws,
            evaluate(
                ws,
                agent,
                dataset,
                candidates=given,
                judge=judge,
                policy=chosen_policy,
                max_cost_usd=max_cost,
                plan=HalvingPlan(enabled=halving, min_cases=min_cases, adaptive=adaptive_rungs),
                apply=apply,
                report_path=report,
                console=err,
                k=shots,
                variants=read_variants(variants) if variants else None,
                teacher=teacher,
                proposals=proposals,
            ),
        )
    )
    print_evaluation(evaluation.record, evaluation.report_path)
    if mlflow is not None:
        from brickyard.evals.mlflow_export import export

        run_id = export(evaluation.record, evaluation.report_path, mlflow)
        out.print(f"exported to MLflow at {mlflow} (run {run_id})")


@eval_app.command("rerun")
def eval_rerun(
    agent: str,
    apply: Annotated[bool, typer.Option(help="write a changed choice into the agent spec")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Evaluate again on the stored set, with endpoints added since; say whether the choice would change."""
    from brickyard.evals.evaluator import rerun

    ws = Workspace(workspace)
    evaluation, change = asyncio.run(run_and_close(ws, rerun(ws, agent, console=err, apply=apply)))
    print_evaluation(evaluation.record, evaluation.report_path)
    added = ", ".join(change["new_candidates"]) or "none"
    verdict = "CHANGES" if change["changed"] else "stays"
    out.print(f"new candidates: {added}. The choice {verdict}: {change['previous']} → {change['now']}")


@eval_app.command("history")
def eval_history(agent: str | None = None, workspace: WorkspaceOpt = None) -> None:
    """Past evaluation runs, newest first."""
    from brickyard.evals.datasets import EvalDatasets

    datasets = EvalDatasets(Workspace(workspace))
    try:
        runs = datasets.runs(agent)
    finally:
        datasets.close()
    table = Table("run", "agent", "dataset", "candidates", "chosen", "policy", "partial")
    for rec in runs:
        table.add_row(
            rec["run_id"],
            rec["agent"],
            f"{rec['dataset']['name']} v{rec['dataset']['version']}",
            str(len(rec["candidates"])),
            str(rec["chosen"]),
            rec["policy"],
            "yes" if rec["partial"] else "",
        )
    out.print(table)


def read_variants(path: Path) -> dict[str, str]:
    """Instruction variants from a YAML or JSON mapping of name → instructions."""
    import yaml

    if not path.exists():
        raise UserError(f"{path} does not exist. Fix: a YAML/JSON file like `terse: Answer with the label only.`")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise UserError(f"{path} must map variant names to instruction texts, e.g. `terse: Be brief.`")
    return {str(k): v for k, v in data.items()}


def print_estimate(numbers: dict[str, Any]) -> None:
    table = Table("candidate", "calls", "input tokens", "output tokens", "USD", title="expected cost of a full sweep")
    for row in numbers["candidates"]:
        table.add_row(
            row["candidate"],
            str(row["calls"]),
            f"{row['input_tokens']:,}",
            f"{row['output_tokens']:,}",
            f"{row['usd']:.4f}",
        )
    out.print(table)
    out.print(
        f"{numbers['test_cases']} test cases: {numbers['calls']:,} calls (judges {numbers['judge_calls']:,}), "
        f"{numbers['input_tokens']:,} + {numbers['output_tokens']:,} tokens, about {numbers['usd']:.4f} USD at most "
        "(successive halving spends less)"
    )


def print_evaluation(rec: dict[str, Any], report: Path) -> None:
    from rich.markup import escape

    from brickyard.evals.report import FLAGGED, agreement_text, terminal_table

    out.print(terminal_table(rec))
    comparison = rec["comparison"]
    if comparison:
        verdict = "significantly" if comparison["significant"] else "NOT significantly"
        out.print(
            f"best {comparison['best']} is {verdict} better than {comparison['runner_up']}: "
            f"{comparison['diff']:+.3f} [{comparison['low']:+.3f}, {comparison['high']:+.3f}], "
            f"p={comparison['p_value']:.3f}"
        )
    for name, agreement in (rec.get("judge_agreement") or {}).items():
        flag = f"  [bold red]{FLAGGED}[/]" if agreement.get("flagged") else ""
        out.print(f"judge {escape(name)}{escape(agreement_text(agreement, rec['run_id']))}{flag}")
    saving = rec["halving"]
    if saving.get("stop_reason"):
        out.print(f"racing stopped the sweep: {saving['stop_reason']}")
    out.print(
        f"successive halving and racing: {saving['case_runs']} of {saving['case_runs_full']} case runs "
        f"({100 * saving['case_runs_saved']:.0f}% saved), {saving['usd']:.4f} of ~{saving['usd_full_estimate']:.4f} USD"
        + (
            f", {saving['seconds']:.0f} of ~{saving['seconds_full_estimate']:.0f} s"
            if saving.get("seconds_full_estimate")
            else ""
        )
    )
    scores = {row["id"]: row["metrics"].get(rec["primary"], {}).get("estimate") for row in rec["leaderboard"]}
    for proposal in rec.get("proposals") or []:
        mine = [
            f"{cid}: {score:.3f}" for cid, score in scores.items() if cid.endswith("/" + proposal["name"]) and score
        ]
        out.print(
            f"{proposal['name']} (from {proposal['from_failures']} dev failures): {', '.join(mine) or 'not scored'}"
            f"\n  {proposal['instructions']}",
            markup=False,
            highlight=False,
        )
    if rec["partial"]:
        out.print("[bold yellow]stopped at the cost cap: partial results, nothing applied[/]")
    if rec["chosen"]:
        applied = f" → saved as version {rec['applied_version']}" if rec["applied_version"] else ""
        out.print(f"chosen by {rec['policy']}: [bold]{rec['chosen']}[/]{applied}")
        if rec.get("choice_reason"):
            out.print(rec["choice_reason"], markup=False, highlight=False)
    else:
        out.print(f"no candidate qualified under {rec['policy']}")
    out.print(f"report: {report}")


def _register_commands() -> None:
    from brickyard.evals import cli_cascade, cli_label

    cli_cascade.register(eval_app)
    cli_label.register(eval_app)


_register_commands()
