"""The `fake` and `function` providers, so test doubles can be named in brickyard.toml too."""

from __future__ import annotations

import importlib

from brickyard._errors import UserError
from brickyard.models.base import Model
from brickyard.models.provider import ProviderInfo, ProviderSpec
from brickyard.models.testing import FakeModel, FunctionModel


def create_fake(spec: ProviderSpec) -> Model:
    """`fake:NAME`: answers from `options.answers` (default: "ok"), in order, cycling."""
    answers = spec.options.get("answers", ["ok"])
    return FakeModel(answers, name=f"fake:{spec.model}", delay_s=float(spec.options.get("delay_s", 0.0)))


def create_function(spec: ProviderSpec) -> Model:
    """`function:package.module:callable`: answers from a Python function of the request."""
    module_name, _, attr = spec.model.partition(":")
    if not attr:
        raise UserError(f"function:{spec.model} must look like `function:package.module:callable`")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot load function:{spec.model} ({exc}). Fix: check the module path") from exc
    return FunctionModel(fn, name=f"function:{spec.model}")


FAKE = ProviderInfo(name="fake", create=create_fake, description="scripted answers (test double)")
FUNCTION = ProviderInfo(name="function", create=create_function, description="answers from a Python function")
