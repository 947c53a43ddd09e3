"""One model learning online: predict, then learn, with replay mixing and drift handling."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rtrec import _native
from rtrec.config import Config
from rtrec.contracts import DriftAlarm, ReplayStats
from rtrec.learn.columns import LINEAR, TEXT_NBR, TEXT_SIM, USER_CTR_ALL, dense_names
from rtrec.learn.featurize import Batch, Featurizer
from rtrec.learn.metrics import EPS, PageHinkley
from rtrec.models import CTRModel, LogisticModel, ModelInput, TextScorer

# The drift detector sees one observation per this many examples, whatever the batch size.
DRIFT_ROWS = 512
# Kinds that score by an item count and do not learn: their scores are rankings, not probabilities.
COUNTS = ("popularity", "popularity_all_time")


def _entropy(rate: float) -> float:
    return -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))


@dataclass(frozen=True)
class Variant:
    """What one trainer learns. ``rtrec`` is the product; the others are baselines and ablations.

    kind: ``ctr`` (the CTR model), ``lr`` (mini-batch logistic regression on the same hashed
    features), ``linear`` (the learner's linear model: per-example online logistic regression,
    as Vowpal Wabbit learns), ``popularity`` (recency-decayed positive count of the item, no learning) or
    ``popularity_all_time`` (the item's positives so far, no learning).
    ``train_examples`` freezes the model after that many examples (the static baseline).
    """

    name: str
    kind: str = "ctr"
    item_text: bool = True
    user_vector: bool = True
    distill: bool = True
    replay: bool = True
    train_examples: int | None = None
    # Weight of the linear model's logit in the served logit (None: learner.linear_blend).
    linear_blend: float | None = None


def default_variant(cfg: Config, name: str = "rtrec") -> Variant:
    t = cfg.text
    on = t.enabled
    return Variant(name, item_text=on and t.item_features, user_vector=on and t.user_vector, distill=on and t.distill)


class Trainer:
    """Holds a model, its optimizer, replay buffer and drift detector."""

    def __init__(self, variant: Variant, cfg: Config, text_dim: int = 0) -> None:
        self.variant = variant
        self.cfg = cfg
        lc = cfg.learner
        self.text_dim = text_dim if (variant.item_text or variant.distill or variant.user_vector) else 0
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(lc.seed)
        n_buckets = 1 << cfg.features.bits
        self.model: torch.nn.Module | None = None
        self.scorer: TextScorer | None = None
        if variant.kind == "ctr":
            self.model = CTRModel(
                n_buckets,
                dim=lc.embedding_dim,
                hidden=lc.mlp_hidden,
                dense_dim=len(dense_names(cfg)),
                text_dim=text_dim if variant.item_text else 0,
                text_proj=cfg.text.dim,
            )
            if variant.distill and text_dim:
                self.scorer = TextScorer(text_dim)
        elif variant.kind == "lr":
            self.model = LogisticModel(n_buckets)
        torch.random.set_rng_state(gen_state)
        params = [p for m in (self.model, self.scorer) if m is not None for p in m.parameters()]
        self.opt = torch.optim.Adagrad(params, lr=lc.lr, weight_decay=lc.weight_decay) if params else None
        self.table = getattr(self.model, "table", None)
        if self.table is not None:
            # The first-order column takes the large sparse step; the factor columns feed
            # products and an MLP, which a large step destabilises.
            width = self.table.weight.shape[1]
            self.table_lr = torch.full((width,), lc.lr)
            self.table_lr[0] = lc.sparse_lr
        self.replay = (
            _native.ReplayBuffer(lc.replay_capacity, dense_dim=len(dense_names(cfg)), seed=lc.seed)
            if variant.replay and self.model is not None
            else None
        )
        self.drift = PageHinkley(lc.drift_delta, lc.drift_threshold, min_samples=10, alpha=lc.drift_alpha)
        self._drift_acc = np.zeros(3)  # examples, log-loss sum and positives towards the next observation
        self.boost_left = 0
        self.examples = 0
        self.updates = 0
        self.alarms: list[DriftAlarm] = []
        self.replay_drawn = 0
        self.fresh_seen = 0

    def forget_feature(self, feature: int) -> int:
        """Remove the replay rows holding ``feature`` and reset its row of the hashed table (a
        forgotten user's own weights); how many replay rows were removed."""
        if self.table is not None and 0 <= feature < self.table.weight.shape[0]:
            with torch.no_grad():
                self.table.weight[feature] = 0.0
                self.table.sq_sum[feature] = 0.0
                self.table.norm2[feature] = 0.0
        return int(self.replay.forget_feature(feature)) if self.replay is not None else 0

    @property
    def frozen(self) -> bool:
        n = self.variant.train_examples
        return n is not None and self.examples >= n

    # -- inputs ------------------------------------------------------------------------------
    def _mask_dense(self, dense: np.ndarray) -> np.ndarray:
        """Zero the text columns of the pieces this variant leaves out."""
        if self.variant.user_vector and self.variant.item_text:
            return dense
        dense = dense.copy()
        if not self.variant.user_vector:
            dense[:, TEXT_SIM] = 0.0
        if not self.variant.item_text:
            dense[:, TEXT_NBR] = 0.0
        return dense

    def _item_text(self, b: Batch, feat: Featurizer) -> np.ndarray | None:
        """The rows' item text embeddings, where this variant reads item text."""
        return feat.item_text[b.item_idx] if self.variant.item_text and feat.text_dim and self.text_dim else None

    def _input(self, b: Batch, feat: Featurizer) -> ModelInput:
        dense = self._mask_dense(b.dense)
        text = self._item_text(b, feat)
        return ModelInput(
            torch.from_numpy(b.indices),
            torch.from_numpy(b.offsets),
            torch.from_numpy(dense),
            torch.from_numpy(text) if text is not None else None,
        )

    def _blended(self, b: Batch, logits: Any) -> Any:
        """The CTR model's logits (numpy or torch) averaged with the linear model's, by the
        variant's weight (each learns on its own; the blend beat both alone on every stream we replayed)."""
        a = self.variant.linear_blend
        a = self.cfg.learner.linear_blend if a is None else a
        if not a:
            return logits
        linear = b.dense[:, LINEAR]
        return (1.0 - a) * logits + a * (torch.from_numpy(linear) if isinstance(logits, torch.Tensor) else linear)

    def _text_logits(self, b: Batch, feat: Featurizer) -> tuple[torch.Tensor, np.ndarray] | None:
        if self.scorer is None or not feat.text_dim:
            return None
        has = feat.has_text[b.item_idx]
        item = torch.from_numpy(feat.centred_text(b.item_idx))
        user = torch.from_numpy(feat.user_vec[b.user_idx]) if self.variant.user_vector else torch.zeros_like(item)
        # The text scorer says how much more or less than usual this user likes this item's
        # text: it is anchored on the user's own base rate (all-time CTR, in logit space).
        base = torch.from_numpy(b.dense[:, USER_CTR_ALL])
        return base + self.scorer(item, user), has

    def _prior_weight(self, b: Batch, has_text: np.ndarray) -> np.ndarray:
        k = self.cfg.text.distill_decay_events
        return np.where(has_text, k / (k + b.item_n), 0.0)

    # -- predict / learn ---------------------------------------------------------------------------
    def predict(self, b: Batch, feat: Featurizer) -> np.ndarray:
        """Click probabilities (for ``popularity``: a score that is not a probability)."""
        if self.variant.kind == "popularity":
            return feat.item_counts.positives(b.item_idx, b.ts)
        if self.variant.kind == "popularity_all_time":
            return np.asarray(feat.item_counts.npos[b.item_idx], np.float64)
        if self.variant.kind == "linear":
            return 1.0 / (1.0 + np.exp(-b.dense[:, LINEAR].astype(np.float64)))
        assert self.model is not None
        if isinstance(self.model, CTRModel):  # the serving path: one native call, no torch
            logits = self.model.score(b.indices, b.offsets, self._mask_dense(b.dense), self._item_text(b, feat))
            logits = self._blended(b, logits)
            return (0.5 + 0.5 * np.tanh(0.5 * logits.astype(np.float32))).astype(np.float64)  # the sigmoid
        with torch.inference_mode():
            return self._served(b, self.model(self._input(b, feat)))

    def predict_learn(
        self, b: Batch, feat: Featurizer, now: float | None = None, *, recorded: np.ndarray | None = None
    ) -> np.ndarray:
        """Learn ``b``; return its progressive predictions.

        ``recorded`` holds the prediction made when each row was read (an impression, when
        shown); NaN rows (read and resolved at once) are predicted here, before learning,
        sharing the update's forward pass where the model learns.
        """
        need = np.ones(len(b), bool) if recorded is None else np.isnan(recorded)
        if self.model is None or len(b) == 0 or self.frozen:
            probs = np.asarray(recorded, np.float64).copy() if recorded is not None else np.zeros(len(b))
            if need.any():
                probs[need] = self.predict(b, feat)[need]
            self.learn(b, feat, probs if self.variant.kind not in COUNTS else None, now)
            return probs
        if not need.any():
            return self.learn(b, feat, np.asarray(recorded, np.float64), now)
        return self.learn(b, feat, recorded, now, served=True)

    def _served(self, b: Batch, logits: torch.Tensor) -> np.ndarray:
        if self.variant.kind == "ctr":  # serve an ensemble
            logits = self._blended(b, logits)
        return torch.sigmoid(logits).numpy().astype(np.float64)

    def learn(
        self, b: Batch, feat: Featurizer, probs: np.ndarray | None, now: float | None = None, *, served: bool = False
    ) -> np.ndarray:
        """One update on the fresh rows ``b`` plus rows drawn from replay; then store ``b``.

        ``probs`` (the progressive predictions of ``b``) feed the drift detector. With
        ``served``, the rows where ``probs`` is None or NaN are predicted here from this
        update's own forward pass, before the step, and the whole is returned.
        """
        if self.model is None or len(b) == 0 or self.frozen:
            self.examples += len(b)
            return np.zeros(0) if probs is None else probs
        lc = self.cfg.learner
        if probs is not None and not served:
            self._watch_drift(b, probs, now)
        assert self.opt is not None
        x = self._input(b, feat)
        n_fresh = len(b)
        weights = [torch.from_numpy(b.weights)]
        labels = [torch.from_numpy(b.labels)]
        ratio = lc.drift_replay_ratio if self.boost_left > 0 else lc.replay_ratio
        n_replay = int(n_fresh * ratio) if self.replay is not None and len(self.replay) else 0
        if n_replay:
            strategy, half_life = self._replay_strategy()
            assert self.replay is not None
            r = self.replay.sample(n_replay, strategy, half_life)  # type: ignore[arg-type]
            self.replay_drawn += n_replay
            r_dense = self._mask_dense(r["dense"])
            r_text = None
            if x.item_text is not None:
                r_text = torch.from_numpy(feat.item_text[r["row_ids"]])
            rin = ModelInput(
                torch.from_numpy(r["indices"]), torch.from_numpy(r["offsets"]), torch.from_numpy(r_dense), r_text
            )
            x = ModelInput.concat(x, rin)
            weights.append(torch.from_numpy(r["weights"]))
            labels.append(torch.from_numpy(r["labels"]))
        y = torch.cat(labels)
        w = torch.cat(weights)
        logits = self.model(x)
        if served:
            with torch.no_grad():
                fresh = self._served(b, logits[:n_fresh].detach())
            probs = fresh if probs is None else np.where(np.isnan(probs), fresh, probs)
            self._watch_drift(b, probs, now)
        loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum()
        text = self._text_logits(b, feat)
        if text is not None:
            t_logits, has = text
            yf, wf = y[:n_fresh], w[:n_fresh]
            mask = torch.from_numpy(has.astype(np.float32))
            loss = loss + (F.binary_cross_entropy_with_logits(t_logits, yf, reduction="none") * wf * mask).sum()
            # Distillation: the CTR model also learns the text scorer's probability as a soft
            # target, weighted down as the item's own feedback grows.
            kd = torch.from_numpy(self._prior_weight(b, has).astype(np.float32)) * self.cfg.text.distill_weight
            teacher = torch.sigmoid(t_logits.detach())
            loss = loss + (F.binary_cross_entropy_with_logits(logits[:n_fresh], teacher, reduction="none") * kd).sum()
        loss = loss / max(float(w.sum()), EPS)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        scale = lc.drift_boost if self.boost_left > 0 else 1.0
        for g in self.opt.param_groups:
            g["lr"] = lc.lr * scale
        self.opt.step()
        if self.table is not None:
            self.table.step(self.table_lr * scale)
        self.boost_left = max(0, self.boost_left - len(b))
        self.updates += 1
        self.examples += len(b)
        self.fresh_seen += len(b)
        if self.replay is not None:
            self.replay.push(b.indices, b.offsets, b.labels, b.weights, b.ts, b.item_idx, np.ascontiguousarray(b.dense))
        return probs if probs is not None else np.zeros(0)

    def replay_stats(self) -> ReplayStats:
        """The replay buffer's fill, the strategy in force and the mix of fresh and replayed rows learned."""
        r = self.replay
        learned = max(self.fresh_seen + self.replay_drawn, 1)
        return {
            "size": len(r) if r is not None else 0,
            "capacity": r.capacity if r is not None else 0,
            "positives": r.positives if r is not None else 0,
            "strategy": self._replay_strategy()[0],
            "replay_ratio": self.cfg.learner.replay_ratio,
            "rows_drawn": self.replay_drawn,
            "fresh_rows": self.fresh_seen,
            "mix": {"fresh": self.fresh_seen / learned, "replay": self.replay_drawn / learned},
        }

    def _replay_strategy(self) -> tuple[str, float | None]:
        lc = self.cfg.learner
        if self.boost_left > 0:
            # After drift, lean on the newest rows.
            return "recency", max(lc.replay_half_life_events / 10.0, 1.0)
        if lc.replay_strategy == "recency":
            return "recency", lc.replay_half_life_events
        return lc.replay_strategy, None

    def _watch_drift(self, b: Batch, probs: np.ndarray, now: float | None) -> None:
        """Feed the batch's normalised entropy to the drift detector.

        Normalised entropy (log loss over the entropy of the batch's positive rate) rises when
        the model ranks worse even if the click rate itself falls, which raw log loss hides.
        """
        p = np.clip(probs, EPS, 1 - EPS)
        ll = -(b.labels * np.log(p) + (1 - b.labels) * np.log(1 - p))
        # One observation per DRIFT_ROWS examples, carried across mini-batches: the daemon learns
        # in small batches, and an observation per batch of a few dozen rows was mostly noise (the
        # demo raised 25 alarms in its first 40 seconds).
        acc = self._drift_acc
        start = 0
        while start < len(b):
            take = min(DRIFT_ROWS - int(acc[0]), len(b) - start)
            acc += (take, float(ll[start : start + take].sum()), float(b.labels[start : start + take].sum()))
            start += take
            if acc[0] < DRIFT_ROWS:
                continue
            n, loss, pos_sum = acc
            acc[:] = 0.0
            rate = pos_sum / n
            if not 0.0 < rate < 1.0 or not self.drift.update(loss / n / _entropy(rate)):
                continue
            pos = start - 1
            self._forget()
            self.boost_left = self.cfg.learner.drift_boost_events
            self.alarms.append(
                DriftAlarm(
                    ts=float(b.ts[pos]),
                    seq=int(b.seq[pos]),
                    examples=self.examples + pos,
                    wall_time=now if now is not None else time.time(),
                    detector="page_hinkley",
                    model=self.variant.name,
                    stat=float(self.drift.last_alarm_stat),
                )
            )

    @torch.no_grad()
    def _forget(self) -> None:
        """After drift, shrink Adagrad's squared-gradient history so that steps grow again."""
        f = self.cfg.learner.drift_forget
        if self.table is not None:
            self.table.sq_sum.mul_(f)
        if self.opt is not None:
            for state in self.opt.state.values():
                if "sum" in state:
                    state["sum"].mul_(f)

    # -- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "text_dim": self.text_dim,
            "model": self.model.state_dict() if self.model is not None else None,
            "scorer": self.scorer.state_dict() if self.scorer is not None else None,
            "opt": self.opt.state_dict() if self.opt is not None else None,
            "replay": self.replay.to_bytes() if self.replay is not None else None,
            "drift": self.drift.state_dict(),
            "drift_acc": self._drift_acc.copy(),
            "counters": {
                "boost_left": self.boost_left,
                "examples": self.examples,
                "updates": self.updates,
                "replay_drawn": self.replay_drawn,
                "fresh_seen": self.fresh_seen,
            },
            "alarms": self.alarms,
        }

    def load_state_dict(self, s: dict[str, Any]) -> None:
        if self.model is not None:
            self.model.load_state_dict(s["model"])
        if self.scorer is not None and s["scorer"] is not None:
            self.scorer.load_state_dict(s["scorer"])
        if self.opt is not None and s["opt"] is not None:
            self.opt.load_state_dict(s["opt"])
        if s["replay"] is not None:
            self.replay = _native.ReplayBuffer.from_bytes(s["replay"])
        self.drift.load_state_dict(s["drift"])
        self._drift_acc = np.asarray(s["drift_acc"], np.float64).copy()
        for k, v in s["counters"].items():
            setattr(self, k, v)
        self.alarms = list(s["alarms"])
