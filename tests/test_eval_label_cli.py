"""`brickyard eval label`: a person labels a run's outputs in the terminal; the judges' agreement reads them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from web_seed import Seeded, seed

from brickyard.evals import Case
from brickyard.evals.judge_agreement import calibration_cases

BIN = Path(sys.executable).parent / "brickyard"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("label"))


def label(seeded: Seeded, *args: str, answers: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN), "eval", "label", *args, "--workspace", str(seeded.workspace.path)]
    return subprocess.run(cmd, input=answers, capture_output=True, text=True, timeout=120)


def test_labels_typed_in_the_terminal_become_the_next_version_the_judges_are_measured_on(seeded: Seeded) -> None:
    # case 1: pass, no comment; case 2: an unknown answer is asked again, then fail with a comment; case 3 skipped
    done = label(
        seeded,
        seeded.run_id,
        "--candidate",
        "mid/zero-shot",
        "--sample",
        "3",
        "--export",
        answers="p\n\nmaybe\nf\nwrong label\ns\n",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 label(s) saved" in done.stdout
    store = seeded.workspace.eval_store
    version = store.version("reviews").version  # type: ignore[union-attr]  # the latest
    cases = [
        Case(id=c.id, input=c.input, expected=c.expected, metadata=c.metadata) for c in store.cases("reviews", version)
    ]
    labelled = calibration_cases(cases)
    assert sorted(c.metadata["human_verdict"] for c in labelled) == ["fail", "pass"]
    assert all(c.metadata["labelled_by"].startswith("cli:") and "judged_output" in c.metadata for c in labelled)
    assert [c.metadata.get("human_comment") for c in labelled if c.metadata["human_verdict"] == "fail"] == [
        "wrong label"
    ]


def test_quit_stops_at_once_and_bad_names_are_clear_errors(seeded: Seeded) -> None:
    quit_now = label(seeded, seeded.run_id, "--sample", "5", answers="q\n")
    assert quit_now.returncode == 0 and "0 label(s) saved" in quit_now.stdout
    missing = label(seeded, "no-such-run", answers="")
    assert missing.returncode != 0 and "no evaluation run no-such-run" in missing.stdout + missing.stderr
    wrong = label(seeded, seeded.run_id, "--candidate", "nobody/zero-shot", answers="")
    assert wrong.returncode != 0 and "good/zero-shot" in wrong.stdout + wrong.stderr  # the candidates it has
