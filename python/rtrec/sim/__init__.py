"""A synthetic recommender world with a known click model and preference shifts."""

from rtrec.sim.simulator import EventCounts, SimConfig, Simulator

__all__ = ["EventCounts", "SimConfig", "Simulator"]
