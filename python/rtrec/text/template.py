"""Item text built from catalog fields by a template."""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from rtrec.errors import ConfigError, InvalidInputError

_PUNCT = ".,;:!?|/-"


def template_fields(template: str) -> list[str]:
    """The field names a template refers to, in order.

    >>> template_fields("{title}. {category}")
    ['title', 'category']
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"config key text.template is not a valid template: {exc}") from exc
    fields = []
    for _literal, name, _spec, _conv in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ConfigError(
                f"config key text.template refers to {{{name}}}; only plain column names are allowed",
                hint="use fields such as {title}, {category}, {tags}, {description}",
            )
        fields.append(name)
    return fields


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``template`` with ``values``, dropping empty fields together with their separator.

    The literal text before a field is its separator; the first kept field takes the
    template's leading text instead, so ``"{title}. {category}. {tags}"`` with no category
    renders ``"Shoe. red, leather"``, never ``"Shoe. . red, leather"``.

    >>> render("{title}. {category}. {tags}", {"title": "Shoe", "category": "", "tags": "red"})
    'Shoe. red'
    """
    parsed = list(string.Formatter().parse(template))
    lead = parsed[0][0] if parsed else ""
    out = ""
    kept = 0
    trailing = ""
    for literal, name, _spec, _conv in parsed:
        if name is None:
            trailing = literal
            continue
        value = values.get(name, "")
        if not value:
            continue
        sep = lead if kept == 0 else literal
        out = _join(out, sep) + value
        kept += 1
    if kept == 0:
        return ""
    return " ".join(_join(out, trailing).split())


def _join(text: str, sep: str) -> str:
    # A title that already ends in "." followed by the ". " separator would read "Shoe.. red".
    stripped = sep.lstrip()
    if text and stripped and stripped[0] in _PUNCT and text.rstrip().endswith(stripped[0]):
        sep = stripped[1:]
    return text + sep


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
        # The event log stores attrs as a JSON object in a VARCHAR.
        if text.startswith("{") and text.endswith("}"):
            try:
                parsed = json.loads(text)
            except ValueError:
                return text
            if isinstance(parsed, dict):
                return _as_text(parsed)
        return text
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_as_text(v)}" for k, v in value.items() if _as_text(v))
    if isinstance(value, list | tuple):
        # A map column arrives as a list of (key, value) pairs.
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return ", ".join(f"{k}: {_as_text(v)}" for k, v in value if _as_text(v))
        return ", ".join(t for t in (_as_text(v) for v in value) if t)
    return str(value)


def item_texts(items: pa.Table, template: str) -> list[str]:
    """One text per row of an items table, in row order.

    List columns (``tags``) are joined with ", ", struct or map columns and JSON-object
    strings (``attrs``) render as ``key: value`` pairs, nulls render as empty and their separators are dropped.

    >>> t = pa.table({"title": ["Red shoe", "Hat"], "category": ["shoes", None], "tags": [["red"], []]})
    >>> item_texts(t, "{title}. {category}. {tags}")
    ['Red shoe. shoes. red', 'Hat']
    """
    fields = template_fields(template)
    missing = [f for f in fields if f not in items.column_names]
    if missing:
        raise InvalidInputError(
            f"text template field {{{missing[0]}}} is not a column of the items table",
            hint=f"columns: {', '.join(items.column_names)}",
        )
    columns: dict[str, Sequence[Any]] = {f: items.column(f).to_pylist() for f in dict.fromkeys(fields)}
    return [render(template, {f: _as_text(col[i]) for f, col in columns.items()}) for i in range(items.num_rows)]
