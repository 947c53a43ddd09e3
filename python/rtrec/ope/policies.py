"""Exploration policies named on a command line: ``epsilon=0.1``, ``softmax:temperature=0.05``, ``none``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rtrec.errors import InvalidInputError
from rtrec.ope.marginals import DEFAULT_SAMPLES, Marginals, list_marginals

__all__ = ["PolicySpec", "item_uncertainty", "parse_policy"]

KINDS = ("none", "epsilon", "softmax", "thompson")
_PARAM = {"epsilon": "epsilon", "softmax": "temperature", "thompson": "scale"}


@dataclass(frozen=True)
class PolicySpec:
    """An exploration policy and its one parameter.

    >>> parse_policy("softmax:temperature=0.05").label
    'softmax:temperature=0.05'
    >>> parse_policy("epsilon=0.1") == PolicySpec("epsilon", 0.1)
    True
    """

    kind: str
    param: float = 0.0  # epsilon, temperature or thompson's scale; unused by none

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInputError(f"policy: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "epsilon" and not 0.0 <= self.param <= 1.0:
            raise InvalidInputError(f"policy {self.kind}: epsilon must be in [0, 1], got {self.param}")
        if self.kind in ("softmax", "thompson") and not self.param > 0.0:
            raise InvalidInputError(f"policy {self.kind}: {_PARAM[self.kind]} must be positive, got {self.param}")

    @classmethod
    def served(cls, kind: str, serve: Any) -> PolicySpec:
        """The policy ``kind`` with its parameter from a :class:`rtrec.config.ServeConfig`."""
        param = {"epsilon": serve.epsilon, "softmax": serve.temperature, "thompson": serve.temperature}.get(kind, 0.0)
        return cls(kind, param)

    def slate_args(self) -> dict[str, Any]:
        """``policy``, ``epsilon`` and ``temperature`` as :func:`rtrec.serve.policy.select_slate` takes them
        (thompson's scale goes in as the temperature: the noise of an item with no examples)."""
        return {
            "policy": self.kind,
            "epsilon": self.param if self.kind == "epsilon" else 0.0,
            "temperature": self.param if self.kind in ("softmax", "thompson") else 1.0,
        }

    @property
    def label(self) -> str:
        return self.kind if self.kind == "none" else f"{self.kind}:{_PARAM[self.kind]}={self.param:g}"

    def marginals(
        self,
        scores: np.ndarray,
        k: int,
        *,
        uncertainty: np.ndarray | None = None,
        samples: int = DEFAULT_SAMPLES,
        rng: np.random.Generator | None = None,
    ) -> Marginals:
        """This policy's probabilities of showing each candidate (``uncertainty``: thompson's sigma per unit scale)."""
        sigma = None
        if self.kind == "thompson":
            sigma = self.param * (uncertainty if uncertainty is not None else np.ones(len(scores)))
        return list_marginals(scores, k, **self.slate_args(), sigma=sigma, samples=samples, rng=rng)


def item_uncertainty(item_n: np.ndarray) -> np.ndarray:
    """Thompson's score noise per unit scale: ``1 / sqrt(1 + the item's examples)``."""
    return 1.0 / np.sqrt(1.0 + np.asarray(item_n, np.float64))


def parse_policy(text: str) -> PolicySpec:
    """A policy from text: ``none``, ``epsilon=0.1`` (or ``epsilon:epsilon=0.1``), ``softmax=0.05``
    (or ``softmax:temperature=0.05``), ``thompson=1`` (or ``thompson:scale=1``)."""
    raw = text.strip()
    kind, _, rest = raw.partition(":")
    if not rest and "=" in kind:
        kind, _, value = kind.partition("=")
        name = _PARAM.get(kind.strip())
    elif rest:
        name, _, value = rest.partition("=")
        if name.strip() != _PARAM.get(kind.strip()):
            want = _PARAM.get(kind.strip())
            takes = f"{want}=VALUE" if want else "no parameter"
            raise InvalidInputError(f"policy {raw!r}: {kind.strip()} takes {takes}, got {name.strip()!r}")
    else:
        value, name = "", None
    kind = kind.strip()
    if kind not in KINDS:
        raise InvalidInputError(f"policy {raw!r}: kind must be one of {', '.join(KINDS)}")
    if kind == "none":
        if value:
            raise InvalidInputError(f"policy {raw!r}: none takes no parameter")
        return PolicySpec("none")
    if not value:
        raise InvalidInputError(f"policy {raw!r}: {kind} needs {name or _PARAM[kind]}=VALUE")
    try:
        param = float(value)
    except ValueError:
        raise InvalidInputError(f"policy {raw!r}: {_PARAM[kind]} must be a number, got {value!r}") from None
    return PolicySpec(kind, param)
