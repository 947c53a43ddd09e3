"""PyTorch models: the CTR model, an online logistic regression and the text scorer."""

from rtrec.models.ctr import CTRModel, LogisticModel, ModelInput, TextScorer

__all__ = ["CTRModel", "LogisticModel", "ModelInput", "TextScorer"]
