"""The demo's closing table reads `make bench`'s results: each extraction variant with the examples it was shown."""

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
