"""Reading files into documents: plain text, Markdown, HTML, PDF and Word (.docx), with their structure.

`read_document(path)` returns a `Document` whose `sections` keep the headings (Markdown `#` lines, HTML
h1–h6, Word heading styles, PDF bookmarks) and, for PDFs, page numbers. A file that cannot be used
raises `DocumentError` with the reason (unsupported format, encrypted or image-only PDF, empty, ...).
HTML, PDF and Word readers need the `docs` extra (`beautifulsoup4`, `pypdf`, `python-docx`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brickyard._errors import DocumentError, MissingExtraError, UnsupportedFormatError


@dataclass(frozen=True)
class Section:
    """A run of text under one heading ("" before the first heading); `page` is 1-based (PDF only)."""

    heading: str
    text: str
    page: int | None = None


@dataclass
class Document:
    """One file's text, its title and its sections in reading order."""

    source_path: str
    title: str
    text: str
    sections: list[Section]
    metadata: dict[str, Any] = field(default_factory=dict)


def _clean(text: str) -> str:
    """Trim line ends and collapse runs of blank lines to one (paragraphs stay separated)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise DocumentError(path, "binary content in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # never fails; keeps legacy 8-bit files readable


def read_text(path: Path) -> Document:
    text = _clean(_decode(path))
    return Document(str(path), path.stem, text, [Section("", text)] if text else [], {"format": "text"})


_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def read_markdown(path: Path) -> Document:
    """Sections start at ATX headings (`#` … `######`); `#` lines inside code fences are code."""
    sections: list[Section] = []
    heading, fence = "", ""
    lines: list[str] = []
    title = ""

    def close() -> None:
        body = _clean("\n".join(lines))
        if body or heading:
            sections.append(Section(heading, body))

    for line in _decode(path).replace("\r\n", "\n").split("\n"):
        marker = _FENCE.match(line)
        if marker and (not fence or marker.group(1)[0] == fence[0]):
            fence = "" if fence else marker.group(1)
        match = None if fence or marker else _MD_HEADING.match(line)
        if match:
            close()
            heading, lines = match.group(2).strip(), []
            if not title and len(match.group(1)) == 1:
                title = heading
        else:
            lines.append(line)
    close()
    sections = [s for s in sections if s.text]
    text = "\n\n".join(s.text for s in sections)
    return Document(str(path), title or path.stem, text, sections, {"format": "markdown"})


_BLOCK = "\x1e"  # paragraph break marker while flattening HTML
_HEAD = "\x1d"  # heading marker: \x1d<level>\x1f<text>\x1e
_HTML_BLOCKS = [
    *("p", "div", "li", "ul", "ol", "pre", "blockquote", "table", "tr", "section", "article", "header", "footer"),
    *("nav", "aside", "main", "dl", "dt", "dd", "figure", "figcaption", "br", "hr", "address", "caption", "form"),
    *("fieldset", "details", "summary"),
]


def read_html(path: Path) -> Document:
    """Headings h1–h6 start sections; scripts, styles and other non-text elements are dropped."""
    try:
        from bs4 import BeautifulSoup, Comment
    except ImportError as exc:
        raise MissingExtraError("beautifulsoup4", "docs") from exc
    soup = BeautifulSoup(_decode(path), "html.parser")
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe", "object", "canvas"]):
        tag.decompose()
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    first_h1 = ""
    for tag in soup.find_all(re.compile(r"^h[1-6]$")):
        text = " ".join(tag.get_text(" ").split())
        if tag.name == "h1" and not first_h1:
            first_h1 = text
        tag.replace_with(f"{_BLOCK}{_HEAD}{tag.name[1]}\x1f{text}{_BLOCK}")
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_after(_BLOCK)
    for tag in soup.find_all(["td", "th"]):
        tag.insert_after(" | ")
    sections: list[Section] = []
    heading = ""
    paragraphs: list[str] = []

    def close() -> None:
        body = "\n\n".join(paragraphs)
        if body:
            sections.append(Section(heading, body))

    for piece in soup.get_text("").split(_BLOCK):
        if piece.startswith(_HEAD):
            close()
            heading, paragraphs = piece.split("\x1f", 1)[1], []
            continue
        words = re.sub(r"(?:\s*\|)+$", "", " ".join(piece.split()))  # the cell separator after a row's last cell
        if words:
            paragraphs.append(words)
    close()
    text = "\n\n".join(s.text for s in sections)
    return Document(str(path), page_title or first_h1 or path.stem, text, sections, {"format": "html"})


def _pdf_outline(reader: Any) -> dict[int, str]:
    """Bookmark titles by 0-based page (the last bookmark starting on a page wins)."""
    starts: dict[int, str] = {}

    def walk(items: Any) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
                continue
            try:
                starts[reader.get_destination_page_number(item)] = str(item.title).strip()
            except Exception:  # a broken bookmark is not a reason to lose the document
                continue

    try:
        walk(reader.outline)
    except Exception:
        return {}
    return starts


def read_pdf(path: Path) -> Document:
    """One section per page (with the page number); bookmarks give the headings when present."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError
    except ImportError as exc:
        raise MissingExtraError("pypdf", "docs") from exc
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # owner-password-only PDFs open without a password
            except DependencyError as exc:
                raise DocumentError(path, f"encrypted PDF needs the `cryptography` package to open ({exc})") from exc
            if not opened:
                raise DocumentError(path, "encrypted PDF (a password is required): decrypt it first")
        outline = _pdf_outline(reader)
        heading, sections = "", []
        for number, page in enumerate(reader.pages):
            heading = outline.get(number, heading)
            text = _clean(page.extract_text() or "")
            if text:
                sections.append(Section(heading, text, page=number + 1))
        pages = len(reader.pages)
        meta_title = str(reader.metadata.get("/Title") or "").strip() if reader.metadata else ""
    except DocumentError:
        raise
    except FileNotDecryptedError as exc:
        raise DocumentError(path, "encrypted PDF (a password is required): decrypt it first") from exc
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentError(path, f"unreadable PDF: {exc}") from exc
    if not sections:
        raise DocumentError(path, f"no extractable text in {pages} page(s): image-only or scanned PDF; OCR it first")
    text = "\n\n".join(s.text for s in sections)
    return Document(str(path), meta_title or path.stem, text, sections, {"format": "pdf", "pages": pages})


