"""The record of an evaluation (JSON, per-case JSONL/Parquet) and its self-contained HTML report."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from brickyard.evals.sweep import Row, SweepResult


def record(
    result: SweepResult,
    rows: list[Row],
    *,
    policy: str,
    chosen: str | None,
    comparison: dict[str, Any] | None,
    pareto: list[str],
    saving: dict[str, Any],
    applied_version: int | None,
    equivalence: dict[str, dict[str, Any]] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The whole evaluation as plain data (what `eval rerun`, MLflow export and the report read)."""
    return {
        "run_id": result.run_id,
        "agent": result.agent,
        "agent_version": result.agent_version,
        "dataset": {"name": result.dataset.name, "version": result.dataset.version, "test": len(result.dataset.test)},
        "started": result.started,
        "elapsed_s": result.elapsed_s,
        "partial": result.partial,
        "metrics": [s.name for s in result.scorers],
        "primary": result.primary,
        "rungs": result.rungs,
        "candidates": [
            {
                "id": r.candidate.id,
                "endpoint": r.candidate.endpoint,
                "strategy": r.candidate.strategy.value,
                "answer_mode": r.candidate.answer_mode.value if r.candidate.answer_mode else None,
                "k": r.candidate.k,
                "variant": r.candidate.variant,
                "instructions": r.candidate.instructions,
            }
            for r in result.results
        ],
        "leaderboard": [asdict(row) for row in rows],
        "comparison": comparison,
        "pareto": pareto,
        "policy": policy,
        "chosen": chosen,
        "choice_reason": reason,
        "equivalence": equivalence or {},
        "applied_version": applied_version,
        "halving": saving,
    }


def write_cases(result: SweepResult, folder: Path) -> Path:
    """Per-case outputs and scores of every candidate, as JSONL (and Parquet when pyarrow is installed)."""
    cases = {c.id: c for c in result.dataset.test}
    lines = []
    for r in result.results:
        for index, run in enumerate(r.ran):
            lines.append(
                {
                    "run_id": result.run_id,
                    "candidate": r.id,
                    "case_id": run.case_id,
                    "input": cases[run.case_id].input if run.case_id in cases else None,
                    "expected": json.dumps(cases[run.case_id].expected) if run.case_id in cases else None,
                    "output": json.dumps(run.output, ensure_ascii=False, default=str),
                    "error": run.error,
                    "cost_usd": run.cost_usd,
                    "latency_s": run.latency_s,
                    **{f"score_{name}": scores[index].value for name, scores in r.scores.items()},
                }
            )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.run_id}.cases.jsonl"
    path.write_text("".join(json.dumps(line, default=str) + "\n" for line in lines), encoding="utf-8")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if lines:
            pq.write_table(pa.Table.from_pylist(lines), folder / f"{result.run_id}.cases.parquet")
    except ImportError:
        pass
    return path


def _fmt(metric: dict[str, float]) -> str:
    return f"{metric['estimate']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def terminal_table(rec: dict[str, Any]) -> Table:
    """The leaderboard for the terminal: score with its 95% interval, cost, latency, status."""
    table = Table(title=f"{rec['agent']} on {rec['dataset']['name']} v{rec['dataset']['version']} (95% bootstrap CI)")
    table.add_column("candidate")
    for name in rec["metrics"]:
        table.add_column(name, justify="right")
    for label in ("USD/1k", "p50 s", "p95 s", "cases", "errors", "status"):
        table.add_column(label, justify="right")
    for row in rec["leaderboard"]:
        status = "chosen" if row["id"] == rec["chosen"] else ""
        if row["dropped_at"] is not None:
            status = f"dropped at {row['dropped_at']}"
        elif row["id"] in rec["pareto"]:
            status = status or "pareto"
        table.add_row(
            row["id"],
            *(_fmt(row["metrics"][m]) if m in row["metrics"] else "-" for m in rec["metrics"]),
            f"{row['usd_per_1k']:.4f}",
            f"{row['latency_p50_s']:.2f}",
            f"{row['latency_p95_s']:.2f}",
            str(row["cases"]),
            str(row["errors"]),
            status,
        )
    return table


