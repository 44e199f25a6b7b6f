"""Deploying a cascade: its `[endpoints.NAME]` block in brickyard.toml, the agent's new version, and the
proxy classifier saved content-addressed in the workspace."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from brickyard._errors import UserError
from brickyard.config import DEFAULT_TOML, Confidence, parse_settings
from brickyard.evals._types import Case
from brickyard.evals.cascade import train_proxy_classifier
from brickyard.models.base import Model
from brickyard.workspace import Workspace

CLASSIFIERS_DIR = "classifiers"


async def save_proxy_classifier(
    workspace: Workspace,
    name: str,
    cases: Sequence[Case],
    labels: Sequence[str] | Mapping[str, str],
    *,
    embedder: str = "e5-small",
    teacher: Model | None = None,
    instructions: str | None = None,
) -> Path:
    """Train the embedding classifier on `cases` (labelled by `teacher` when given, else their expected labels)
    and save it under `<workspace>/classifiers/NAME-HASH.json`: content-addressed, so a retrained classifier
    never meets a stale cached answer. Returns the absolute path, for a `classifier:PATH` endpoint."""
    folder = workspace.path / CLASSIFIERS_DIR
    scratch = folder / f".{name}.training.json"
    await train_proxy_classifier(
        cases,
        labels,
        scratch,
        embedder=workspace.registry.get(embedder),
        embedder_name=embedder,
        teacher=teacher,
        instructions=instructions,
    )
    digest = hashlib.sha256(scratch.read_bytes()).hexdigest()[:10]
    final = folder / f"{name}-{digest}.json"
    scratch.replace(final)
    return final.resolve()


def cascade_block(
    name: str, proxy: str, strong: str, threshold: float, *, confidence: Confidence = Confidence.auto, samples: int = 5
) -> str:
    """The `[endpoints.NAME]` TOML block of a cascade."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise UserError(f"endpoint name `{name}` must be letters, digits, '-' and '_'. Fix: e.g. sentiment-cascade")
    options = [f"proxy = {json.dumps(proxy)}", f"strong = {json.dumps(strong)}", f"threshold = {threshold!r}"]
    if Confidence(confidence) is not Confidence.auto:
        options.append(f'confidence = "{Confidence(confidence).value}"')
    if samples != 5:
        options.append(f"samples = {samples}")
    return f"\n[endpoints.{name}]\ncascade = {{ {', '.join(options)} }}\n"


def deploy_cascade(
    workspace: Workspace,
    name: str,
    proxy: str,
    strong: str,
    threshold: float,
    *,
    agent: str | None = None,
    confidence: Confidence = Confidence.auto,
    samples: int = 5,
    evidence: dict[str, Any] | None = None,
) -> int | None:
    """Append the cascade endpoint `name` to the workspace's brickyard.toml (comments kept; the file is
    validated before it is written) and, with `agent`, save a new agent version whose endpoint is `name`.

    Returns the new agent version (None without `agent`). A Workspace opened afterwards sees the endpoint.
    """
    path = workspace.config_path
    if name in workspace.settings.endpoints:
        raise UserError(f"endpoint `{name}` already exists in {path}. Fix: choose another name or remove that block")
    text = path.read_text(encoding="utf-8") if path.exists() else DEFAULT_TOML
    updated = (
        text.rstrip("\n") + "\n" + cascade_block(name, proxy, strong, threshold, confidence=confidence, samples=samples)
    )
    try:
        parse_settings(tomllib.loads(updated), str(path))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(
            f"{path} would not be valid TOML after adding the cascade ({exc}). Fix: check the file"
        ) from None
    version: int | None = None
    if agent is not None:
        from brickyard.agents.runner import Agents

        agents = Agents(workspace)
        try:
            spec, _ = agents.store.get(agent)
            notes = {**spec.evidence, "cascade": {"endpoint": name, **(evidence or {})}}
            path.write_text(updated, encoding="utf-8")
            version = agents.create(spec.model_copy(update={"endpoint": name, "evidence": notes}))
        finally:
            agents.close()
    else:
        path.write_text(updated, encoding="utf-8")
    return version
