"""Backfill and evaluate a historical event log with the daemon's own learner."""

from rtrec.replay.permute import permute_within_requests
from rtrec.replay.run import ReplayReport, replay_variants, run_replay

__all__ = ["ReplayReport", "permute_within_requests", "replay_variants", "run_replay"]
