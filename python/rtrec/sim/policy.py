"""The simulator's logging policy: the slates it shows for a request, and the propensity of every shown item."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rtrec.sim.simulator import SimConfig

__all__ = ["DEVICES", "DEVICE_P", "LoggingPolicy"]

DEVICES = ("mobile", "desktop", "tablet")  # where requests come from
DEVICE_P = (0.6, 0.3, 0.1)  # and how often


class LoggingPolicy:
    """Fills slates of ``cfg.slate_size`` for requests, given a topic mix (taste) per request.

    The policy shows a uniform item with probability ``cfg.explore``, else a topic drawn from the
    taste and a uniform item of that topic. It holds no random state: callers pass their own generator.
    """

    def __init__(self, cfg: SimConfig, item_topic: np.ndarray) -> None:
        self.cfg = cfg
        self.item_topic = item_topic
        topic_items = [np.flatnonzero(item_topic == t) for t in range(cfg.n_topics)]
        self._topic_counts = np.array([len(x) for x in topic_items])
        self._topic_order = np.concatenate(topic_items)
        self._topic_starts = np.concatenate([[0], np.cumsum(self._topic_counts)[:-1]])

    def slates(self, rng: np.random.Generator, taste: np.ndarray) -> tuple[np.ndarray, ...]:
        """Slates for requests whose users have ``taste`` (one topic mix a row).

        Repeats within a slate are dropped (the first position stays). Returns the request index,
        position, item and propensity of every shown item.
        """
        cfg = self.cfg
        R, K, N = len(taste), cfg.slate_size, cfg.n_items
        uni = rng.random((R, K)) < cfg.explore
        cum = np.cumsum(taste, axis=1)
        draws = rng.random((R, K))
        topic = np.minimum((draws[..., None] > cum[:, None, :]).sum(axis=2), cfg.n_topics - 1)
        counts, starts = self._topic_counts, self._topic_starts
        in_topic = self._topic_order[starts[topic] + np.floor(rng.random((R, K)) * counts[topic]).astype(np.int64)]
        items = np.where(uni, rng.integers(0, N, (R, K)), in_topic)
        propensity = self.propensity(taste, items)
        flat_keys = (np.arange(R)[:, None] * N + items).ravel()
        _, first = np.unique(flat_keys, return_index=True)
        keep = np.zeros(R * K, dtype=bool)
        keep[first] = True
        r_idx = np.repeat(np.arange(R), K)[keep]
        pos = np.tile(np.arange(K), R)[keep]
        return r_idx, pos, items.ravel()[keep], propensity.ravel()[keep]

    def propensity(self, taste: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The chance that the policy shows ``items[r, k]`` in a slate for ``taste[r]``."""
        cfg = self.cfg
        t = self.item_topic[items]
        p_item = (
            cfg.explore / cfg.n_items + (1 - cfg.explore) * np.take_along_axis(taste, t, axis=1) / self._topic_counts[t]
        )
        return 1.0 - (1.0 - p_item) ** cfg.slate_size
