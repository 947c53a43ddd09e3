from __future__ import annotations

import pyarrow as pa
import pytest

from rtrec.errors import ConfigError, InvalidInputError
from rtrec.text import item_texts, render
from rtrec.text.template import template_fields

TEMPLATE = "{title}. {category}. {tags}. {description}"


def table(**cols: list) -> pa.Table:
    return pa.table(cols)


def test_all_fields_render_in_template_order() -> None:
    t = table(title=["Red shoe"], category=["shoes"], tags=[["red", "leather"]], description=["Runs well"])
    assert item_texts(t, TEMPLATE) == ["Red shoe. shoes. red, leather. Runs well"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"title": "Hat", "category": None, "tags": ["wool"], "description": "Warm"}, "Hat. wool. Warm"),
        ({"title": None, "category": "hats", "tags": [], "description": "Warm"}, "hats. Warm"),
        ({"title": "Hat", "category": "hats", "tags": None, "description": None}, "Hat. hats"),
        ({"title": None, "category": None, "tags": [], "description": None}, ""),
    ],
)
def test_nulls_render_empty_without_leftover_separators(values: dict, expected: str) -> None:
    t = pa.table({k: pa.array([v], pa.list_(pa.string()) if k == "tags" else pa.string()) for k, v in values.items()})
    assert item_texts(t, TEMPLATE) == [expected]


def test_no_doubled_punctuation_and_whitespace_is_collapsed() -> None:
    t = table(title=["Dr. Who box set."], category=["tv\n\nseries"], tags=[["  bbc "]], description=["  "])
    assert item_texts(t, TEMPLATE) == ["Dr. Who box set. tv series. bbc"]


def test_struct_and_map_attrs_render_as_pairs() -> None:
    attrs = pa.array([{"brand": "Acme", "size": None}], pa.struct([("brand", pa.string()), ("size", pa.string())]))
    t = pa.table({"title": ["Anvil"], "attrs": attrs})
    assert item_texts(t, "{title} ({attrs})") == ["Anvil (brand: Acme)"]
    m = pa.array([[("colour", "red")]], pa.map_(pa.string(), pa.string()))
    assert item_texts(pa.table({"title": ["Anvil"], "attrs": m}), "{title}: {attrs}") == ["Anvil: colour: red"]


def test_json_object_attrs_render_as_pairs() -> None:
    t = table(title=["Anvil", "Hammer"], attrs=['{"brand": "Acme", "weight": 5, "tags": ["iron"]}', "{not json}"])
    assert item_texts(t, "{title}. {attrs}") == ["Anvil. brand: Acme, weight: 5, tags: iron", "Hammer. {not json}"]


def test_leading_and_trailing_literals_are_kept() -> None:
    assert render("Item: {title}.", {"title": "Hat"}) == "Item: Hat."
    assert render("Item: {title}, {category}.", {"title": "", "category": "hats"}) == "Item: hats."


def test_missing_column_is_named() -> None:
    with pytest.raises(InvalidInputError, match="brand"):
        item_texts(table(title=["x"]), "{title} {brand}")


@pytest.mark.parametrize("template", ["{title", "{attrs.brand}", "{0}"])
def test_bad_templates_are_config_errors(template: str) -> None:
    with pytest.raises(ConfigError):
        template_fields(template)
