"""MovieLens (ml-latest-small layout) to rtrec events and items.

Each row of ``ratings.csv`` becomes a ``rating`` event (``value`` = stars, ``event_id`` =
``ml-<userId>-<movieId>``, so converting and ingesting twice stores nothing twice); each movie
of ``movies.csv`` becomes an item: the title without its year, the year in ``attrs``, the
first genre as ``category`` and the genres as ``tags``.

The users' tags (``tags.csv``) are left out unless asked for (``user_tags=True``: the ten most
used per film join its ``tags`` and its description). They are counted over the whole file, and
most films got their first tag after their first rating, so in a time-ordered replay they tell
the model which films people will come to engage with: an item text from the future.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from rtrec.errors import InvalidInputError

__all__ = ["convert_movielens", "split_title"]

_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[–-]\d{0,4})?\)\s*$")
_ARTICLE = re.compile(r"^(?P<body>.*), (?P<article>The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)$")
_MAX_USER_TAGS = 10

_COLUMNS = {
    "ratings.csv": ("userId", "movieId", "rating", "timestamp"),
    "movies.csv": ("movieId", "title", "genres"),
    "tags.csv": ("userId", "movieId", "tag", "timestamp"),
}


def split_title(raw: str) -> tuple[str, int | None]:
    """``"American President, The (1995)"`` -> ``("The American President", 1995)``."""
    text = raw.strip()
    year: int | None = None
    m = _YEAR.match(text)
    if m:
        text, year = m.group("title").strip(), int(m.group("year"))
    a = _ARTICLE.match(text)
    if a:
        article = a.group("article")
        text = f"{article}{'' if article.endswith(chr(39)) else ' '}{a.group('body')}"
    return text, year


def _read_csv(con: duckdb.DuckDBPyConnection, path: Path, required: bool = True) -> pa.Table | None:
    if not path.is_file():
        if required:
            raise InvalidInputError(f"MovieLens file {path} does not exist", hint="pass the ml-latest-small folder")
        return None
    try:
        table = con.sql(
            f"SELECT * FROM read_csv('{str(path).replace(chr(39), chr(39) * 2)}', header = true, all_varchar = true)"
        ).to_arrow_table()
    except duckdb.Error as exc:
        raise InvalidInputError(f"cannot read {path} as CSV: {str(exc).splitlines()[0]}") from exc
    missing = [c for c in _COLUMNS[path.name] if c not in table.column_names]
    if missing:
        raise InvalidInputError(f"{path}: column {missing[0]!r} is missing (expected {', '.join(_COLUMNS[path.name])})")
    return table


def convert_movielens(src: str | Path, out: str | Path, *, user_tags: bool = False) -> tuple[Path, Path]:
    """Convert a MovieLens folder into ``out/events.parquet`` and ``out/items.parquet``
    (``user_tags``: add the users' tags to each item; see the module's doc)."""
    src_dir, out_dir = Path(src).expanduser(), Path(out).expanduser()
    if not src_dir.is_dir():
        raise InvalidInputError(f"MovieLens folder {src_dir} does not exist")
    con = duckdb.connect()
    ratings = _read_csv(con, src_dir / "ratings.csv")
    movies = _read_csv(con, src_dir / "movies.csv")
    tags = _read_csv(con, src_dir / "tags.csv", required=False) if user_tags else None
    con.register("ratings", ratings)
    con.register("movies", movies)
    bad = con.sql(
        "SELECT count(*), min(concat_ws(',', userId, movieId, coalesce(rating, ''), coalesce(timestamp, ''))) "
        "FROM ratings WHERE TRY_CAST(rating AS DOUBLE) IS NULL OR TRY_CAST(timestamp AS BIGINT) IS NULL "
        "OR userId IS NULL OR movieId IS NULL"
    ).fetchall()[0]
    if bad[0]:
        raise InvalidInputError(f"ratings.csv: {bad[0]} malformed rows, e.g. {bad[1]!r}")
    events = con.sql(
        """
        SELECT 'ml-' || userId || '-' || movieId AS event_id,
               make_timestamp(CAST(timestamp AS BIGINT) * 1000000) AS ts,
               userId AS user_id, movieId AS item_id, 'rating' AS event_type,
               CAST(rating AS DOUBLE) AS value
        FROM ratings
        ORDER BY CAST(timestamp AS BIGINT), CAST(userId AS BIGINT), CAST(movieId AS BIGINT)
        """
    ).to_arrow_table()
    if tags is not None:
        con.register("tags", tags)
        user_tags = con.sql(
            f"""
            SELECT movieId, list(tag ORDER BY n DESC, tag)[1:{_MAX_USER_TAGS}] AS user_tags FROM (
                SELECT movieId, lower(trim(tag)) AS tag, count(*) AS n FROM tags
                WHERE tag IS NOT NULL AND trim(tag) <> '' GROUP BY ALL
            ) GROUP BY movieId
            """
        ).to_arrow_table()
    else:
        user_tags = pa.table({"movieId": pa.array([], pa.string()), "user_tags": pa.array([], pa.list_(pa.string()))})
    con.register("user_tags", user_tags)
    rows = con.sql(
        """
        SELECT m.movieId, m.title,
               CASE WHEN m.genres = '(no genres listed)' THEN [] ELSE string_split(m.genres, '|') END AS genres,
               coalesce(t.user_tags, []) AS user_tags
        FROM movies m LEFT JOIN user_tags t USING (movieId) ORDER BY CAST(m.movieId AS BIGINT)
        """
    ).fetchall()
    item_ids, titles, descs, cats, tag_lists, attrs = [], [], [], [], [], []
    for movie_id, raw_title, genres, utags in rows:
        title, year = split_title(raw_title or "")
        item_ids.append(str(movie_id))
        titles.append(title)
        cats.append(genres[0] if genres else None)
        tag_lists.append(list(dict.fromkeys([*genres, *utags])))
        parts = [f"Released {year}." if year else "", f"Genres: {', '.join(genres)}." if genres else ""]
        if utags:
            parts.append(f"Tagged by viewers: {', '.join(utags)}.")
        descs.append(" ".join(p for p in parts if p) or None)
        attrs.append(json.dumps({"year": year, "genres": genres, "user_tags": utags, "movielens_id": int(movie_id)}))
    items = pa.table(
        {
            "item_id": pa.array(item_ids, pa.string()),
            "title": pa.array(titles, pa.string()),
            "description": pa.array(descs, pa.string()),
            "category": pa.array(cats, pa.string()),
            "tags": pa.array(tag_lists, pa.list_(pa.string())),
            "attrs": pa.array(attrs, pa.string()),
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path, items_path = out_dir / "events.parquet", out_dir / "items.parquet"
    pq.write_table(events, events_path)
    pq.write_table(items, items_path)
    con.close()
    return events_path, items_path
