"""Labels: impressions wait with the features they were shown with; feedback or the window resolves them."""

from rtrec.labels.labeler import (
    EVENT,
    FOLLOWUP,
    IMPRESSION,
    LATE,
    ORIGINS,
    Labeler,
    Plan,
    conform,
    keys_of,
    request_hashes,
)
from rtrec.labels.store import Snapshot, SnapshotStore, csr_gather

__all__ = [
    "EVENT",
    "FOLLOWUP",
    "IMPRESSION",
    "LATE",
    "ORIGINS",
    "Labeler",
    "Plan",
    "Snapshot",
    "SnapshotStore",
    "conform",
    "csr_gather",
    "keys_of",
    "request_hashes",
]
