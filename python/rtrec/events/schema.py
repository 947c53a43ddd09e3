"""Column names and Arrow schemas of the event log and the catalog."""

from __future__ import annotations

import pyarrow as pa

from rtrec.config import EVENT_TYPES

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_INPUT_COLUMNS",
    "EVENT_SCHEMA",
    "EVENT_TYPES",
    "EXAMPLE_SCHEMA",
    "ITEM_COLUMNS",
    "ITEM_SCHEMA",
    "REQUIRED_EVENT_FIELDS",
]

#: Columns of :meth:`rtrec.events.EventLog.tail`, in order.
EVENT_COLUMNS: tuple[str, ...] = (
    "seq",
    "event_id",
    "ts",
    "user_id",
    "item_id",
    "event_type",
    "value",
    "request_id",
    "propensity",
    "context",
)

#: Columns an ingested event may carry (``seq`` is assigned by the log and ignored on input).
EVENT_INPUT_COLUMNS: tuple[str, ...] = EVENT_COLUMNS[1:]

REQUIRED_EVENT_FIELDS: tuple[str, ...] = ("ts", "user_id", "item_id", "event_type")

EVENT_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us"), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("request_id", pa.string()),
        pa.field("propensity", pa.float64()),
        pa.field("context", pa.string()),
    ]
)

#: Labelled rows: the source event plus the label (what :meth:`rtrec.learn.Featurizer.transform` takes).
EXAMPLE_SCHEMA = pa.schema(
    [
        *[pa.field(f.name, f.type) for f in EVENT_SCHEMA],
        pa.field("label", pa.float32()),
        pa.field("weight", pa.float32()),
        pa.field("origin", pa.string()),
    ]
)

ITEM_COLUMNS: tuple[str, ...] = ("item_id", "title", "description", "category", "tags", "attrs", "updated_at")

ITEM_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("category", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("attrs", pa.string()),
        pa.field("updated_at", pa.timestamp("us")),
    ]
)
