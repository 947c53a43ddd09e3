"""Column helpers and the layout of the dense features the models read."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.config import Config

__all__ = [
    "BASE_DENSE",
    "BUILTIN_NAMESPACES",
    "LINEAR",
    "MAX_NEIGHBOUR_ITEMS",
    "TEXT_NBR",
    "TEXT_NEIGHBOURS",
    "TEXT_SIM",
    "USER_CTR_ALL",
    "context_column",
    "dense_names",
    "epoch_seconds",
]

# Dense columns, in order: counters, one target encoding per configured cross, and the
# text similarity last (0 when text is off or unknown).
BASE_DENSE = (
    "item_pop",
    "item_ctr",
    "user_pop",
    "user_ctr",
    "item_ctr_all",
    "user_ctr_all",
    "user_ctr_recent",
    "linear_logit",
)
LINEAR = BASE_DENSE.index("linear_logit")
TEXT_NBR = -2
TEXT_SIM = -1
USER_CTR_ALL = BASE_DENSE.index("user_ctr_all")
# Text neighbours per item for the neighbour CTR; the exact search is skipped above this
# many items with text.
TEXT_NEIGHBOURS = 20
MAX_NEIGHBOUR_ITEMS = 50_000


def dense_names(cfg: Config) -> tuple[str, ...]:
    crosses = tuple(f"{a}_x_{b}_ctr" for a, b in cfg.features.crosses)
    return (*BASE_DENSE, *crosses, "text_nbr_ctr", "text_sim")


BUILTIN_NAMESPACES = ("user", "item", "category", "tags", "hour", "weekday")


def epoch_seconds(ts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A timestamp column as float epoch seconds (naive timestamps are UTC)."""
    unit = ts.type.unit
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
    return pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) / scale


def context_column(context: Any, key: str, n: int) -> pa.Array:
    """The ``key`` of each row's JSON ``context`` object, as text (null where absent)."""
    if context is None:
        return pa.nulls(n, pa.string())
    if isinstance(context, pa.ChunkedArray):
        context = context.combine_chunks()
    if context.null_count == len(context):
        return pa.nulls(n, pa.string())
    out: list[str | None] = []
    for raw in context.to_pylist():
        if not raw:
            out.append(None)
            continue
        try:
            value = json.loads(raw).get(key) if isinstance(raw, str) else raw.get(key)
        except (ValueError, AttributeError):
            value = None
        out.append(None if value is None else str(value))
    return pa.array(out, pa.string())
