"""brickyard.toml: the commented default, errors that name file, key and fix, and where the workspace lives."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from conftest import write_config

from brickyard import ConfigError, Workspace
from brickyard.config import DEFAULT_ENDPOINTS, DEFAULT_TOML, EndpointConfig, Window, load_settings, parse_settings
from brickyard.workspace import CONFIG_NAME, resolve_home

# -- the default file ----------------------------------------------------------------------------------


def test_init_writes_a_commented_default_that_parses(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")

    text = ws.config_path.read_text(encoding="utf-8")
    assert text == DEFAULT_TOML
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) > 20
    tomllib.loads(text)  # valid TOML as written

    settings = load_settings(ws.config_path)
    assert set(DEFAULT_ENDPOINTS) == {"smollm2", "gemma3", "e5-small"}
    assert settings.endpoints["smollm2"].model == "local:smollm2-135m"
    assert settings.endpoints["gemma3"].model == "local:gemma3-270m"
    assert settings.endpoints["e5-small"].model == "local:e5-small"
    assert (settings.defaults.chat, settings.defaults.embedding) == ("smollm2", "e5-small")
    assert (settings.local.parallel, settings.local.context_per_slot) == (4, 2048)
    assert settings.aliases == {} and settings.budgets == []


def test_the_commented_examples_are_valid_when_uncommented(tmp_path: Path) -> None:
    """Every example in the default file works once its `# ` is removed."""
    example = re.compile(r"^# (\[\[?[\w.-]+\]\]?|[a-z_0-9]+ = .+)$")
    text = "\n".join(line[2:] if example.match(line) else line for line in DEFAULT_TOML.splitlines())
    assert text.count("\n[endpoints.") == 6
    path = tmp_path / CONFIG_NAME
    path.write_text(text, encoding="utf-8")

    settings = load_settings(path)

    assert settings.endpoints["gpt-5-mini"].fallbacks == ["claude-haiku"]
    assert settings.endpoints["mini-ab"].split == {"gpt-5-mini": 90, "claude-haiku": 10}
    assert settings.endpoints["sentiment"].cascade is not None
    assert settings.endpoints["sentiment"].cascade.threshold == 0.8
    assert settings.endpoints["my-vllm"].base_url == "http://127.0.0.1:8000/v1"
    assert settings.aliases == {"fast": "gpt-5-mini"}
    assert settings.endpoints["gpt-5-mini"].guardrails.input_pii == "mask"
    assert settings.endpoints["gpt-5-mini"].guardrails.blocked_keywords == ["password"]
    assert settings.local.threads == 2
    assert [(b.endpoint, b.tag, b.window) for b in settings.budgets] == [
        ("gpt-5-mini", None, Window.day),
        (None, "team-a", Window.month),
    ]


def test_init_keeps_an_existing_file_unless_overwrite(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text("[aliases]\nfast = 'smollm2'\n", encoding="utf-8")
    Workspace.init(tmp_path / "ws")
    assert ws.config_path.read_text(encoding="utf-8") == "[aliases]\nfast = 'smollm2'\n"
    Workspace.init(tmp_path / "ws", overwrite=True)
    assert ws.config_path.read_text(encoding="utf-8") == DEFAULT_TOML


def test_a_missing_file_means_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "absent.toml")
    assert set(settings.endpoints) == set(DEFAULT_ENDPOINTS)


def test_a_file_may_redefine_and_refer_to_bundled_endpoints(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text(
        "[endpoints.smollm2]\nmodel = 'local:/models/mine.gguf'\n"
        "[endpoints.x]\nmodel = 'fake:x'\nfallbacks = ['gemma3']\n"
        "[aliases]\nembed = 'e5-small'\n"
        "[[budgets]]\nendpoint = 'gemma3'\nlimit_usd = 1\n",
        encoding="utf-8",
    )
    settings = load_settings(path)
    assert settings.endpoints["smollm2"].model == "local:/models/mine.gguf"
    assert settings.endpoints["gemma3"].model == "local:gemma3-270m"
    assert settings.aliases == {"embed": "e5-small"}


# -- errors name the file, the key and the fix ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[endpoints.x]\nmodel = 'fake:x'\nmodle = 'fake:y'\n", "endpoints.x.modle", "Extra inputs are not permitted"),
        ("[endpoints.x]\nmodel = 'fake:x'\nrpm = 'fast'\n", "endpoints.x.rpm", "valid integer"),
        ("[endpoints.x]\nmodel = 'fake:x'\nrpm = 0\n", "endpoints.x.rpm", "greater than 0"),
        ("[endpoints.x]\nmodel = 'fake:x'\ncache = 'sometimes'\n", "endpoints.x.cache", "valid boolean"),
        ("[endpoints.x]\nrpm = 10\n", "endpoints.x", "set exactly one of `model` or `split`"),
        (
            "[endpoints.x]\nmodel = 'fake:x'\nsplit = { y = 1 }\n",
            "endpoints.x",
            "set exactly one of `model` or `split`",
        ),
        (
            "[endpoints.y]\nmodel = 'fake:y'\n[endpoints.x]\nsplit = { y = 0 }\n",
            "endpoints.x",
            "positive weight",
        ),
        ("[endpoints.x]\nmodel = 'fake:x'\nfallbacks = ['nope']\n", "endpoints.x.fallbacks", "`nope`"),
        ("[endpoints.x]\nsplit = { nope = 1 }\n", "endpoints.x.split", "`nope`"),
        ("[aliases]\nfast = 'nope'\n", "aliases.fast", "`nope` is not a defined endpoint or alias"),
        ("[[budgets]]\nendpoint = 'nope'\nlimit_usd = 5\n", "budgets[0].endpoint", "`nope`"),
        ("[[budgets]]\ntag = 't'\nlimit_usd = 5\nwindow = 'week'\n", "budgets.0.window", "'day' or 'month'"),
        ("[[budgets]]\ntag = 't'\n", "budgets.0.limit_usd", "Field required"),
        ("[[budgets]]\ntag = 't'\nendpoint = 'smollm2'\nlimit_usd = 1\n", "budgets.0", "exactly one of"),
        ("[endpointz.x]\nmodel = 'fake:x'\n", "endpointz", "Extra inputs are not permitted"),
        ("[local]\nparallel = 1000\n", "local.parallel", "less than or equal to 64"),
        ("[endpoints.x]\nmodel = 'fake:x'\nrpm = \n", "(syntax)", "not valid TOML"),
        ("[endpoints.x\nmodel = 'fake:x'\n", "(syntax)", "not valid TOML"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "out-of-range",
        "wrong-bool",
        "no-model-or-split",
        "model-and-split",
        "zero-split-weight",
        "bad-fallback",
        "bad-split-target",
        "bad-alias",
        "bad-budget-endpoint",
        "bad-window",
        "budget-without-limit",
        "budget-two-scopes",
        "unknown-table",
        "local-out-of-range",
        "toml-syntax-value",
        "toml-syntax-table",
    ],
)
def test_config_errors_name_file_key_and_fix(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_settings(path)

    err = caught.value
    message = str(err)
    assert (err.file, err.key) == (str(path), key)
    assert message.startswith(f"{path}: `{key}`: ")
    assert problem in message
    assert "Fix: " in message and err.fix and err.fix in message


def test_specific_fixes() -> None:
    with pytest.raises(ConfigError) as unknown:
        parse_settings({"endpoints": {"x": {"model": "fake:x", "modle": "y"}}}, "b.toml")
    assert "remove this key or check its spelling" in unknown.value.fix
    with pytest.raises(ConfigError) as ref:
        parse_settings({"endpoints": {"x": {"model": "fake:x", "fallbacks": ["gtp"]}}}, "b.toml")
    assert ref.value.fix == "define [endpoints.gtp] or fix the name"
    with pytest.raises(ConfigError) as window:
        parse_settings({"budgets": [{"tag": "t", "limit_usd": 1, "window": "year"}]}, "b.toml")
    assert window.value.fix == "use one of 'day' or 'month'"
    with pytest.raises(ConfigError) as missing:
        parse_settings({"budgets": [{"tag": "t"}]}, "b.toml")
    assert missing.value.fix == "add this key"


def test_model_ids_are_valid_references() -> None:
    settings = parse_settings(
        {"endpoints": {"x": {"model": "fake:x", "fallbacks": ["fake:y"]}}, "aliases": {"quick": "fake:z"}}, "b.toml"
    )
    assert settings.endpoints["x"].fallbacks == ["fake:y"]
    assert settings.aliases["quick"] == "fake:z"


def test_endpoint_config_defaults() -> None:
    config = EndpointConfig(model="fake:x")
    assert (config.max_retries, config.timeout_s, config.cache, config.fallbacks) == (4, 60.0, True, [])
    assert (config.rpm, config.tpm, config.max_concurrency, config.api_key_env) == (None, None, None, None)


def test_a_workspace_surfaces_config_errors(workspace: Workspace) -> None:
    ws = write_config(workspace, "[endpoints.x]\nmodel = 'fake:x'\nmodle = 'oops'\n")
    with pytest.raises(ConfigError) as caught:
        ws.model("x")
    assert str(ws.config_path) in str(caught.value)
    assert "`endpoints.x.modle`" in str(caught.value)


# -- where the workspace lives -------------------------------------------------------------------------


def test_default_home_is_dot_brickyard_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BRICKYARD_HOME", raising=False)
    assert Workspace().path == tmp_path / ".brickyard"
    ws = Workspace.init()
    assert ws.config_path == tmp_path / ".brickyard" / CONFIG_NAME
    assert ws.config_path.exists()


def test_brickyard_home_overrides_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRICKYARD_HOME", str(tmp_path / "home"))
    assert Workspace().path == tmp_path / "home"
    Workspace.init()
    assert (tmp_path / "home" / CONFIG_NAME).exists()
    assert not (tmp_path / ".brickyard").exists()


def test_an_explicit_path_overrides_brickyard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRICKYARD_HOME", str(tmp_path / "home"))
    assert Workspace(tmp_path / "explicit").path == tmp_path / "explicit"
    assert Workspace(str(tmp_path / "explicit")).path == tmp_path / "explicit"


def test_the_workspace_env_mapping_is_used_instead_of_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRICKYARD_HOME", str(tmp_path / "from-os"))
    assert Workspace(env={"BRICKYARD_HOME": str(tmp_path / "from-map")}).path == tmp_path / "from-map"
    assert Workspace(env={}).path == tmp_path / ".brickyard"
    assert resolve_home(None, {"BRICKYARD_HOME": ""}) == tmp_path / ".brickyard"


def test_home_expands_the_user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_home("~/ws", {}) == tmp_path / "ws"
    assert resolve_home(None, {"BRICKYARD_HOME": "~/other"}) == tmp_path / "other"


def test_each_workspace_reads_its_own_config(tmp_path: Path) -> None:
    one = Workspace.init(tmp_path / "one")
    two = Workspace.init(tmp_path / "two")
    one.config_path.write_text("[aliases]\nfast = 'gemma3'\n", encoding="utf-8")
    assert Workspace(one.path).settings.aliases == {"fast": "gemma3"}
    assert two.settings.aliases == {}
