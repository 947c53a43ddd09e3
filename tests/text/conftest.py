"""Fixtures for the text tests: a tiny GPT-2 built locally, MiniLM from its package, a DuckDB table."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# huggingface_hub reads these once, at import: set them before anything imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import duckdb
import pyarrow as pa
import pytest

from rtrec.config import TextConfig
from rtrec.text import TextEncoder, load_encoder
from rtrec.text.testing import build_tiny_gpt2

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS item_embeddings(item_id VARCHAR, model VARCHAR, text_hash VARCHAR, dim INTEGER, "
    "embedding FLOAT[], updated_at TIMESTAMP, PRIMARY KEY(item_id, model))"
)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir: Path) -> TextEncoder:
    return load_encoder(TextConfig(model=str(tiny_gpt2_dir), device="cpu", batch_size=4))


@pytest.fixture(scope="session")
def minilm() -> TextEncoder:
    return load_encoder(TextConfig(model="all-MiniLM-L6-v2", device="cpu"))


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "rtrec.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    con.close()
    yield path


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(str(db_path))
    yield c
    c.close()


def make_items(n: int = 6, **changes: dict[int, str]) -> pa.Table:
    """A small catalog; ``changes={"title": {2: "new"}}``-style edits via keyword per column."""
    cats = ["shoes", "shirts", None, "coffee", "books", "audio"]
    cols = {
        "item_id": [f"i{i}" for i in range(n)],
        "title": [f"Item number {i} with a title" for i in range(n)],
        "description": [None if i % 3 == 0 else f"A description of item {i}, long enough to pad." for i in range(n)],
        "category": [cats[i % len(cats)] for i in range(n)],
        "tags": [[f"tag{i}", "sale"] if i % 2 else [] for i in range(n)],
    }
    for column, edits in changes.items():
        for i, value in edits.items():
            cols[column][i] = value
    return pa.table(
        {
            **{k: pa.array(v, pa.string()) for k, v in cols.items() if k != "tags"},
            "tags": pa.array(cols["tags"], pa.list_(pa.string())),
        }
    )
