"""Ranking the retrieved candidates for engagement (the exploration policy is ``rtrec.serve.policy``)."""

from rtrec.rank.model import ListRanker

__all__ = ["ListRanker"]
