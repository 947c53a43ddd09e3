"""Hub names (``gpt2``) resolve through the local Hugging Face cache, never the network."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rtrec.config import TextConfig
from rtrec.errors import ModelNotFoundError
from rtrec.text import load_encoder

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # transformers 5 reads huggingface_hub.constants.HF_HUB_CACHE at call time, so patching it
    # points every lookup at an empty cache of our own (the HF_HUB_CACHE variable is read at import).
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_gpt2_loads_from_the_hugging_face_cache(hub_cache: Path, tiny_gpt2_dir: Path) -> None:
    repo = hub_cache / "models--gpt2"
    shutil.copytree(tiny_gpt2_dir, repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    enc = load_encoder(TextConfig(model="gpt2", device="cpu"))
    assert (enc.name, enc.dim, type(enc.model).__name__) == ("gpt2", 32, "GPT2Model")
    assert enc.encode(["a red shoe"]).shape == (1, 32)


def test_gpt2_missing_from_the_cache_is_named_not_replaced(hub_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="text model 'gpt2' is not available locally") as info:
        load_encoder(TextConfig(model="gpt2", device="cpu"))
    assert "hf download gpt2" in (info.value.hint or "")
