"""Shared fixtures: every test gets its own rtrec home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def rtrec_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "rtrec-home"
    monkeypatch.setenv("RTREC_HOME", str(home))
    monkeypatch.delenv("RTREC_CONFIG", raising=False)
    monkeypatch.delenv("RTREC_TOKEN", raising=False)
    monkeypatch.delenv("RTREC_READ_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return home


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run torch on one thread, as the learner does: small batches gain nothing from more."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
