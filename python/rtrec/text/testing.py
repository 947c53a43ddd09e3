"""Tiny language models built locally, for tests and benchmarks (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

CORPUS = (
    "A red leather shoe for running in the rain.",
    "Blue cotton shirt with long sleeves, machine washable.",
    "The quick brown fox jumps over the lazy dog.",
    "Wireless headphones with noise cancelling and a long battery life.",
    "Fresh organic coffee beans roasted in small batches.",
    "A thriller novel about a detective in a small coastal town.",
)


def build_tiny_gpt2(
    folder: str | Path,
    *,
    n_embd: int = 32,
    n_layer: int = 2,
    n_head: int = 2,
    n_positions: int = 128,
    full_size: bool = False,
    seed: int = 0,
    corpus: tuple[str, ...] | list[str] = CORPUS,
    vocab_size: int = 400,
) -> Path:
    """Write a GPT-2 with random weights and a byte-level BPE tokenizer to ``folder``; return it.

    The folder loads like any saved GPT-2 (``AutoModel.from_pretrained(folder)``, or
    ``[text] model = "<folder>"``). ``full_size=True`` uses ``GPT2Config()`` defaults (124M
    parameters), for speed measurements only. The tokenizer is a byte-level BPE trained on
    ``corpus`` up to ``vocab_size`` tokens; train it on the words a benchmark uses so they are
    single tokens, as common English words are in the real GPT-2 vocabulary.

    >>> enc_dir = build_tiny_gpt2(tmp_path / "gpt2")  # doctest: +SKIP
    """
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast  # type: ignore[attr-defined]  # lazy in v5

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[eos],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tokenizer = GPT2TokenizerFast(tokenizer_object=tok, bos_token=eos, eos_token=eos, unk_token=eos)
    tokenizer.save_pretrained(folder)
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    if full_size:
        config = GPT2Config(bos_token_id=eos_id, eos_token_id=eos_id)
    else:
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=n_positions,
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
        )
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    GPT2Model(config).save_pretrained(folder)
    return folder
