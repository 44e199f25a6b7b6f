"""The public surface is explicit: everything in `__all__` exists, and nothing private leaks in."""

from __future__ import annotations

import brickyard


def test_all_names_exist_and_are_public() -> None:
    for name in brickyard.__all__:
        assert hasattr(brickyard, name), name
        assert not name.startswith("_")
    assert sorted(brickyard.__all__) == brickyard.__all__


def test_errors_form_one_tree() -> None:
    for name in brickyard.__all__:
        obj = getattr(brickyard, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, brickyard.BrickyardError), name
    assert issubclass(brickyard.ConfigError, brickyard.UserError)
    assert issubclass(brickyard.RateLimitedError, brickyard.ProviderError)


def test_import_has_no_side_effects(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    subprocess.run([sys.executable, "-c", "import brickyard, brickyard.cli"], check=True, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []  # importing created no workspace, no files
    assert importlib.import_module("brickyard") is brickyard
