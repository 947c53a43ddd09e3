"""Language-model encoders for item text, and their DuckDB embedding cache.

Importing this package is cheap: torch and transformers load when an encoder does.

>>> from rtrec.config import TextConfig
>>> enc = load_encoder(TextConfig(device="cpu"))  # doctest: +SKIP
>>> enc.encode(["a red leather shoe", "blue running shoes"]).shape  # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

from rtrec.text.cache import EmbeddingCache, text_hash
from rtrec.text.encoder import TextEncoder, centre, load_encoder, resolve_model
from rtrec.text.template import item_texts, render

__all__ = [
    "EmbeddingCache",
    "TextEncoder",
    "centre",
    "item_texts",
    "load_encoder",
    "render",
    "resolve_model",
    "text_hash",
]
