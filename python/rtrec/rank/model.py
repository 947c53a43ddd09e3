"""The ranker over retrieved candidates: a linear scorer trained with a sampled softmax.

For each trained positive (a user engaged with an item), the item competes with
negatives drawn from the candidates retrieved for that user at that moment, so the ranker
learns exactly the choice it faces when it serves: which of these candidates will the user
engage with. Its features (:data:`rtrec.retrieve.FEATURES`) are each source's score, the
CTR model's logit, popularity and coldness. It starts from a hand-set prior (so an
untrained ranker already blends the sources sensibly) and learns by Adagrad.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rtrec.retrieve.sources import FEATURES, TEXT_FEATURES

__all__ = ["PRIOR", "ListRanker"]

PRIOR = {
    "covisit": 1.0,
    "content_user": 1.0,
    "content_recent": 1.0,
    "trending": 0.3,
    "trending_category": 0.3,
    "category_affinity": 0.5,
    "ctr_logit": 0.2,
}


class ListRanker:
    """Scores candidates ``x @ w``. Ablations: ``text=False`` zeroes the text features,
    ``user_vector=False`` the similarity to the user's interest vector."""

    def __init__(self, lr: float = 0.05, *, text: bool = True, user_vector: bool = True) -> None:
        self.lr = lr
        self.text = text
        self.w = np.array([PRIOR.get(f, 0.0) for f in FEATURES], np.float64)
        self.g2 = np.ones(len(FEATURES), np.float64)
        off = set(TEXT_FEATURES) if not text else set()
        if not user_vector:
            off.update(("content_user", "cold_content"))
        self.mask = np.array([f not in off for f in FEATURES], np.float64)
        self.w *= self.mask
        self.trained = 0
        self.loss_sum = 0.0

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ (self.w * self.mask)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Each feature's share of each row's score (``x * w``)."""
        return np.asarray(x, np.float64) * (self.w * self.mask)

    def learn(self, x: np.ndarray) -> float:
        """One softmax step: row 0 is the item the user engaged with, the rest are negatives.
        Returns the loss before the step."""
        xm = np.asarray(x, np.float64) * self.mask
        z = xm @ self.w
        z -= z.max()
        p = np.exp(z)
        p /= p.sum()
        loss = float(-np.log(max(p[0], 1e-12)))
        p[0] -= 1.0
        g = xm.T @ p
        self.g2 += g * g
        self.w -= self.lr * g / np.sqrt(self.g2)
        self.trained += 1
        self.loss_sum += loss
        return loss

    def weights(self) -> dict[str, float]:
        return {f: float(w) for f, w, m in zip(FEATURES, self.w, self.mask, strict=True) if m}

    def state_dict(self) -> dict[str, Any]:
        return {"w": self.w.copy(), "g2": self.g2.copy(), "text": self.text, "trained": self.trained}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        if len(s["w"]) == len(FEATURES):
            self.w, self.g2, self.trained = s["w"], s["g2"], int(s["trained"])
