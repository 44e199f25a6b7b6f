"""A knowledge base: documents chunked, embedded and indexed in the workspace warehouse (DuckDB).

Two tables per knowledge base `NAME`: `kb_NAME_documents` (one row per file, with its sha256, so
re-ingesting skips unchanged files) and `kb_NAME_chunks` (text, where it came from, metadata JSON and
the embedding), with an HNSW index (cosine) on the embedding and a BM25 full-text index on the text.
Search is by vector, by BM25, or both fused by reciprocal rank (hybrid, the default).

The DuckDB calls are synchronous; embedding calls go through the embedding endpoint's model stack
(metered like any call) and are async: `aingest`/`asearch`/`asearch_many` are the async API,
`ingest`/`search`/`search_many` the synchronous one (for scripts and notebooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from brickyard._errors import InvalidRequestError, MissingExtraError, UserError
from brickyard.knowledge.chunking import Chunk, check_sizes, chunk_document
from brickyard.knowledge.readers import (
    SUPPORTED_SUFFIXES,
    DocumentError,
    UnsupportedFormatError,
    discover,
    read_document,
    sha256_of,
)
from brickyard.models.base import Model
from brickyard.sql.search import load_extensions
from brickyard.workspace import Workspace

T = TypeVar("T")

EMBED_BATCH = 32  # texts per embedding call
FLUSH_CHUNKS = 256  # chunks embedded and written together
RRF_K = 60  # the reciprocal rank fusion constant of Cormack et al. (2009)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_COLUMN_FILTERS = ("source_path", "title", "section", "page")


class SearchMode(StrEnum):
    hybrid = "hybrid"
    vector = "vector"
    bm25 = "bm25"


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. `score` is the mode's score (RRF for hybrid, cosine for vector, BM25 for
    bm25); `similarity` is the cosine similarity to the query (None in bm25 mode); `rank` starts at 1."""

    chunk_id: str
    text: str
    source_path: str
    title: str
    section: str
    page: int | None
    score: float
    rank: int
    similarity: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileIssue:
    """A file that was skipped or failed, and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What one ingest did: files added, updated (their chunks replaced), unchanged, skipped, failed."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[FileIssue] = field(default_factory=list)
    errors: list[FileIssue] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0

    @property
    def documents(self) -> int:
        """Documents written (added or updated)."""
        return len(self.added) + len(self.updated)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
            f"{len(self.skipped)} skipped, {len(self.errors)} failed, {self.chunks} chunks in {self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class KnowledgeStats:
    name: str
    documents: int
    chunks: int
    tokens: int
    dimension: int | None
    embedding: str | None
    formats: dict[str, int]


@dataclass
class _Pending:
    """A read and chunked file waiting for its embeddings."""

    path: Path
    doc_id: str
    sha256: str
    mtime: float
    title: str
    metadata: dict[str, Any]
    chunks: list[Chunk]
    updated: bool
    vectors: list[list[float]] = field(default_factory=list)
    error: str | None = None


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous code: `asyncio.run`, or on a helper thread when a loop is
    already running in this thread (a notebook), which then waits for it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="brickyard-kb") as pool:
        return pool.submit(asyncio.run, coro).result()


def reciprocal_rank_fusion(rankings: Sequence[Sequence[tuple[str, float]]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse rankings: each item scores the sum of 1/(k + rank) over the rankings it appears in
    (Cormack, Clarke & Büttcher, 2009). Ties keep first-seen order (the first ranking leads)."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, (item, _) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda pair: -pair[1])


async def _embed_each(model: Model, texts: list[str]) -> list[list[float] | str]:
    """A vector per text, or the error that text got: a failed batch is retried text by text, so one
    bad chunk fails only its own file."""
    try:
        result = await model.embed(texts)
        if len(result.vectors) != len(texts):
            raise InvalidRequestError(f"got {len(result.vectors)} vectors for {len(texts)} texts")
        return list(result.vectors)
    except Exception as exc:
        if len(texts) == 1:
            return [f"embedding failed: {type(exc).__name__}: {exc}"]
    return [item for text in texts for item in await _embed_each(model, [text])]


def _embed_text(chunk: Chunk) -> str:
    """What is embedded: the chunk with its heading (and its title when the document has a real one)."""
    header = [chunk.title] if chunk.title and chunk.title != Path(chunk.source_path).stem else []
    if chunk.section and chunk.section != chunk.title:
        header.append(chunk.section)
    return "\n".join([*header, chunk.text]) if header else chunk.text


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


class KnowledgeBase:
    """Documents, chunks and search indexes named `name` in the workspace warehouse.

    `con` is a DuckDB connection (plain, or from `brickyard.sql.duckdb.connect`); without one the
    knowledge base opens `<workspace>/warehouse.duckdb` itself (and `close()` closes it).
    `embedding` names the embedding endpoint (default: the one the knowledge base was built with,
    else `[defaults] embedding`).
    """

    def __init__(self, workspace: Workspace, name: str, con: Any = None, *, embedding: str | None = None) -> None:
        if not _NAME.match(name):
            raise InvalidRequestError(
                f"knowledge base name {name!r} must be lowercase letters, digits and underscores, "
                "starting with a letter (at most 48). Fix: e.g. `handbook` or `support_docs`"
            )
        self.workspace = workspace
        self.name = name
        self.documents_table = f"kb_{name}_documents"
        self.chunks_table = f"kb_{name}_chunks"
        self._owns_connection = con is None
        if con is None:
            try:
                import duckdb
            except ImportError as exc:
                raise MissingExtraError("duckdb", "sql") from exc
            workspace.path.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(workspace.warehouse_path))  # the file `brickyard.sql.duckdb.connect` opens
        self.con = getattr(con, "duckdb", con)
        load_extensions(self.con)
        self.con.execute("SET hnsw_enable_experimental_persistence = true")
        recorded = self._recorded() or {}
        if embedding is not None and recorded.get("embedding") not in (None, embedding):
            raise UserError(
                f"knowledge base {name} was built with embedding endpoint {recorded['embedding']!r}, "
                f"not {embedding!r}. Fix: leave `embedding` unset, or delete() it and ingest again"
            )
        self.embedding: str = embedding or recorded.get("embedding") or workspace.settings.defaults.embedding

    # --- storage -------------------------------------------------------------------------------

    def _recorded(self) -> dict[str, Any] | None:
        """None when the chunks table does not exist, else the embedding and dimension from its comment."""
        row = self.con.execute(
            "SELECT coalesce(comment, '{}') FROM duckdb_tables() WHERE table_name = ? "
            "AND schema_name = current_schema() AND database_name = current_database()",
            [self.chunks_table],
        ).fetchone()
        if row is None:
            return None
        with contextlib.suppress(json.JSONDecodeError):
            data = json.loads(row[0])
            return data if isinstance(data, dict) else {}
        return {}

    def _exists(self) -> bool:
        return self._recorded() is not None

    def _create(self, dimension: int) -> None:
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {self.documents_table} (doc_id VARCHAR PRIMARY KEY, source_path VARCHAR, "
            "title VARCHAR, sha256 VARCHAR, mtime TIMESTAMPTZ, metadata JSON, n_chunks INTEGER)"
        )
        self.con.execute(
            f"CREATE TABLE {self.chunks_table} (chunk_id VARCHAR, doc_id VARCHAR, position INTEGER, "
            "source_path VARCHAR, title VARCHAR, section VARCHAR, page INTEGER, text VARCHAR, metadata JSON, "
            f"embedding FLOAT[{int(dimension)}])"
        )
        self.con.execute(
            f"CREATE INDEX {self.chunks_table}_hnsw ON {self.chunks_table} USING HNSW (embedding) "
            "WITH (metric = 'cosine')"
        )
        comment = _json({"embedding": self.embedding, "dimension": int(dimension)}).replace("'", "''")
        self.con.execute(f"COMMENT ON TABLE {self.chunks_table} IS '{comment}'")

    def _stored(self, doc_id: str) -> tuple[str, Any] | None:
        """The sha256 and ingest settings a document was last ingested with."""
        if not self._exists():
            return None
        row = self.con.execute(
            f"SELECT sha256, json_extract(metadata, '$._ingest')::VARCHAR FROM {self.documents_table} WHERE doc_id = ?",
            [doc_id],
        ).fetchone()
        return (str(row[0]), json.loads(row[1]) if row[1] else None) if row else None

    def _write(self, pending: list[_Pending], dimension: int) -> None:
        """Replace the documents' rows and chunks in one transaction."""
        import pyarrow as pa

        if not self._exists():
            self._create(dimension)
        recorded = (self._recorded() or {}).get("dimension")
        if recorded is not None and int(recorded) != dimension:
            raise UserError(
                f"knowledge base {self.name} holds {recorded}-dim embeddings but {self.embedding} gives {dimension}. "
                "Fix: use the endpoint it was built with, or delete() it and ingest again"
            )
        chunks = [(p, c, v) for p in pending for c, v in zip(p.chunks, p.vectors, strict=True)]
        rows = pa.Table.from_pylist(
            [
                {"chunk_id": c.chunk_id, "doc_id": p.doc_id, "position": c.position, "source_path": c.source_path,
                 "title": c.title, "section": c.section, "page": c.page, "text": c.text, "embedding": v,
                 "metadata": _json({key: value for key, value in p.metadata.items() if key != "_ingest"})}
                for p, c, v in chunks
            ]
        )  # fmt: skip
        ids = [p.doc_id for p in pending]
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {self.chunks_table} WHERE doc_id IN (SELECT unnest(?::VARCHAR[]))", [ids])
            con.execute(f"DELETE FROM {self.documents_table} WHERE doc_id IN (SELECT unnest(?::VARCHAR[]))", [ids])
            con.executemany(
                f"INSERT INTO {self.documents_table} VALUES (?, ?, ?, ?, to_timestamp(?), ?::JSON, ?)",
                [
                    [p.doc_id, str(p.path), p.title, p.sha256, p.mtime, _json(p.metadata), len(p.chunks)]
                    for p in pending
                ],
            )
            con.register("__brickyard_kb_rows", rows)
            try:
                con.execute(
                    f"INSERT INTO {self.chunks_table} SELECT chunk_id, doc_id, position, source_path, title, section, "
                    f"page, text, metadata::JSON, embedding::FLOAT[{dimension}] FROM __brickyard_kb_rows"
                )
            finally:
                con.unregister("__brickyard_kb_rows")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _reindex(self, compact: bool) -> None:
        """Rebuild the BM25 index (it does not follow inserts) and compact the HNSW index after deletes."""
        self.con.execute(f"PRAGMA create_fts_index('{self.chunks_table}', 'chunk_id', 'text', overwrite = 1)")
        if compact:
            self.con.execute(f"PRAGMA hnsw_compact_index('{self.chunks_table}_hnsw')")
        self.con.execute("CHECKPOINT")  # the HNSW index is persisted with the data, not replayed from the WAL

    # --- ingest --------------------------------------------------------------------------------

    def _model(self) -> Model:
        return self.workspace.registry.get(self.embedding)

    async def aingest(
        self,
        path_or_glob: str | Path | Sequence[str | Path],
        *,
        size: int = 300,
        overlap: int = 40,
        metadata: Mapping[str, Any] | None = None,
    ) -> IngestReport:
        """Read, chunk, embed and index files (folders recurse; glob patterns work).

        A file whose content (sha256) and settings are unchanged is skipped; a changed file's chunks
        are replaced. A file that cannot be used (unsupported, unreadable, encrypted or image-only
        PDF, empty, failed embedding) is reported in `errors`/`skipped` and the rest are ingested.
        `metadata` is added to every chunk's metadata (and can be used as a search filter).
        """
        check_sizes(size, overlap)
        started = time.perf_counter()
        user_metadata = dict(metadata or {})
        files, missing = discover(path_or_glob)
        report = IngestReport(errors=[FileIssue(path, reason) for path, reason in missing])
        model = self._model()
        pending: list[_Pending] = []
        compact = False
        for path in files:
            try:
                item = self._prepare(path, size, overlap, user_metadata)
            except UnsupportedFormatError as exc:
                report.skipped.append(FileIssue(str(path), exc.reason))
            except DocumentError as exc:
                report.errors.append(FileIssue(str(path), exc.reason))
            except Exception as exc:  # a broken file of a supported format must not stop the others
                known = isinstance(exc, OSError | UserError)
                report.errors.append(
                    FileIssue(str(path), str(exc) if known else f"cannot read: {type(exc).__name__}: {exc}")
                )
            else:
                if item is None:
                    report.unchanged.append(str(path))
                    continue
                pending.append(item)
                if sum(len(p.chunks) for p in pending) >= FLUSH_CHUNKS:
                    compact |= await self._flush(pending, model, report)
                    pending = []
        if pending:
            compact |= await self._flush(pending, model, report)
        if report.documents:
            self._reindex(compact)
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(self, path: Path, size: int, overlap: int, user_metadata: dict[str, Any]) -> _Pending | None:
        """Read and chunk one file; None when it is unchanged since the last ingest."""
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            read_document(path)  # raises UnsupportedFormatError with the reason
        settings = json.loads(_json({"size": size, "overlap": overlap, "metadata": user_metadata}))
        doc_id = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        digest = sha256_of(path)
        stored = self._stored(doc_id)
        if stored == (digest, settings):
            return None
        document = read_document(path)
        chunks = chunk_document(document, size=size, overlap=overlap)
        if not chunks:
            raise DocumentError(path, "empty document: no text to index")
        meta = {**document.metadata, **user_metadata, "_ingest": settings}
        mtime = path.stat().st_mtime
        return _Pending(path, doc_id, digest, mtime, document.title, meta, chunks, updated=stored is not None)

    async def _flush(self, pending: list[_Pending], model: Model, report: IngestReport) -> bool:
        """Embed the pending files' chunks in batches and write the files that embedded fully."""
        items = [(p, _embed_text(c)) for p in pending for c in p.chunks]
        for start in range(0, len(items), EMBED_BATCH):
            batch = items[start : start + EMBED_BATCH]
            for (owner, _), vector in zip(batch, await _embed_each(model, [t for _, t in batch]), strict=True):
                if isinstance(vector, str):
                    owner.error = owner.error or vector
                else:
                    owner.vectors.append(vector)
        good = [p for p in pending if p.error is None]
        for p in pending:
            if p.error is not None:
                report.errors.append(FileIssue(str(p.path), p.error))
        if not good:
            return False
        self._write(good, len(good[0].vectors[0]))
        for p in good:
            (report.updated if p.updated else report.added).append(str(p.path))
            report.chunks += len(p.chunks)
        return any(p.updated for p in good)

    def ingest(
        self,
        path_or_glob: str | Path | Sequence[str | Path],
        *,
        size: int = 300,
        overlap: int = 40,
        metadata: Mapping[str, Any] | None = None,
    ) -> IngestReport:
        """Synchronous `aingest`."""
        return run_sync(self.aingest(path_or_glob, size=size, overlap=overlap, metadata=metadata))

    # --- search --------------------------------------------------------------------------------

    def _where(self, filters: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        """SQL conditions for exact-match filters on columns or chunk metadata keys (a list means any of)."""
        clauses: list[str] = []
        params: list[Any] = []
        for key, wanted in (filters or {}).items():
            values = list(wanted) if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
            if not (isinstance(key, str) and key and values and all(isinstance(v, str | int | float) for v in values)):
                raise InvalidRequestError(
                    f"filter {key!r}: {wanted!r}. Fix: map a column or metadata key to a string, number or boolean "
                    "(or a list of them)"
                )
            if key == "source_path":
                values = [str(Path(os.path.expanduser(str(v))).resolve()) for v in values]
            texts = [v if isinstance(v, str) else json.dumps(v) for v in values]  # as the metadata JSON holds them
            if key in _COLUMN_FILTERS:
                clauses.append(f"list_contains(?::VARCHAR[], {key}::VARCHAR)")
                params.append(texts)
            else:
                path = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
                clauses.append("list_contains(?::VARCHAR[], json_extract_string(metadata, ?))")
                params += [texts, path]
        return (" AND ".join(clauses) or "TRUE"), params

    def _vector_ranking(self, vector: list[float], n: int, where: str, params: list[Any]) -> list[tuple[str, float]]:
        dim = len(vector)
        if where == "TRUE":  # the HNSW index serves an unfiltered ORDER BY distance LIMIT n
            if n > 64:
                self.con.execute(f"SET hnsw_ef_search = {int(2 * n)}")
            sql = (
                f"SELECT chunk_id, 1 - array_cosine_distance(embedding, ?::FLOAT[{dim}]) FROM {self.chunks_table} "
                f"ORDER BY array_cosine_distance(embedding, ?::FLOAT[{dim}]) LIMIT ?"
            )
            rows = self.con.execute(sql, [vector, vector, n]).fetchall()
        else:  # HNSW would filter after taking its top n; an exact scan of the matching rows is always right
            sql = (
                f"SELECT chunk_id, array_cosine_similarity(embedding, ?::FLOAT[{dim}]) AS s FROM {self.chunks_table} "
                f"WHERE {where} ORDER BY s DESC LIMIT ?"
            )
            rows = self.con.execute(sql, [vector, *params, n]).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def _bm25_ranking(self, query: str, n: int, where: str, params: list[Any]) -> list[tuple[str, float]]:
        sql = (
            f"SELECT chunk_id, score FROM (SELECT chunk_id, fts_main_{self.chunks_table}.match_bm25(chunk_id, ?) "
            f"AS score FROM {self.chunks_table} WHERE {where}) WHERE score IS NOT NULL ORDER BY score DESC, chunk_id "
            "LIMIT ?"
        )
        return [(str(r[0]), float(r[1])) for r in self.con.execute(sql, [query, *params, n]).fetchall()]

    async def asearch(
        self,
        query: str,
        k: int = 5,
        *,
        mode: SearchMode | str = SearchMode.hybrid,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """The `k` best chunks for `query`: "hybrid" (BM25 and vector rankings fused by reciprocal rank,
        max(4·k, 20) candidates from each), "vector" (cosine) or "bm25". `filters` keep chunks whose
        `source_path`, `title`, `section`, `page` or metadata key equals the value (or one of a list)."""
        return (await self.asearch_many([query], k, mode=mode, filters=filters))[0]

    async def asearch_many(
        self,
        queries: Sequence[str],
        k: int = 5,
        *,
        mode: SearchMode | str = SearchMode.hybrid,
        filters: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """`asearch` for several queries, their embeddings computed in batches (for evaluations)."""
        try:
            mode = SearchMode(mode)
        except ValueError:
            raise InvalidRequestError(f"mode must be one of {', '.join(SearchMode)}, not {mode!r}") from None
        if not isinstance(k, int) or k <= 0:
            raise InvalidRequestError(f"k must be a positive integer, not {k!r}")
        if isinstance(queries, str) or any(not isinstance(q, str) or not q.strip() for q in queries):
            raise InvalidRequestError("a search query is empty (or not a list of strings). Fix: pass some text")
        where, params = self._where(filters)
        if not self._exists():
            return [[] for _ in queries]
        vectors: list[list[float] | None] = [None] * len(queries)
        if mode is not SearchMode.bm25:
            model, texts = self._model(), list(queries)
            batches = [
                (await model.embed(texts[i : i + EMBED_BATCH])).vectors for i in range(0, len(texts), EMBED_BATCH)
            ]
            vectors = [vector for batch in batches for vector in batch]
        dimension = (self._recorded() or {}).get("dimension")
        if vectors and vectors[0] is not None and dimension is not None and len(vectors[0]) != int(dimension):
            raise UserError(
                f"{self.embedding} gives {len(vectors[0])}-dim vectors but knowledge base {self.name} holds "
                f"{dimension}. Fix: search with the embedding endpoint it was built with"
            )
        n = max(4 * k, 20) if mode is SearchMode.hybrid else k
        results = []
        for query, vector in zip(queries, vectors, strict=True):
            rankings = []
            if vector is not None:
                rankings.append(self._vector_ranking(vector, n, where, params))
            if mode is not SearchMode.vector:
                rankings.append(self._bm25_ranking(query, n, where, params))
            ranking = rankings[0] if len(rankings) == 1 else reciprocal_rank_fusion(rankings)[:k]
            results.append(self._hits(ranking, vector))
        return results

    def _hits(self, ranking: list[tuple[str, float]], vector: list[float] | None) -> list[Hit]:
        if not ranking:
            return []
        similarity = f"array_cosine_similarity(embedding, ?::FLOAT[{len(vector)}])" if vector else "NULL"
        rows = self.con.execute(
            f"SELECT chunk_id, text, source_path, title, section, page, metadata, {similarity} "
            f"FROM {self.chunks_table} WHERE chunk_id IN (SELECT unnest(?::VARCHAR[]))",
            [*([vector] if vector else []), [chunk for chunk, _ in ranking]],
        ).fetchall()
        by_id = {str(r[0]): r for r in rows}
        return [
            Hit(
                chunk_id=chunk,
                text=(row := by_id[chunk])[1],
                source_path=row[2],
                title=row[3],
                section=row[4],
                page=row[5],
                score=score,
                rank=rank,
                similarity=None if row[7] is None else float(row[7]),
                metadata=json.loads(row[6]) if row[6] else {},
            )
            for rank, (chunk, score) in enumerate(ranking, start=1)
        ]

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        mode: SearchMode | str = SearchMode.hybrid,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """Synchronous `asearch`."""
        return run_sync(self.asearch(query, k, mode=mode, filters=filters))

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 5,
        *,
        mode: SearchMode | str = SearchMode.hybrid,
        filters: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Synchronous `asearch_many`."""
        return run_sync(self.asearch_many(queries, k, mode=mode, filters=filters))

    # --- management ----------------------------------------------------------------------------

    def stats(self) -> KnowledgeStats:
        """Counts of documents, chunks and (estimated) tokens, the embedding, and documents by format."""
        recorded = self._recorded()
        if recorded is None:
            return KnowledgeStats(self.name, 0, 0, 0, None, None, {})
        (documents,) = self.con.execute(f"SELECT count(*) FROM {self.documents_table}").fetchone()
        chunks, chars = self.con.execute(
            f"SELECT count(*), coalesce(sum(length(text)), 0) FROM {self.chunks_table}"
        ).fetchone()
        formats = dict(
            self.con.execute(
                f"SELECT coalesce(json_extract_string(metadata, '$.format'), 'unknown') AS f, count(*) "
                f"FROM {self.documents_table} GROUP BY f ORDER BY f"
            ).fetchall()
        )
        return KnowledgeStats(
            name=self.name,
            documents=int(documents),
            chunks=int(chunks),
            tokens=(int(chars) + 3) // 4,
            dimension=recorded.get("dimension"),
            embedding=recorded.get("embedding"),
            formats={str(k): int(v) for k, v in formats.items()},
        )

    def delete(self) -> None:
        """Drop the knowledge base's tables and indexes."""
        if self._exists():
            with contextlib.suppress(Exception):  # no BM25 index yet
                self.con.execute(f"PRAGMA drop_fts_index('{self.chunks_table}')")
        self.con.execute(f"DROP TABLE IF EXISTS {self.chunks_table}")
        self.con.execute(f"DROP TABLE IF EXISTS {self.documents_table}")
        self.con.execute("CHECKPOINT")

    def close(self) -> None:
        """Close the connection if the knowledge base opened it."""
        if self._owns_connection:
            self.con.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.name!r}, embedding={self.embedding!r})"
