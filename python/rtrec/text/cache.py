"""Item embeddings cached in DuckDB, keyed by item id, text hash and model."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from rtrec.errors import InvalidInputError
from rtrec.events.embeddings import EmbeddingStore
from rtrec.text.encoder import CHUNK_BATCHES
from rtrec.text.template import item_texts


def text_hash(text: str) -> str:
    """The sha256 hex digest of a UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Item embeddings in the ``item_embeddings`` table, recomputed only when an item's text or the model changes.

    ``con_factory`` returns a new DuckDB cursor on each call (for example an event log's
    ``log.cursor``, or ``con.cursor``), which the cache closes when done; the table itself
    comes from the event log's migrations. Rows are keyed
    by ``(item_id, model)`` where ``model`` is the encoder's :attr:`cache_key` (its name,
    pooling and max length), so switching model or pooling re-encodes everything, and a row
    whose ``text_hash`` differs from the item's current text is re-encoded.

    >>> cache = EmbeddingCache(log.cursor, load_encoder(cfg.text), cfg.text.template)  # doctest: +SKIP
    >>> cache.refresh(log.items())  # doctest: +SKIP
    {'encoded': 1000, 'cached': 0, 'items_per_s': 812.5, ...}
    """

    def __init__(
        self, con_factory: Callable[[], Any], encoder: Any, template: str, *, chunk_size: int | None = None
    ) -> None:
        self.store = EmbeddingStore(con_factory)
        self.encoder = encoder
        self.template = template
        # Default: 4,096 items, or a tokenizer step's worth of the encoder's batches if more,
        # so the encoder keeps its tokenizing thread busy.
        batches = int(getattr(encoder, "batch_size", 0) or 0) * CHUNK_BATCHES
        self.chunk_size = max(1, chunk_size) if chunk_size is not None else max(4096, batches)
        self.model_key: str = getattr(encoder, "cache_key", None) or encoder.name

    def refresh(self, items: pa.Table, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Encode the items whose text is new or changed and store them; return counts and speed.

        Rows are written and committed every ``chunk_size`` items, so an interrupted refresh
        keeps what it finished.
        ``progress(done, total)`` is called with the items encoded so far out of those that
        need it (first with ``done=0``). Items missing from ``items``
        keep their stored rows. Returns ``{"encoded", "cached", "items_per_s", "seconds",
        "model", "device"}``.
        """
        ids_col = items.column("item_id") if "item_id" in items.column_names else None
        if ids_col is None:
            raise InvalidInputError("the items table has no item_id column")
        if ids_col.null_count:
            raise InvalidInputError("the items table has rows with a null item_id")
        ids = [str(x) for x in ids_col.to_pylist()]
        texts = item_texts(items, self.template)
        # One row per item; a later row for the same id wins, as a later catalog update would.
        latest = {item_id: i for i, item_id in enumerate(ids)}
        rows = sorted(latest.values())
        ids = [ids[i] for i in rows]
        texts = [texts[i] for i in rows]
        hashes = [text_hash(t) for t in texts]

        wanted = pa.table({"pos": pa.array(range(len(ids)), pa.int64()), "item_id": ids, "text_hash": hashes})
        todo = self.store.stale(wanted, self.model_key, int(self.encoder.dim))
        total = len(todo)
        if progress is not None:
            progress(0, total)
        start = time.perf_counter()
        done = 0
        # The previous chunk is written on a second thread while the next one is encoded
        # (one write in flight at most).
        size = self.chunk_size
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtrec-embed-write") as writer:
            pending: Future[None] | None = None
            for lo in range(0, total, size):
                chunk = todo[lo : lo + size]

                def step(n: int) -> None:
                    nonlocal done
                    done += n
                    if progress is not None:
                        progress(done, total)

                vectors = self.encoder.encode([texts[i] for i in chunk], progress=step)
                done = lo + len(chunk)
                if pending is not None:
                    pending.result()  # a failed write stops the refresh here
                pending = writer.submit(self._write, [ids[i] for i in chunk], [hashes[i] for i in chunk], vectors)
            if pending is not None:
                pending.result()
        seconds = time.perf_counter() - start
        return {
            "encoded": total,
            "cached": len(ids) - total,
            "items_per_s": total / seconds if total and seconds > 0 else 0.0,
            "seconds": seconds,
            "model": self.encoder.name,
            "device": getattr(self.encoder, "device", "cpu"),
        }

    def _write(self, ids: list[str], hashes: list[str], vectors: np.ndarray) -> None:
        n, dim = vectors.shape
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
        offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32), pa.int32())
        now = datetime.now(UTC).replace(tzinfo=None)
        table = pa.table(
            {
                "item_id": pa.array(ids, pa.string()),
                "model": pa.array([self.model_key] * n, pa.string()),
                "text_hash": pa.array(hashes, pa.string()),
                "dim": pa.array([dim] * n, pa.int32()),
                "embedding": pa.ListArray.from_arrays(offsets, flat),
                "updated_at": pa.array([now] * n, pa.timestamp("us")),
            }
        )
        self.store.write(table)

    def lookup(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors for ``item_ids``: a float32 ``(n, dim)`` array (zeros where missing) and a found mask."""
        n = len(item_ids)
        dim = int(self.encoder.dim)
        out = np.zeros((n, dim), dtype=np.float32)
        found = np.zeros(n, dtype=bool)
        if n == 0:
            return out, found
        wanted = pa.table({"pos": pa.array(range(n), pa.int64()), "item_id": [str(x) for x in item_ids]})
        result = self.store.lookup(wanted, self.model_key, dim)
        if result.num_rows:
            pos = result.column("pos").to_numpy()
            out[pos] = _matrix(result.column("embedding"), dim)
            found[pos] = True
        return out, found

    def all(self) -> tuple[list[str], np.ndarray]:
        """Every stored item id for this model (sorted) and its vectors as a float32 ``(n, dim)`` array."""
        dim = int(self.encoder.dim)
        result = self.store.all(self.model_key, dim)
        return [str(x) for x in result.column("item_id").to_pylist()], _matrix(result.column("embedding"), dim)


def _matrix(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    if len(column) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    lists = column.combine_chunks()
    return lists.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
