"""Knowledge bases over documents: read, chunk, embed and index files in the warehouse, search them
(BM25, vector, hybrid) and answer questions from them with citations.

    kb = KnowledgeBase(workspace, "handbook")
    kb.ingest("docs/")                                  # .txt .md .html .pdf .docx; unchanged files skipped
    hits = kb.search("refund policy", k=5)              # hybrid: BM25 + vector, fused by reciprocal rank
    reply = await answer(kb, "How long do refunds take?", workspace.model())
"""

from brickyard.knowledge.answer import NO_ANSWER, Citation, KnowledgeAnswer, answer
from brickyard.knowledge.base import (
    FileIssue,
    Hit,
    IngestReport,
    KnowledgeBase,
    KnowledgeStats,
    SearchMode,
    reciprocal_rank_fusion,
)
from brickyard.knowledge.chunking import Chunk, chunk_document
from brickyard.knowledge.readers import (
    SUPPORTED_SUFFIXES,
    Document,
    DocumentError,
    Section,
    UnsupportedFormatError,
    read_document,
)

__all__ = [
    "NO_ANSWER",
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "Citation",
    "Document",
    "DocumentError",
    "FileIssue",
    "Hit",
    "IngestReport",
    "KnowledgeAnswer",
    "KnowledgeBase",
    "KnowledgeStats",
    "SearchMode",
    "Section",
    "UnsupportedFormatError",
    "answer",
    "chunk_document",
    "read_document",
    "reciprocal_rank_fusion",
]
