"""Search indexes in the warehouse: embeddings with a VSS (HNSW) index plus a full-text (BM25) index.

`create_search_index(con, "reviews_idx", "reviews", "txt")` builds table `reviews_idx(key, text,
embedding FLOAT[d])` with an HNSW index (cosine) and an FTS index; in SQL,
`SELECT * FROM vector_search('reviews_idx', 'a warm family film', k => 5)` returns the nearest rows.
"""

from __future__ import annotations

import re
from typing import Any

from brickyard._errors import InvalidRequestError, MissingExtraError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_extensions(con: Any) -> None:
    """Load DuckDB's `vss` and `fts` extensions from their PyPI packages (offline), unless already loaded."""
    try:
        from duckdb_extensions import import_extension
    except ImportError as exc:
        raise MissingExtraError("duckdb-extensions", "sql") from exc
    raw = getattr(con, "duckdb", con)
    loaded = {r[0] for r in raw.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()}
    for name in ("vss", "fts"):
        if name not in loaded:  # once per connection, not on every search
            import_extension(name, con=raw)  # installs from the package's file, no download
            raw.execute(f"LOAD {name}")


def _check(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequestError(f"{what} {name!r} must be letters, digits and underscores")
    return name


def create_search_index(con: Any, name: str, table: str, column: str, *, key: str | None = None) -> int:
    """Embed `table.column` into a new index table `name` (replacing it); returns the number of rows."""
    name, table, column = _check(name, "index"), _check(table, "table"), _check(column, "column")
    key_expr = _check(key, "key column") if key else "row_number() OVER ()"
    load_extensions(con)
    con.execute("SET hnsw_enable_experimental_persistence = true")
    (dim,) = con.execute("SELECT len(ai_embed('dimension probe'))").fetchone()
    con.execute(
        f"CREATE OR REPLACE TABLE {name} AS SELECT {key_expr} AS key, {column}::VARCHAR AS text, "
        f"ai_embed({column}::VARCHAR)::FLOAT[{int(dim)}] AS embedding FROM {table} WHERE {column} IS NOT NULL"
    )
    con.execute(f"CREATE INDEX {name}_hnsw ON {name} USING HNSW (embedding) WITH (metric = 'cosine')")
    con.execute(f"PRAGMA create_fts_index('{name}', 'key', 'text', overwrite = 1)")
    (rows,) = con.execute(f"SELECT count(*) FROM {name}").fetchone()
    return int(rows)


def search(con: Any, name: str, query: str, k: int = 10, *, mode: str = "vector") -> list[tuple[Any, str, float]]:
    """The `k` best rows of index `name` for `query`: `mode` "vector" (HNSW, cosine) or "text" (BM25)."""
    name = _check(name, "index")
    load_extensions(con)
    if mode == "text":
        return [
            tuple(r)
            for r in con.execute(
                f"SELECT key, text, score FROM (SELECT key, text, fts_main_{name}.match_bm25(key, ?) AS score "
                f"FROM {name}) WHERE score IS NOT NULL ORDER BY score DESC LIMIT ?",
                [query, k],
            ).fetchall()
        ]
    if mode != "vector":
        raise InvalidRequestError(f"mode must be 'vector' or 'text', not {mode!r}")
    (dim,) = con.execute(f"SELECT array_length(embedding) FROM {name} LIMIT 1").fetchone()
    (vector,) = con.execute("SELECT ai_embed(?)", [query]).fetchone()
    return [
        tuple(r)
        for r in con.execute(
            f"SELECT key, text, 1 - array_cosine_distance(embedding, ?::FLOAT[{int(dim)}]) AS score FROM {name} "
            f"ORDER BY array_cosine_distance(embedding, ?::FLOAT[{int(dim)}]) LIMIT ?",
            [vector, vector, k],
        ).fetchall()
    ]
