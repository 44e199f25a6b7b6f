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


def test_every_public_error_is_defined_in_the_errors_module_and_exported() -> None:
    """The exception tree lives in one module (drawn at its top); none is defined elsewhere."""
    import importlib
    import pkgutil

    from brickyard import _errors

    for info in pkgutil.walk_packages(brickyard.__path__, "brickyard."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra
            continue
        for name, value in vars(module).items():
            public_error = isinstance(value, type) and issubclass(value, brickyard.BrickyardError)
            defined_here = public_error and not name.startswith("_") and value.__module__ == module.__name__
            if defined_here and module is not _errors:
                # only private helpers may live elsewhere (e.g. a classifier's internal retry signal)
                assert value.__doc__ and "internal" in value.__doc__.lower(), f"{module.__name__}.{name}"
    for name in _errors.__all__:
        assert name in brickyard.__all__, name
        assert name in (_errors.__doc__ or ""), f"{name} is not drawn in the tree"
