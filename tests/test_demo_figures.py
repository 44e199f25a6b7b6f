"""The demo's closing table reads `make bench`'s results: each extraction variant with the examples it was shown,
and the classification and filter figures on the same rows."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from brickyard.demo import _bench_figures


def _variant(f1: float, shown: float | None) -> dict[str, object]:
    return {"examples_shown": shown, "micro": {"f1": f1}, "p95_s": 2.5, "values_not_in_text": 0}


def test_closing_table_names_each_extraction_variant_and_its_examples(tmp_path: Path) -> None:
    (tmp_path / "extraction.json").write_text(
        json.dumps(
            {
                "models": {
                    "smollm2": _variant(0.305, None),
                    "smollm2 + examples": _variant(0.364, 2.0),
                    "gemma3 + examples": _variant(0.5, 8.0),
                },
                "emails": {
                    "gemma3 + examples": {
                        "examples_shown": 2.0,
                        "emails": 20,
                        "exact": {"amount_paid": 19, "payee": 19},
                        "p95_s": 3.4,
                        "repetitions": 0,
                    }
                },
            }
        )
    )
    console = Console(record=True, width=250)
    _bench_figures(tmp_path, console)
    text = console.export_text()
    assert "ai_extract (CoNLL-2003, Gemma 3 + examples)" in text and "8 similar examples" in text
    assert "micro-F1 0.500" in text and "micro-F1 0.364" in text and "micro-F1 0.305" in text
    assert "ai_extract (payment e-mails, Gemma 3 + examples)" in text and "amount 19/20, payee 19/20" in text
    assert "2 similar examples" in text


def _filter(f1: float, accuracy: float) -> dict[str, float]:
    return {"f1": f1, "accuracy": accuracy}


def test_closing_table_shows_the_filter_on_all_rows_and_the_classifier_of_the_demos_size(tmp_path: Path) -> None:
    """The filter's figures come from all the rows the classification was measured on when they exist (not the
    200-row subset), and the `examples` classifier is the one trained on as many rows as the demo trains on."""
    liked = "the reviewer liked the film"
    subset = {"embedding": _filter(0.663, 0.66), "keep_every_row": _filter(0.754, 0.605)}
    every = {
        "embedding": _filter(0.732, 0.728),
        "keep_every_row": _filter(0.729, 0.574),
        "examples_200": _filter(0.805, 0.785),
    }
    figures = {
        "classify": {
            "zero_shot_embedding": {"accuracy": 0.74, "rows_per_s": 38.1},
            "trained_200": {"accuracy": 0.785, "rows_per_s": 19.8},
            "trained_800": {"accuracy": 0.792, "rows_per_s": 16.5},
        },
        "filter": {liked: subset},
        "filter_all": {liked: every},
    }
    (tmp_path / "classify_mechanisms.json").write_text(json.dumps(figures))
    console = Console(record=True, width=250)
    _bench_figures(tmp_path, console)
    text = console.export_text()
    assert "logistic regression, 200 rows" in text and "accuracy 0.785 at 20 rows/s" in text
    assert "F1 0.732, accuracy 0.728 (keep all: F1 0.729)" in text and "F1 0.805, accuracy 0.785" in text
    assert "0.663" not in text and "0.792" not in text

    del figures["filter_all"]
    (tmp_path / "classify_mechanisms.json").write_text(json.dumps(figures))
    console = Console(record=True, width=250)
    _bench_figures(tmp_path, console)
    assert "F1 0.663, accuracy 0.660 (keep all: F1 0.754)" in console.export_text()
