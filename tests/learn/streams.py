"""Small hand-written event streams for the learner tests."""

from __future__ import annotations

import pyarrow as pa

from rtrec.events import EVENT_SCHEMA

T0 = 1_700_000_000  # epoch seconds of a stream's second 0


def events(rows: list[tuple[int, str, str, str]], start_seq: int = 1) -> pa.Table:
    """Events (seconds after T0, user, item, type) in the event log's schema, numbered from ``start_seq``."""
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "seq": list(range(start_seq, start_seq + n)),
            "event_id": [f"e{start_seq + k}" for k in range(n)],
            "ts": [(T0 + s) * 1_000_000 for s, _, _, _ in rows],
            "user_id": [u for _, u, _, _ in rows],
            "item_id": [i for _, _, i, _ in rows],
            "event_type": [t for _, _, _, t in rows],
            "value": [None] * n,
            "request_id": [None] * n,
            "propensity": [None] * n,
            "context": [None] * n,
        },
        schema=EVENT_SCHEMA,
    )
