"""`brickyard eval label RUN_ID`: a person labels a sample of a run's outputs pass/fail in the terminal.

The labels are the console's (same table, same meaning): each is a verdict on one candidate's output for one
case, with an optional comment. `--export` saves the set's cases with the labels as its next version, whose
`human_verdict` / `judged_output` columns the evaluator uses to measure every LLM judge's agreement.
"""

from __future__ import annotations

import getpass
import json
import random
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel

from brickyard._errors import UserError
from brickyard.store.evals import Label
from brickyard.workspace import Workspace

ANSWERS = {"p": "pass", "pass": "pass", "f": "fail", "fail": "fail", "s": None, "skip": None}


def register(app: typer.Typer) -> None:
    """Add the `label` command to the `eval` app."""
    app.command("label")(label)


def label(
    run_id: Annotated[str, typer.Argument(help="an evaluation run (`brickyard eval history`)")],
    candidate: Annotated[str | None, typer.Option(help="whose outputs to judge (default: the chosen one)")] = None,
    sample: Annotated[int, typer.Option(min=1, help="how many cases to label (a random sample)")] = 20,
    seed: Annotated[int, typer.Option(help="seed of the sample")] = 0,
    export: Annotated[bool, typer.Option(help="save the labelled cases as the set's next version")] = False,
    workspace: Annotated[str | None, typer.Option(help="workspace folder (default: current folder)")] = None,
) -> None:
    """Label a sample of a run's outputs pass or fail (p/f/s to skip, q to stop), to measure the judges."""
    from brickyard.web import evals as tables  # the console's reading of a run's cases, shared

    ws = Workspace(workspace)
    out = Console()
    rec = ws.eval_store.run(run_id)
    if rec is None:
        raise UserError(f"no evaluation run {run_id}. Fix: pick one from `brickyard eval history`")
    ids = [c["id"] for c in rec.get("candidates", [])]
    who = candidate or rec.get("chosen")
    if who not in ids:
        raise UserError(f"run {run_id} has no candidate {who!r}. Fix: --candidate one of {', '.join(ids)}")
    dataset = rec["dataset"]
    name, version = dataset["name"], int(dataset["version"])
    _, cases = tables.case_table(ws, rec, {})
    cases = [c for c in cases if who in c["outputs"]]
    if not cases:
        raise UserError(f"run {run_id} kept no outputs of {who}. Fix: label from a run that finished its cases")
    picked = random.Random(seed).sample(cases, min(sample, len(cases)))
    author = f"cli:{getpass.getuser()}"
    saved = 0
    for number, case in enumerate(picked, 1):
        output = case["outputs"][who]["output"]
        out.print(Panel(_text(case["input"]), title=f"case {number}/{len(picked)}: {case['id']}", title_align="left"))
        if case["expected"] is not None:
            out.print(f"[dim]expected:[/dim] {_text(case['expected'])}", markup=True, highlight=False)
        out.print(f"[bold]{who}:[/bold] {_text(output)}", markup=True, highlight=False)
        answer = _ask()
        if answer == "quit":
            break
        if answer is None:
            continue
        comment = typer.prompt("comment (enter for none)", default="", show_default=False).strip()[:4000]
        ws.eval_store.set_label(name, version, case["id"], Label(answer, None, comment, output, run_id, author))
        saved += 1
    out.print(f"{saved} label(s) saved on {name} v{version}.")
    if saved and not export:
        out.print("`--export` (or the console's export) saves the labelled cases as the set's next version")
    if export and saved:
        new, labelled = tables.export(ws.eval_store, name, version, author=author)
        out.print(
            f"saved {name} v{new} with {labelled} labelled case(s): runs on it measure each judge's agreement "
            "with these verdicts"
        )


def _ask() -> str | None:
    """pass / fail / None (skip) / quit, asked until the answer is one of them."""
    while True:
        answer = typer.prompt("pass, fail, skip or quit [p/f/s/q]").strip().lower()
        if answer in ("q", "quit"):
            return "quit"
        if answer in ANSWERS:
            return ANSWERS[answer]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
