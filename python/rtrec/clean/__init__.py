"""Feedback cleaning: rows set aside (bots, bursts, copies, absurd values) or flagged, each with a reason.

The stage between the event log and the learner: :class:`Cleaner` takes each chunk of the log
in sequence order and returns a :class:`Cleaned` with the rows to learn, and the sequence
numbers and reasons of the rows set aside and of the rows flagged. Nothing is deleted; a
reason names its rule first (``"repeat: ..."``), and :meth:`Cleaner.counts` counts per rule.
"""

from __future__ import annotations

from rtrec.clean.cleaner import FLAGS, RULES, Cleaned, Cleaner

__all__ = ["FLAGS", "RULES", "Cleaned", "Cleaner"]
