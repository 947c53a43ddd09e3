"""Online learning: the learner that the daemon and replay share, trainers and metrics."""

from rtrec.learn.online import LearnResult, OnlineLearner
from rtrec.learn.trainer import Trainer, Variant, default_variant

__all__ = ["LearnResult", "OnlineLearner", "Trainer", "Variant", "default_variant"]
