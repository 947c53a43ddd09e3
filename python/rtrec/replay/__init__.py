"""Backfill and evaluate a historical event log with the daemon's own learner."""

from rtrec.replay.run import ReplayReport, replay_variants, run_replay

__all__ = ["ReplayReport", "replay_variants", "run_replay"]
