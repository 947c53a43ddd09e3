"""Item-text encoder throughput: items/s for MiniLM and GPT-2 (tiny and full-size) at fixed sequence lengths.

Every text is long enough to be truncated to exactly ``--lengths`` tokens, so the numbers
are per sequence length. ``items_per_s`` is end to end (tokenising included, as ``rtrec
encode`` does it); ``tokenize_items_per_s`` is the tokenizer alone. Models load through
``rtrec.text.load_encoder`` like in production; the GPT-2s are random-weight models built
locally (``rtrec.text.testing.build_tiny_gpt2``), which run at the same speed as trained
ones. Progress goes to stderr, and the last line of
stdout is one JSON object.

    python bench/encode.py                                   # this CPU
    python bench/encode.py --device cuda --dtype bf16 --batch-size 1024 --n 100000 --models gpt2
    python bench/encode.py --cache      # also through the DuckDB embedding cache, as rtrec encode
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Catalog-ish vocabulary for synthetic item texts.
VOCAB = (
    "red blue green leather cotton wool shoe shirt hat coffee beans organic roasted wireless headphones battery "
    "travel novel detective coastal town running rain sole laces premium classic vintage modern light heavy warm "
    "summer winter kitchen garden outdoor indoor gift family kids adult sport casual formal daily"
)


def texts(n: int, words: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words_list = VOCAB.split()
    return [" ".join(rng.choice(words_list) for _ in range(words)).capitalize() + "." for _ in range(n)]


def through_cache(enc: object, batch: list[str], folder: Path) -> float:
    """Items/s of ``EmbeddingCache.refresh`` (render, hash, encode, write to DuckDB), as ``rtrec encode`` runs it."""
    import pyarrow as pa

    from rtrec.events import EventLog
    from rtrec.text import EmbeddingCache

    folder.mkdir(parents=True, exist_ok=True)
    items = pa.table({"item_id": [f"i{k}" for k in range(len(batch))], "title": batch})
    with EventLog.open(folder / "rtrec.duckdb") as log:
        stats = EmbeddingCache(log.cursor, enc, "{title}").refresh(items)
    return float(stats["items_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="minilm,gpt2-tiny,gpt2", help="comma list of minilm, gpt2-tiny, gpt2")
    p.add_argument("--lengths", default="32,64", help="comma list of sequence lengths in tokens")
    p.add_argument("--n", type=int, default=None, help="items per measurement [cpu: 1024, cuda: 50000]")
    p.add_argument("--n-gpt2", type=int, default=None, help="items for full-size GPT-2 [cpu: 256, else --n]")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--dtype", default="auto", help="auto, fp32, bf16 or fp16")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--gpt2-model", default=None, help="bench these GPT-2 weights (a folder, or gpt2 from the HF cache)")
    p.add_argument(
        "--cache",
        action="store_true",
        help="also time the production path: EmbeddingCache.refresh into a fresh DuckDB event log (rtrec encode)",
    )
    args = p.parse_args()

    import torch

    from rtrec.config import TextConfig
    from rtrec.text import load_encoder
    from rtrec.text.testing import build_tiny_gpt2

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    lengths = [int(x) for x in args.lengths.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="rtrec-bench-") as tmp:
        sources = {"minilm": "all-MiniLM-L6-v2"}
        # Tokenizers trained on the benchmark's words make each word one token, as the real
        # GPT-2 vocabulary does for common English words.
        corpus = [VOCAB, VOCAB.title(), *texts(200, words=64)]
        if "gpt2-tiny" in models:
            sources["gpt2-tiny"] = str(build_tiny_gpt2(Path(tmp) / "gpt2-tiny", corpus=corpus, vocab_size=1000))
        if "gpt2" in models:
            sources["gpt2"] = args.gpt2_model or str(
                build_tiny_gpt2(Path(tmp) / "gpt2", full_size=True, corpus=corpus, vocab_size=1000)
            )
        for key in models:
            for length in lengths:
                cfg = TextConfig(
                    model=sources[key],
                    max_length=length,
                    batch_size=args.batch_size,
                    device=args.device,
                    dtype=args.dtype,
                    threads=args.threads,
                )
                enc = load_encoder(cfg)
                on_cpu = enc.device == "cpu"
                n = args.n or (1024 if on_cpu else 50_000)
                if key == "gpt2" and on_cpu:
                    n = args.n_gpt2 or 256
                batch = texts(n, words=length + 8, seed=length)
                t0 = time.perf_counter()
                tokens = sum(len(x) for x in enc.tokenize(batch)) / n
                tokenize_s = time.perf_counter() - t0
                enc.encode(batch[: args.batch_size])  # warm-up: kernels, allocator, thread pool
                start = time.perf_counter()
                out = enc.encode(batch)
                seconds = time.perf_counter() - start
                assert out.shape == (n, enc.dim)
                row = {
                    "model": key,
                    "source": enc.name if key == "minilm" or args.gpt2_model else f"random-weight {key}",
                    "params_m": round(sum(p.numel() for p in enc.model.parameters()) / 1e6, 3),
                    "length": length,
                    "tokens_per_item": round(tokens, 1),
                    "n": n,
                    "seconds": round(seconds, 3),
                    "items_per_s": round(n / seconds, 1),
                    "tokenize_items_per_s": round(n / tokenize_s, 1),
                    "device": enc.device,
                    "dtype": enc.dtype,
                }
                if args.cache:
                    row["cache_items_per_s"] = round(through_cache(enc, batch, Path(tmp) / f"{key}-{length}"), 1)
                results.append(row)
                print(
                    f"{key:10s} len={length:3d} n={n:6d} {row['items_per_s']:10.1f} items/s "
                    f"(tokenizing alone {row['tokenize_items_per_s']:.0f}/s"
                    + (f", through the cache {row['cache_items_per_s']:.0f}/s" if args.cache else "")
                    + ") "
                    f"({enc.device}, {enc.dtype}, batch {args.batch_size})",
                    file=sys.stderr,
                    flush=True,
                )
                del enc
    summary = {
        "bench": "encode",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "batch_size": args.batch_size,
        "results": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