_DOCX_HEADING = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def read_docx(path: Path) -> Document:
    """Paragraphs and tables in order; `Heading n` and `Title` styles start sections."""
    try:
        import docx
        from docx.table import Table
    except ImportError as exc:
        raise MissingExtraError("python-docx", "docs") from exc
    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises several types for a broken package
        raise DocumentError(path, f"unreadable .docx: {exc}") from exc
    sections: list[Section] = []
    heading, styled_title = "", ""
    paragraphs: list[str] = []

    def close() -> None:
        body = "\n\n".join(paragraphs)
        if body:
            sections.append(Section(heading, body))

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = [" | ".join(" ".join(c.text.split()) for c in row.cells) for row in block.rows]
            text = "\n".join(r for r in rows if r.strip(" |"))
            if text:
                paragraphs.append(text)
            continue
        text = block.text.strip()
        style = (block.style.name if block.style is not None else "") or ""
        if text and (_DOCX_HEADING.match(style) or style.lower() == "title"):
            if style.lower() == "title" and not styled_title:
                styled_title = text
            close()
            heading, paragraphs = text, []
        elif text:
            paragraphs.append(text)
    close()
    core_title = (document.core_properties.title or "").strip()
    text = "\n\n".join(s.text for s in sections)
    return Document(str(path), core_title or styled_title or path.stem, text, sections, {"format": "docx"})


READERS: dict[str, Callable[[Path], Document]] = {
    ".txt": read_text,
    ".text": read_text,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".docx": read_docx,
}
SUPPORTED_SUFFIXES = frozenset(READERS)


def read_document(path: str | Path) -> Document:
    """Read one file by its suffix. Raises `DocumentError` (with the reason) when it cannot be used."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        suffix = path.suffix or "(no suffix)"
        raise UnsupportedFormatError(path, f"unsupported format {suffix!r} (supported: {supported})")
    if not path.is_file():
        raise DocumentError(path, "no such file" if not path.exists() else "not a regular file")
    try:
        document = reader(path)
    except (DocumentError, MissingExtraError):
        raise
    except OSError as exc:
        raise DocumentError(path, f"cannot read: {exc.strerror or exc}") from exc
    if not document.text.strip():
        raise DocumentError(path, "empty document: no text to index")
    return document


_GLOB = re.compile(r"[*?\[]")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def discover(spec: str | Path | Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named by paths, folders (recursed, hidden entries skipped) and glob patterns (`**` too)."""
    specs = [spec] if isinstance(spec, str | Path) else list(spec)
    files: dict[Path, None] = {}
    missing: list[tuple[str, str]] = []
    for item in specs:
        text = os.path.expanduser(str(item))
        if _GLOB.search(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                missing.append((text, "no file matches this pattern"))
        else:
            matches = [text]
            if not os.path.exists(text):
                missing.append((text, "no such file or folder"))
                continue
        for match in matches:
            path = Path(match).resolve()
            if path.is_dir():
                for child in sorted(path.rglob("*")):
                    if child.is_file() and not _is_hidden(child, path):
                        files[child] = None
            elif path.is_file():
                files[path] = None
    return list(files), missing
