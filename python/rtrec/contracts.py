"""The typed values that parts exchange: what the learner reports, and what the daemon answers.

Light on purpose (no numpy, torch or rich): the daemon, the offline ``--home`` reader and
the dashboard all read these shapes.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = ["DriftAlarm"]


class DriftAlarm(TypedDict):
    """One drift alarm of a model's detector."""

    ts: float  # event time of the example that raised it (epoch seconds)
    seq: int  # its sequence number
    examples: int  # examples the model had learned by then
    wall_time: float  # when it was raised (epoch seconds)
    detector: str  # "page_hinkley"
    model: str  # the variant's name
    stat: float  # the detector's statistic when it fired (above its threshold)
