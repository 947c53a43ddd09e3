"""A small simulated log shared by the command tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtrec.sim import SimConfig, Simulator


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return Simulator(SimConfig(n_users=20, n_items=30, n_topics=3, n_events=1_500, seed=2)).write(
        tmp_path_factory.mktemp("sim")
    )
