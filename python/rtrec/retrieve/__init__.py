"""Candidate retrieval: the sources that propose items for a user, updated by the learn step."""

from rtrec.retrieve.sources import FEATURES, SOURCES, Candidates, Retrieval

__all__ = ["FEATURES", "SOURCES", "Candidates", "Retrieval"]
