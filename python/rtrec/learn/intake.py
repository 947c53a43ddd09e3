"""What reaches the learner of a chunk read from the log: rows it cannot learn are set aside, and
the feedback-cleaning stage (:mod:`rtrec.clean`) quarantines bots, repeats, floods and outliers,
each with the reason; nothing is deleted from the log."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.clean import Cleaned, Cleaner
from rtrec.config import EVENT_TYPES
from rtrec.events.validate import Validator

__all__ = ["admit", "set_aside"]


def admit(v: Validator, cleaner: Cleaner, t: pa.Table) -> Cleaned:
    """The rows of a chunk to learn, the rows set aside (unlearnable, or quarantined by cleaning)
    with the reason, the rows learned but flagged by cleaning with the reason, and the users
    judged bots in this chunk."""
    t, aside = set_aside(v, t)
    cleaned = cleaner.clean(t)
    cleaned.quarantined = aside + cleaned.quarantined
    return cleaned


def set_aside(v: Validator, t: pa.Table) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Rows no learner can learn (a time outside what the log accepts, an unknown type), with
    the reason, and the table without them. The log's own checks keep such rows out; these
    guard logs written before them, or by hand."""
    ts = t.column("ts").cast(pa.int64()).to_numpy()
    now_us = round(time.time() * 1e6)
    latest = now_us + round(v.cfg.max_future_s * 1e6)
    out_of_range = (ts < v.oldest_us) | (ts > latest)
    known = pc.is_in(t.column("event_type"), value_set=pa.array(EVENT_TYPES)).to_numpy(zero_copy_only=False)
    bad = out_of_range | ~np.asarray(known, bool)
    if not bad.any():
        return t, []
    seqs = t.column("seq").to_numpy()
    types = t.column("event_type").to_pylist()
    reasons = []
    for r in np.flatnonzero(bad).tolist():
        if out_of_range[r]:
            got = v.check_ts(int(ts[r]), now_us)
            reasons.append((int(seqs[r]), getattr(got, "reason", "ts: out of range")))
        else:
            reasons.append((int(seqs[r]), f"event_type: unknown value {types[r]!r}"))
    return t.filter(pa.array(~bad)), reasons
