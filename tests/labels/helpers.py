"""Read a labeller's plans as (seq, label, weight, origin) rows, as a reviewer would check them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from rtrec.events import EVENT_SCHEMA
from rtrec.labels import ORIGINS, Labeler, Plan


class Reader:
    """Drives a :class:`Labeler` with its own id maps and turns plans into plain rows."""

    def __init__(self, labeler: Labeler | None = None) -> None:
        self.lab = labeler if labeler is not None else Labeler()
        self.users: dict[str, int] = {}
        self.items: dict[str, int] = {}

    def _ids(self, col: pa.ChunkedArray, index: dict[str, int]) -> np.ndarray:
        return np.array([index.setdefault(str(v), len(index)) for v in col.to_pylist()], dtype=np.int64)

    def process(self, t: pa.Table | pa.RecordBatch) -> list[tuple[int, float, float, str]]:
        t = t if isinstance(t, pa.Table) else pa.Table.from_batches([t])
        plan = self.lab.plan(t, self._ids(t.column("user_id"), self.users), self._ids(t.column("item_id"), self.items))
        return self.rows(plan, t)

    def expire(self, now: float | None = None) -> list[tuple[int, float, float, str]]:
        return self.rows(self.lab.expire(now), None)

    def drain(self) -> list[tuple[int, float, float, str]]:
        return self.rows(self.lab.drain(), None)

    def rows(self, plan: Plan, t: pa.Table | None) -> list[tuple[int, float, float, str]]:
        seqs = t.column("seq").to_numpy() if t is not None else np.zeros(0, np.int64)
        out = []
        for row, slot, y, w, o in zip(
            plan.ex_row.tolist(),
            plan.ex_slot.tolist(),
            plan.ex_label.tolist(),
            plan.ex_weight.tolist(),
            plan.ex_origin.tolist(),
            strict=True,
        ):
            seq = int(seqs[row]) if row >= 0 else int(self.lab.store.seq[slot])
            out.append((seq, float(y), float(w), ORIGINS[o]))
        self.lab.release(plan)
        return out


def batch(*events: dict[str, Any], start_seq: int = 1) -> pa.Table:
    """Events as the log's tail gives them; ``t`` is epoch seconds."""
    rows = []
    for k, e in enumerate(events):
        rows.append(
            {
                "seq": start_seq + k,
                "event_id": e.get("event_id", f"e{start_seq + k}"),
                "ts": int(e["t"] * 1_000_000),
                "user_id": e.get("user", "u"),
                "item_id": e.get("item", "i"),
                "event_type": e["type"],
                "value": e.get("value"),
                "request_id": e.get("req"),
                "propensity": e.get("prop"),
                "context": e.get("ctx"),
            }
        )
    cols = {f.name: [r[f.name] for r in rows] for f in EVENT_SCHEMA}
    arrays = [
        pa.array(cols["ts"], pa.int64()).cast(pa.timestamp("us")) if f.name == "ts" else pa.array(cols[f.name], f.type)
        for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
