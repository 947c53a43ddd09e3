"""Tests for rtrec.models.ctr: CSR inputs, row independence, determinism and the text projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtrec.models import CTRModel, LogisticModel, ModelInput, TextScorer

BUCKETS = 1 << 10


def make_input(rows: list[list[int]], dense_dim: int = 3, text_dim: int = 0, seed: int = 0) -> ModelInput:
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor(np.concatenate([[0], np.cumsum([len(r) for r in rows])]), dtype=torch.int64)
    indices = torch.tensor([i for r in rows for i in r], dtype=torch.int64)
    dense = torch.randn(len(rows), dense_dim, generator=g)
    text = torch.randn(len(rows), text_dim, generator=g) if text_dim else None
    return ModelInput(indices, offsets, dense, text)


def model(seed: int = 0, **kw: int) -> CTRModel:
    torch.manual_seed(seed)
    return CTRModel(BUCKETS, dim=8, hidden=(16,), dense_dim=3, **kw)


ROWS = [[1, 5, 9], [2], [], [5, 5, 700], [1023, 0]]


def test_input_rows_and_feature_rows() -> None:
    x = make_input(ROWS)
    assert x.rows == 5
    assert x.row_of_feature().tolist() == [0, 0, 0, 1, 3, 3, 3, 4, 4]


@pytest.mark.parametrize("cls", [CTRModel, LogisticModel])
def test_one_logit_per_row_even_for_empty_rows(cls: type) -> None:
    m = model() if cls is CTRModel else LogisticModel(BUCKETS)
    out = m(make_input(ROWS))
    assert out.shape == (5,) and torch.isfinite(out).all()


def test_rows_are_scored_independently_of_their_batch() -> None:
    m = model()
    x = make_input(ROWS)
    with torch.no_grad():
        together = m(x)
        for r, feats in enumerate(ROWS):
            single = ModelInput(
                torch.tensor(feats, dtype=torch.int64), torch.tensor([0, len(feats)]), x.dense[r : r + 1], None
            )
            assert torch.allclose(m(single), together[r : r + 1], atol=1e-6)


def test_feature_order_within_a_row_does_not_matter() -> None:
    m = model()
    a = make_input([[1, 5, 9, 300]])
    b = ModelInput(torch.tensor([300, 9, 1, 5]), a.offsets, a.dense, None)
    with torch.no_grad():
        assert torch.allclose(m(a), m(b), atol=1e-6)


def test_features_interact() -> None:
    """The factorisation machine makes f(a, b) differ from f(a) + f(b) - f()."""
    m = model()
    dense = torch.zeros(4, 3)
    x = ModelInput(torch.tensor([3, 4, 3, 4]), torch.tensor([0, 2, 3, 4, 4]), dense, None)
    with torch.no_grad():
        both, only_a, only_b, none = m(x).tolist()
    assert abs((both - none) - ((only_a - none) + (only_b - none))) > 1e-6


def test_same_seed_same_model_other_seed_other_model() -> None:
    x = make_input(ROWS)
    with torch.no_grad():
        assert torch.equal(model(0)(x), model(0)(x))
        assert not torch.equal(model(0)(x), model(1)(x))


def test_state_dict_round_trip_gives_identical_logits() -> None:
    a, b = model(0, text_dim=6, text_proj=4), model(1, text_dim=6, text_proj=4)
    b.load_state_dict(a.state_dict())
    x = make_input(ROWS, text_dim=6)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_forward_and_backward_leave_inputs_unchanged() -> None:
    m = model(text_dim=6, text_proj=4)
    x = make_input(ROWS, text_dim=6)
    before = [t.clone() for t in (x.indices, x.offsets, x.dense, x.item_text)]  # type: ignore[union-attr]
    m(x).sum().backward()
    for t, b in zip((x.indices, x.offsets, x.dense, x.item_text), before, strict=True):
        assert torch.equal(t, b)  # type: ignore[arg-type]


def test_text_projection_uses_item_text() -> None:
    m = model(text_dim=6, text_proj=4)
    x = make_input(ROWS, text_dim=6, seed=1)
    y = ModelInput(x.indices, x.offsets, x.dense, x.item_text * 2)  # type: ignore[operator]
    none = ModelInput(x.indices, x.offsets, x.dense, None)
    with torch.no_grad():
        assert not torch.allclose(m(x), m(y))
        out = m(none)  # a row without text is scored (as zeros through the projection)
        assert out.shape == (5,) and torch.isfinite(out).all()
    plain = model()
    with torch.no_grad():
        assert torch.equal(plain(x), plain(none))  # no projection: text is ignored


def test_logistic_model_starts_at_one_half() -> None:
    m = LogisticModel(BUCKETS)
    with torch.no_grad():
        assert torch.equal(torch.sigmoid(m(make_input(ROWS))), torch.full((5,), 0.5))


def test_text_scorer_shape() -> None:
    s = TextScorer(6)
    item, user = torch.randn(4, 6), torch.zeros(4, 6)
    out = s(item, user)
    assert out.shape == (4,) and torch.isfinite(out).all()


@pytest.mark.parametrize("kw", [{}, {"text_dim": 6, "text_proj": 4}])
@pytest.mark.parametrize("hidden", [(16,), (16, 8), ()])
def test_native_score_equals_the_forward_pass(kw: dict, hidden: tuple[int, ...]) -> None:
    torch.manual_seed(3)
    m = CTRModel(BUCKETS, dim=8, hidden=hidden, dense_dim=3, **kw)
    with torch.no_grad():  # trained-looking weights: every part contributes
        m.table.weight.normal_(0.0, 0.5)
        m.table.norm2.copy_((m.table.weight[:, 1:] ** 2).sum(dim=1, keepdim=True))
        m.bias.fill_(0.3)
    x = make_input(ROWS, text_dim=kw.get("text_dim", 0), seed=1)
    with torch.no_grad():
        want = m(x).numpy()
    text = x.item_text.numpy() if x.item_text is not None else None
    got = m.score(x.indices.numpy(), x.offsets.numpy(), x.dense.numpy(), text)
    assert got.shape == (len(ROWS),)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # An update in place is seen by the next call (the views share the parameters' memory).
    with torch.no_grad():
        m.bias.add_(1.0)
    again = m.score(x.indices.numpy(), x.offsets.numpy(), x.dense.numpy(), text)
    np.testing.assert_allclose(again, want + 1.0, rtol=1e-5)


def test_native_score_rejects_an_index_outside_the_table() -> None:
    from rtrec.errors import InvalidInputError

    m = model()
    x = make_input([[BUCKETS]])
    with pytest.raises(InvalidInputError, match="indices"):
        m.score(x.indices.numpy(), x.offsets.numpy(), x.dense.numpy())
