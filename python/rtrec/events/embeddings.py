"""The ``item_embeddings`` table: item text vectors keyed by item, model and text hash.

The text cache (:class:`rtrec.text.EmbeddingCache`) decides what to encode; this class holds
every statement it needs against the event database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

__all__ = ["EmbeddingStore"]

_UPSERT = (
    "INSERT INTO item_embeddings SELECT item_id, model, text_hash, dim, embedding, updated_at FROM _rtrec_text_rows "
    "ON CONFLICT (item_id, model) DO UPDATE SET text_hash = excluded.text_hash, dim = excluded.dim, "
    "embedding = excluded.embedding, updated_at = excluded.updated_at"
)


class EmbeddingStore:
    """Reads and writes ``item_embeddings`` through cursors from ``con_factory`` (e.g. ``log.cursor``)."""

    def __init__(self, con_factory: Callable[[], Any]) -> None:
        self.con_factory = con_factory

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        cur = self.con_factory()
        try:
            yield cur
        finally:
            cur.close()  # a view registered on a cursor goes with it

    def stale(self, wanted: pa.Table, model: str, dim: int) -> list[int]:
        """Positions (``wanted.pos``) whose ``(item_id, text_hash)`` has no vector for ``model`` and ``dim``."""
        with self._cursor() as con:
            con.register("_rtrec_text_wanted", wanted)
            rows = con.execute(
                "SELECT w.pos FROM _rtrec_text_wanted w LEFT JOIN item_embeddings e ON e.item_id = w.item_id "
                "AND e.model = ? AND e.text_hash = w.text_hash AND e.dim = ? WHERE e.item_id IS NULL ORDER BY w.pos",
                [model, int(dim)],
            ).fetchall()
        return [int(r[0]) for r in rows]

    def write(self, rows: pa.Table) -> None:
        """Insert or replace rows (item_id, model, text_hash, dim, embedding, updated_at) in one transaction."""
        with self._cursor() as con:
            con.register("_rtrec_text_rows", rows)
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(_UPSERT)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def lookup(self, wanted: pa.Table, model: str, dim: int) -> pa.Table:
        """``pos`` and ``embedding`` of the ``wanted`` (pos, item_id) rows stored for ``model`` and ``dim``."""
        with self._cursor() as con:
            con.register("_rtrec_text_lookup", wanted)
            # A relation hands Arrow over without the extra copy a DB-API result makes.
            return con.sql(
                "SELECT w.pos, e.embedding FROM _rtrec_text_lookup w JOIN item_embeddings e ON e.item_id = w.item_id "
                "WHERE e.model = ? AND e.dim = ?",
                params=[model, int(dim)],
            ).to_arrow_table()

    def all(self, model: str, dim: int) -> pa.Table:
        """``item_id`` and ``embedding`` of every stored row for ``model`` and ``dim``, by item id."""
        with self._cursor() as con:
            return con.sql(
                "SELECT item_id, embedding FROM item_embeddings WHERE model = ? AND dim = ? ORDER BY item_id",
                params=[model, int(dim)],
            ).to_arrow_table()
