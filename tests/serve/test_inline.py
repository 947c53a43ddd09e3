"""Which recommend requests are answered on the event loop: the cheap ones only."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from rtrec.config import load_config
from rtrec.learn import OnlineLearner
from rtrec.serve import ranker as ranker_module
from rtrec.serve.metrics import Meters
from rtrec.serve.ranker import Ranker
from tests.learn.streams import events


def make_ranker() -> Ranker:
    cfg = load_config(overrides={"text": {"enabled": False}})
    learner = OnlineLearner(cfg)
    learner.set_catalog(pa.table({"item_id": [f"i{k}" for k in range(50)], "category": ["c"] * 50}))
    learner.learn(events([(k, "known", f"i{k}", "click") for k in range(5)]))
    none: Any = None
    return Ranker(cfg, learner, none, none, none, Meters(), list)


@pytest.mark.parametrize(
    ("user", "candidates", "context", "category", "inline"),
    [
        ("known", None, None, None, True),  # the pipeline: a few hundred candidates
        ("known", ["i1", "i2"], None, None, False),  # named candidates, any number of them
        ("stranger", None, None, None, True),  # a small catalog's scan
        ("stranger", None, {"device": "mobile"}, None, True),
        ("stranger", None, {"text": "red shoes"}, None, False),  # text to encode
        ("stranger", None, None, "c", False),  # a category to look up over the catalog
    ],
)
def test_cheap_requests_are_answered_inline(
    user: str, candidates: list[str] | None, context: dict[str, Any] | None, category: str | None, inline: bool
) -> None:
    assert make_ranker().inline(user, candidates, context, category) is inline


def test_a_strangers_scan_of_a_large_catalog_is_not_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    r = make_ranker()
    monkeypatch.setattr(ranker_module, "INLINE_SCAN_ITEMS", 49)  # the catalog has 50 items
    assert not r.inline("stranger", None, None, None)
    assert r.inline("known", None, None, None)
