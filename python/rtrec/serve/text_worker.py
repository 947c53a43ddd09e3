"""The text worker: encodes new or changed catalog items and answers text queries of strangers.

It loads the configured encoder at start (a missing model is reported, never swapped for
another), encodes the catalog through the DuckDB embedding cache whenever items change
(on the GPU when there is one) and hands the embeddings to the learner. For a user with
no history whose request carries text, it scores candidates by how close their text is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.config import Config
from rtrec.contracts import TextStatus
from rtrec.errors import RtrecError
from rtrec.text import centre

if TYPE_CHECKING:
    from rtrec.events import EventLog

log = logging.getLogger("rtrec.serve")

__all__ = ["TextWorker"]


class TextWorker:
    """Owns the encoder and its status; :meth:`run` is the encoder thread's body."""

    def __init__(self, cfg: Config, log_: EventLog) -> None:
        self.cfg = cfg
        self.log = log_
        self.encoder: Any = None
        self.status: TextStatus = {
            "enabled": cfg.text.enabled,
            "status": "starting" if cfg.text.enabled else "disabled",
            "device": None,
            "model": cfg.text.model if cfg.text.enabled else None,
            "queue": 0,
        }
        self.items_changed = threading.Event()
        self.items_changed.set()  # encode whatever the catalog holds at start
        # For cold start: the catalog's embeddings centred on their mean, and the mean.
        self._centred: tuple[dict[str, int], np.ndarray, np.ndarray] | None = None
        if cfg.text.enabled:
            self._load()

    @property
    def dim(self) -> int:
        return int(getattr(self.encoder, "dim", 0) or 0) if self.encoder is not None else 0

    def _load(self) -> None:
        from rtrec.text import load_encoder

        try:
            self.encoder = load_encoder(self.cfg.text)
        except RtrecError as exc:
            self.status["status"] = f"unavailable: {exc}"
            log.warning("text encoder unavailable (%s); serving without text features", exc)
            return
        self.status["device"] = str(getattr(self.encoder, "device", "cpu"))
        self.status["status"] = "ready"

    def run(self, stop: threading.Event, items: Callable[[], Any], hand_over: Callable[[list[str], Any], None]) -> None:
        """Encode the catalog ``items()`` each time it changes, until ``stop``; ``hand_over`` the vectors."""
        from rtrec.text import EmbeddingCache

        if self.encoder is None:
            return
        cache = EmbeddingCache(self.log.cursor, self.encoder, self.cfg.text.template)
        while not stop.is_set():
            if not self.items_changed.wait(timeout=0.5):
                continue
            self.items_changed.clear()
            table = items()
            self.status.update({"queue": int(table.num_rows), "status": "encoding"})
            try:
                res = cache.refresh(table, progress=lambda done, total: self.status.update({"queue": total - done}))
                ids, matrix = cache.all()
            except Exception as exc:
                log.exception("text encoding failed")
                self.status.update({"status": f"error: {exc}", "queue": 0})
                continue
            self.status.update(
                {
                    "encoded": res["encoded"],
                    "cached": res["cached"],
                    "items_per_s": res["items_per_s"],
                    "queue": 0,
                    "status": "ready",
                }
            )
            if len(ids):
                mean = np.asarray(matrix, dtype=np.float32).mean(axis=0)
                self._centred = ({str(i): j for j, i in enumerate(ids)}, centre(matrix, mean), mean)
                hand_over(list(ids), matrix)

    def similarity(self, text: str, cand: Sequence[str]) -> np.ndarray | None:
        """Cosine of the request text with each candidate, on centred embeddings, clipped to [0, 1]
        (None when there is no encoder or no encoded catalog yet).

        Centring takes out the direction every item of the catalog shares, so the items that
        match the request stand out from the rest.
        """
        if self.encoder is None or self._centred is None:
            return None
        index, mat, mean = self._centred
        try:
            q = np.asarray(self.encoder.encode([text]), dtype=np.float32).reshape(-1)
        except Exception as exc:
            log.warning("could not encode request text: %s", exc)
            return None
        if q.shape[0] != mat.shape[1]:
            return None
        q = centre(q, mean)
        rows = np.array([index.get(c, -1) for c in cand])
        sim = np.zeros(len(cand))
        ok = rows >= 0
        sim[ok] = np.clip(mat[rows[ok]] @ q, 0.0, 1.0)
        return sim
