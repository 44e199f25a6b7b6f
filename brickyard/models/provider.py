"""How providers plug in: a `ProviderInfo` per provider, found through the `brickyard.providers` entry points.

Built-in providers register through the same entry points a third-party plugin would use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brickyard.models.base import Model


@dataclass(frozen=True)
class ProviderSpec:
    """Everything a provider needs to build one model."""

    provider: str
    model: str
    endpoint: str
    api_key: str | None = None
    base_url: str | None = None
    timeout_s: float = 60.0
    models_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderInfo:
    """A provider: its name, how to build a model, and which key setting it needs (if any)."""

    name: str
    create: Callable[[ProviderSpec], Model]
    key_env: str | None = None
    description: str = ""
    is_ready: Callable[[ProviderSpec], str | None] = field(default=lambda spec: None)
    """Returns None when the model can be used now, else the reason it cannot (e.g. not pulled)."""


@dataclass(frozen=True)
class NamespaceInfo:
    """Names a package serves under a prefix (`agent:NAME`), registered through the `brickyard.namespaces` entry
    points the way a provider is. `create(name, host)` builds the model for `prefix:name` (raising a `UserError`
    when it does not exist), `names(host)` lists what is there; `host` is the workspace the registry belongs to."""

    prefix: str
    create: Callable[[str, Any], Model]
    names: Callable[[Any], list[str]]
    kind: str = ""
