"""The sceptic's leakage check: move each request's feedback to a random item it showed.

After the move no item-level signal is left: within a request, which item got the click is
chance. A model that still ranks the clicked item of a request above the others (per-request
AUC above 0.5) reads the label from somewhere it should not.

>>> import pyarrow as pa
>>> t = pa.table({"request_id": ["r", "r", "r"], "event_type": ["impression", "impression", "click"],
...               "item_id": ["a", "b", "a"]})
>>> permute_within_requests(t, seed=1).column("item_id").to_pylist()[:2]
['a', 'b']
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["permute_within_requests"]


def permute_within_requests(events: pa.Table, seed: int = 0) -> pa.Table:
    """``events`` with every non-impression event of a request moved to one random item of its impressions.

    All feedback of a request goes to the same item (a click, its add-to-cart and purchase
    stay together); impressions, events without a request id and requests without
    impressions are left as they are.
    """
    rng = np.random.default_rng(seed)
    rid = events.column("request_id").to_pylist()
    kind = events.column("event_type").to_pylist()
    item = events.column("item_id").to_pylist()
    shown: dict[str, list[str]] = {}
    for r, k, i in zip(rid, kind, item, strict=True):
        if r is not None and k == "impression":
            shown.setdefault(r, []).append(i)
    target = {r: items[int(rng.integers(len(items)))] for r, items in shown.items()}
    moved = [
        t if k != "impression" and (t := target.get(r)) is not None else i
        for r, k, i in zip(rid, kind, item, strict=True)
    ]
    return events.set_column(events.column_names.index("item_id"), "item_id", pa.array(moved, pa.string()))
