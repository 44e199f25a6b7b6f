"""Structure-aware chunking: sections first, then paragraphs, then sentences, packed up to a token size.

A chunk never spans two sections (headings or PDF pages), so it keeps one heading and one page.
Consecutive chunks of a section share `overlap` tokens of text. Token counts are the provider-neutral
estimate (`estimate_tokens`, about four characters a token), so sizes are approximate for any model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from brickyard._errors import InvalidRequestError
from brickyard.knowledge.readers import Document
from brickyard.models._types import estimate_tokens

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…。])\s+")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document with where it came from; `chunk_id` is stable for the same input."""

    chunk_id: str
    position: int
    text: str
    source_path: str
    title: str
    section: str
    page: int | None

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)


def chunk_id(source_path: str, position: int, text: str) -> str:
    """A deterministic id: the hash of source, position and text."""
    return hashlib.sha256(f"{source_path}\x00{position}\x00{text}".encode()).hexdigest()[:32]


def _hard_split(text: str, size: int) -> Iterator[str]:
    """Words packed up to `size` tokens; a single longer "word" is cut by characters."""
    limit = size * 4
    current = ""
    for word in text.split():
        while len(word) > limit:
            if current:
                yield current
                current = ""
            yield word[:limit]
            word = word[limit:]
        candidate = f"{current} {word}" if current else word
        if estimate_tokens(candidate) <= size:
            current = candidate
        else:
            yield current
            current = word
    if current:
        yield current


def _units(text: str, size: int, overlap: int) -> Iterator[tuple[str, str]]:
    """(piece, joiner) pairs: paragraphs, or the sentences of a paragraph over `size`; a sentence over
    `size` is cut into word runs of `size - overlap`, so the overlap still fits before each."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if estimate_tokens(paragraph) <= size:
            yield paragraph, "\n\n"
            continue
        joiner = "\n\n"
        for sentence in _SENTENCE_END.split(paragraph):
            pieces = [sentence] if estimate_tokens(sentence) <= size else list(_hard_split(sentence, size - overlap))
            for piece in pieces:
                yield piece, joiner
                joiner = " "


def _tail(text: str, tokens: int) -> str:
    """The end of `text`, at most `tokens` long, starting at a word boundary."""
    if tokens <= 0:
        return ""
    budget = tokens * 4
    if len(text) <= budget:
        return text
    cut = len(text) - budget
    while cut < len(text) and not text[cut - 1].isspace():
        cut += 1
    return text[cut:].strip()


def pack(text: str, size: int, overlap: int) -> list[str]:
    """Pack one section's text into pieces of at most `size` tokens, `overlap` tokens carried over."""
    pieces: list[str] = []
    current = ""
    for unit, joiner in _units(text, size, overlap):
        candidate = f"{current}{joiner}{unit}" if current else unit
        if estimate_tokens(candidate) <= size:
            current = candidate
            continue
        pieces.append(current)
        room = min(overlap, size - estimate_tokens(unit) - 1)
        carried = _tail(current, room)
        current = f"{carried}{joiner}{unit}" if carried else unit
    if current:
        pieces.append(current)
    return pieces


def check_sizes(size: int, overlap: int) -> None:
    if size < 8:
        raise InvalidRequestError(f"chunk size must be at least 8 tokens, not {size}")
    if not 0 <= overlap < size // 2 + 1:
        raise InvalidRequestError(f"overlap must be between 0 and half the chunk size ({size // 2}), not {overlap}")


def chunk_document(document: Document, *, size: int = 300, overlap: int = 40) -> list[Chunk]:
    """Split a document by sections then paragraphs into chunks of at most `size` tokens."""
    check_sizes(size, overlap)
    chunks: list[Chunk] = []
    for section in document.sections:
        for text in pack(section.text, size, overlap):
            position = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(document.source_path, position, text),
                    position=position,
                    text=text,
                    source_path=document.source_path,
                    title=document.title,
                    section=section.heading,
                    page=section.page,
                )
            )
    return chunks
