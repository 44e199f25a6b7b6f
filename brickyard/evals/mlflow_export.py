"""Optional export of an evaluation to MLflow (`pip install 'brickyard[mlflow]'`), to a local file store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from brickyard._errors import MissingExtraError


def export(rec: dict[str, Any], report: Path, tracking_dir: Path) -> str:
    """One MLflow run per candidate (params, metrics with CI bounds, cost, latency) under one parent run
    holding the report; returns the parent run id. The experiment is named after the agent."""
    try:
        import mlflow
    except ImportError:
        raise MissingExtraError("mlflow", "mlflow") from None
    tracking_dir.mkdir(parents=True, exist_ok=True)
    # MLflow 3 keeps the local file store in maintenance mode and asks for this opt-in to use it
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(tracking_dir.resolve().as_uri())
    mlflow.set_experiment(f"brickyard-{rec['agent']}")
    with mlflow.start_run(run_name=f"eval-{rec['run_id']}") as parent:
        mlflow.log_params(
            {
                "agent": rec["agent"],
                "agent_version": rec["agent_version"],
                "dataset": f"{rec['dataset']['name']}@{rec['dataset']['version']}",
                "policy": rec["policy"],
                "chosen": rec["chosen"] or "",
            }
        )
        mlflow.log_artifact(str(report))
        for row in rec["leaderboard"]:
            with mlflow.start_run(run_name=row["id"], nested=True):
                mlflow.log_param("candidate", row["id"])
                metrics = {"usd_per_1k": row["usd_per_1k"], "cases": row["cases"], "errors": row["errors"]}
                for name, value in row["metrics"].items():
                    metrics.update(
                        {name: value["estimate"], f"{name}_low": value["low"], f"{name}_high": value["high"]}
                    )
                if row["latency_p50_s"] == row["latency_p50_s"]:
                    metrics.update(latency_p50_s=row["latency_p50_s"], latency_p95_s=row["latency_p95_s"])
                mlflow.log_metrics(metrics)
        return str(parent.info.run_id)
