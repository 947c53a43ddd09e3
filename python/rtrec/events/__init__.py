"""The event log (DuckDB), its schema and migrations."""

from rtrec.events.log import EventLog, IngestSummary, Rejected
from rtrec.events.schema import (
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    EVENT_TYPES,
    EXAMPLE_SCHEMA,
    ITEM_COLUMNS,
    ITEM_SCHEMA,
)

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_SCHEMA",
    "EVENT_TYPES",
    "EXAMPLE_SCHEMA",
    "ITEM_COLUMNS",
    "ITEM_SCHEMA",
    "EventLog",
    "IngestSummary",
    "Rejected",
]