def _plot(rec: dict[str, Any]) -> str:
    """The quality-vs-cost plot as an inline PNG data URI (cost: USD per 1k rows, or latency when all equal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = rec["primary"]
    rows = [r for r in rec["leaderboard"] if primary in r["metrics"]]
    flat = len({round(r["usd_per_1k"], 12) for r in rows}) <= 1
    x_of = (lambda r: r["latency_p50_s"]) if flat else (lambda r: r["usd_per_1k"])
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for row in rows:
        m = row["metrics"][primary]
        x = x_of(row)
        if not math.isfinite(x):
            continue
        on_front = row["id"] in rec["pareto"]
        style = "o" if row["dropped_at"] is None else "x"
        axes.errorbar(
            x,
            m["estimate"],
            yerr=[[m["estimate"] - m["low"]], [m["high"] - m["estimate"]]],
            fmt=style,
            color="tab:red" if row["id"] == rec["chosen"] else ("tab:blue" if on_front else "tab:gray"),
            capsize=3,
        )
        axes.annotate(row["id"], (x, m["estimate"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    front = sorted((x_of(r), r["metrics"][primary]["estimate"]) for r in rows if r["id"] in rec["pareto"])
    if len(front) > 1:
        axes.plot(*zip(*front, strict=True), "--", color="tab:blue", linewidth=1)
    axes.set_xlabel("latency p50 (s); every candidate costs the same USD" if flat else "USD per 1,000 rows")
    axes.set_ylabel(f"{primary} (95% CI)")
    axes.set_title("quality vs cost: Pareto frontier dashed, chosen in red, dropped as x")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def html_report(rec: dict[str, Any]) -> str:
    """A self-contained HTML page: leaderboard, comparison, Pareto plot, halving saving, choice."""
    e = html.escape
    metrics = rec["metrics"]
    head = "".join(f"<th>{e(m)}</th>" for m in metrics)
    body = []
    for row in rec["leaderboard"]:
        cells = "".join(f"<td>{e(_fmt(row['metrics'][m])) if m in row['metrics'] else '-'}</td>" for m in metrics)
        status = "dropped at " + str(row["dropped_at"]) if row["dropped_at"] is not None else ""
        if row["id"] == rec["chosen"]:
            status = "chosen"
        errors = "; ".join(row["sample_errors"])
        body.append(
            f"<tr class='{'chosen' if row['id'] == rec['chosen'] else ''}'><td>{e(row['id'])}</td>{cells}"
            f"<td>{row['usd_per_1k']:.4f}</td><td>{row['latency_p50_s']:.2f}</td><td>{row['latency_p95_s']:.2f}</td>"
            f"<td>{row['cases']}</td><td title='{e(errors)}'>{row['errors']}</td><td>{e(status)}</td></tr>"
        )
    comparison = rec["comparison"]
    compared = (
        f"<p>Best <b>{e(comparison['best'])}</b> vs runner-up <b>{e(comparison['runner_up'])}</b> on "
        f"{e(comparison['metric'])}: difference {comparison['diff']:+.3f} "
        f"[{comparison['low']:+.3f}, {comparison['high']:+.3f}], p = {comparison['p_value']:.3f} "
        f"({'significant' if comparison['significant'] else 'not significant'} at 0.05, paired bootstrap).</p>"
        if comparison
        else "<p>Fewer than two candidates finished, so there is no comparison.</p>"
    )
    saving = rec["halving"]
    chosen = (
        f"<p>Policy <code>{e(rec['policy'])}</code> chose <b>{e(rec['chosen'])}</b>"
        + (f", saved as agent version {rec['applied_version']}.</p>" if rec["applied_version"] else ".</p>")
        if rec["chosen"]
        else f"<p>Policy <code>{e(rec['policy'])}</code> chose nothing: no candidate qualified.</p>"
    )
    partial = "<p class='warn'>The sweep stopped at its cost cap: results are partial.</p>" if rec["partial"] else ""
    judges = _judges_html(rec)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>brickyard evaluation {e(rec["run_id"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.chosen {{ background: #fde8e8; font-weight: bold; }}
.warn {{ color: #a40; font-weight: bold; }}
</style></head><body>
<h1>Evaluation of agent <code>{e(rec["agent"])}</code> (version {rec["agent_version"]})</h1>
<p>Dataset <code>{e(rec["dataset"]["name"])}</code> v{rec["dataset"]["version"]}, {rec["dataset"]["test"]} test
cases; run <code>{e(rec["run_id"])}</code>, {rec["elapsed_s"]:.1f} s. Scores are means with 95% bootstrap
confidence intervals.</p>
{partial}{chosen}
<h2>Leaderboard</h2>
<table><thead><tr><th>candidate</th>{head}<th>USD / 1k rows</th><th>p50 s</th><th>p95 s</th><th>cases</th>
<th>errors</th><th>status</th></tr></thead><tbody>{"".join(body)}</tbody></table>
<h2>Is the best significantly better?</h2>{compared}{judges}
<h2>Quality vs cost</h2><img alt="Pareto plot" src="{_plot(rec)}">
<p>Pareto frontier: {e(", ".join(rec["pareto"]) or "none")}.</p>
<h2>Successive halving</h2>
<p>Rungs {e(str(rec["rungs"]))}: {saving["case_runs"]} case runs instead of {saving["case_runs_full"]}
({100 * saving["case_runs_saved"]:.0f}% saved), {saving["calls"]} model calls instead of about
{saving["calls_full_estimate"]}, {saving["usd"]:.4f} USD instead of about {saving["usd_full_estimate"]:.4f}.</p>
</body></html>
"""


UNKNOWN_AGREEMENT = (
    "agreement with people unknown: the set has no human verdicts, so its scores are unchecked "
    "(label a sample: brickyard eval label {run_id})"
)


FLAGGED = "FLAGGED: agreement below the threshold"


def agreement_text(agreement: dict[str, Any], run_id: str) -> str:
    """A judge's agreement with people in words (after its name), or that it is unknown; the terminal and the
    HTML report both say it this way (the flag is added by each in its own markup)."""
    a = agreement
    if a.get("unknown"):
        return ": " + UNKNOWN_AGREEMENT.format(run_id=run_id)
    return (
        f" vs people on {a['cases']} cases: accuracy {a['accuracy']:.2f} [{a['accuracy_ci'][0]:.2f}, "
        f"{a['accuracy_ci'][1]:.2f}], Cohen's kappa {a['kappa']:.2f} [{a['kappa_ci'][0]:.2f}, {a['kappa_ci'][1]:.2f}]"
    )


def _judges_html(rec: dict[str, Any]) -> str:
    """How far each LLM judge's scores can be trusted: its agreement with people, or that it is unknown."""
    agreements = rec.get("judge_agreement") or {}
    if not agreements:
        return ""
    e = html.escape
    items = [
        f"<li><b>{e(name)}</b>{e(agreement_text(a, rec['run_id']))}"
        + (f" <span class='warn'>{FLAGGED}</span>" if a.get("flagged") else "")
        + "</li>"
        for name, a in agreements.items()
    ]
    return "<h2>Can the judges be trusted?</h2><ul>" + "".join(items) + "</ul>"


def write_report(rec: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_report(rec), encoding="utf-8")
    return path
