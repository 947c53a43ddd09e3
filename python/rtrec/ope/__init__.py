"""Off-policy evaluation: what a policy would earn, estimated from what another one logged."""

from rtrec.ope.marginals import Marginals, greedy_order, list_marginals

__all__ = ["Marginals", "greedy_order", "list_marginals"]
