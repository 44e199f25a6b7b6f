"""`brickyard eval cascade AGENT ...`: tune a cascade on a dataset's dev split, verify on test, optionally deploy."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from brickyard._errors import UserError
from brickyard.config import Confidence
from brickyard.evals.cascade import CascadeReport
from brickyard.workspace import Workspace

CLASSIFIER = "classifier"


def register(app: typer.Typer) -> None:
    """Add the `cascade` command to the `eval` app."""
    app.command("cascade")(cascade)


def cascade(
    agent: Annotated[str, typer.Argument(help="a classify agent (its labels and instructions are used)")],
    dataset: Annotated[str, typer.Option(help="a labelled evaluation set (`brickyard eval dataset create`)")],
    proxy: Annotated[
        str,
        typer.Option(help="the cheap endpoint, or `classifier` (trained on half the dev split)"),
    ],
    strong: Annotated[str | None, typer.Option(help="the strong endpoint (default: the agent's endpoint)")] = None,
    target: Annotated[float, typer.Option(help="the cascade's quality as a share of the strong model's")] = 0.95,
    confidence: Annotated[Confidence, typer.Option(help="how the proxy's confidence is measured")] = Confidence.auto,
    samples: Annotated[int, typer.Option(help="samples per row when confidence is samples")] = 5,
    safety_se: Annotated[
        float, typer.Option(help="dev quality must clear the target by this many standard errors")
    ] = 1.0,
    teacher_labels: Annotated[
        bool, typer.Option(help="train the classifier on the strong model's answers instead of the dataset's labels")
    ] = False,
    embedder: Annotated[str, typer.Option(help="embedding endpoint for the classifier")] = "e5-small",
    deploy: Annotated[str | None, typer.Option(help="write the cascade as endpoint NAME; the agent uses it")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    workspace: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="workspace folder (default $BRICKYARD_HOME or ./.brickyard)"),
    ] = None,
) -> None:
    """Tune a cascade (cheap proxy first, unsure rows to the strong model) to reach a quality target; report cost."""
    out = Console(width=None if sys.stdout.isatty() else 160)
    ws = Workspace(workspace)
    try:
        report, proxy_endpoint = asyncio.run(
            _tune(ws, agent, dataset, proxy, strong, target, confidence, samples, safety_se, teacher_labels, embedder)
        )
    except UserError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    version = None
    if deploy:
        from brickyard.evals.cascade_deploy import deploy_cascade

        try:
            version = deploy_cascade(
                ws,
                deploy,
                proxy_endpoint,
                report.strong,
                report.threshold,
                agent=agent,
                confidence=confidence,
                samples=samples,
                evidence={"report": report.summary(), "met_target": report.met_target},
            )
        except UserError as exc:
            Console(stderr=True).print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({**report.to_dict(), "deployed": deploy, "agent_version": version}, indent=2, default=str))
        return
    table = Table("system", "accuracy [95% CI]", "USD", "strong calls", "deferred", "seconds", "errors")
    for row in report.rows():
        table.add_row(*row)
    out.print(table)
    out.print(report.summary())
    if deploy:
        out.print(f"deployed endpoint [bold]{deploy}[/bold]; agent {agent} is now version {version} on it")


async def _tune(
    ws: Workspace,
    agent: str,
    dataset_name: str,
    proxy: str,
    strong: str | None,
    target: float,
    confidence: Confidence,
    samples: int,
    safety_se: float,
    teacher_labels: bool,
    embedder: str,
) -> tuple[CascadeReport, str]:
    from brickyard.agents.runner import Agents
    from brickyard.agents.spec import AgentKind
    from brickyard.evals.cascade import tune_cascade
    from brickyard.evals.cascade_deploy import save_proxy_classifier
    from brickyard.evals.datasets import EvalDatasets

    agents = Agents(ws)
    datasets = EvalDatasets(ws)
    try:
        spec, _ = agents.store.get(agent)
        if spec.kind is not AgentKind.classify or not spec.labels or spec.multilabel:
            raise UserError(f"agent {agent} is a {spec.kind.value} agent; cascades are tuned for single-label classify")
        data = datasets.get(dataset_name)
        strong_name = strong or spec.endpoint or ws.settings.defaults.chat
        labels = spec.labels
        instructions = spec.system_rules() or None
        registry = ws.registry
        tune = data.dev
        if proxy == CLASSIFIER:  # trained on half the dev split; the threshold is tuned on the other half
            cut = len(data.dev) // 2
            if cut < 2:
                raise UserError(f"dataset {dataset_name} has {len(data.dev)} dev cases; a classifier needs more")
            teacher = registry.get(strong_name) if teacher_labels else None
            path = await save_proxy_classifier(
                ws, agent, data.dev[:cut], labels, embedder=embedder, teacher=teacher, instructions=instructions
            )
            proxy, tune = f"{CLASSIFIER}:{path}", data.dev[cut:]
        report = await tune_cascade(
            tune,
            data.test,
            labels,
            registry.get(proxy),
            registry.get(strong_name),
            target=target,
            confidence=Confidence.score if proxy.startswith(f"{CLASSIFIER}:") else confidence,
            samples=samples,
            instructions=instructions,
            prices=(registry.price(proxy), registry.price(strong_name)),
            names=(proxy, strong_name),
            safety_se=safety_se,
        )
        return report, proxy
    finally:
        agents.close()
        datasets.close()
        await ws.aclose()
