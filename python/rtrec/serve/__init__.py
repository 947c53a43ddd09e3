"""The daemon and its HTTP API: ingest, online learning, recommendations with exploration.

Importing this package is cheap; the daemon, FastAPI and torch load in the modules that need them.
"""

from __future__ import annotations
