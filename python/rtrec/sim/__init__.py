"""A synthetic recommender world with a known click model and preference shifts."""

from rtrec.sim.simulator import SimConfig, Simulator

__all__ = ["SimConfig", "Simulator"]
