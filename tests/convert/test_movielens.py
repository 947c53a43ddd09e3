"""Tests for rtrec.convert.movielens on a small synthetic MovieLens folder (CRLF line endings)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rtrec.convert import convert_movielens
from rtrec.convert.movielens import split_title
from rtrec.errors import InvalidInputError
from rtrec.events import EventLog


def write_ml(d: Path, *, tags: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)

    def w(name: str, lines: list[str]) -> None:
        (d / name).write_bytes(("\r\n".join(lines) + "\r\n").encode())

    w(
        "ratings.csv",
        ["userId,movieId,rating,timestamp", "1,10,4.0,964982703", "1,20,2.5,964982000", "2,10,5.0,964990000"],
    )
    w(
        "movies.csv",
        [
            "movieId,title,genres",
            '10,"American President, The (1995)",Comedy|Drama|Romance',
            "20,Heat (1995),Action|Crime|Thriller",
            "30,Untitled,(no genres listed)",
        ],
    )
    if tags:
        w("tags.csv", ["userId,movieId,tag,timestamp", "1,10,politics,1", "2,10,Politics,2", "2,10,funny,3"])
    return d


def test_convert_and_ingest(tmp_path: Path) -> None:
    events_path, items_path = convert_movielens(write_ml(tmp_path / "ml"), tmp_path / "out")
    ev = pq.read_table(events_path).to_pylist()
    assert [(e["user_id"], e["item_id"], e["value"]) for e in ev] == [
        ("1", "20", 2.5),
        ("1", "10", 4.0),
        ("2", "10", 5.0),
    ]
    assert {e["event_type"] for e in ev} == {"rating"}
    assert ev[0]["event_id"] == "ml-1-20"
    items = {r["item_id"]: r for r in pq.read_table(items_path).to_pylist()}
    assert items["10"]["title"] == "The American President"
    assert json.loads(items["10"]["attrs"])["year"] == 1995
    assert items["10"]["category"] == "Comedy"
    assert items["10"]["tags"] == ["Comedy", "Drama", "Romance"]
    assert "politics" not in items["10"]["description"]
    assert items["30"]["category"] is None and items["30"]["tags"] == []
    with EventLog.open(tmp_path / "db.duckdb") as log:
        s = log.ingest_file(events_path)
        assert (s.accepted, len(s.rejected)) == (3, 0)
        assert log.ingest_file(items_path, items=True).accepted == 3
        assert log.ingest_file(events_path).duplicates == 3


def test_user_tags_only_when_asked_for(tmp_path: Path) -> None:
    """Users' tags are counted over the whole file (text from the future in a replay): opt-in only."""
    _, items_path = convert_movielens(write_ml(tmp_path / "ml"), tmp_path / "out", user_tags=True)
    item = {r["item_id"]: r for r in pq.read_table(items_path).to_pylist()}["10"]
    assert item["tags"] == ["Comedy", "Drama", "Romance", "politics", "funny"]
    assert "Tagged by viewers: politics, funny." in item["description"]
    assert json.loads(item["attrs"])["user_tags"] == ["politics", "funny"]


def test_tags_file_is_optional(tmp_path: Path) -> None:
    _, items_path = convert_movielens(write_ml(tmp_path / "ml", tags=False), tmp_path / "out", user_tags=True)
    assert pq.read_table(items_path).num_rows == 3


def test_missing_files_and_columns(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        convert_movielens(tmp_path / "nope", tmp_path / "out")
    d = write_ml(tmp_path / "ml")
    (d / "movies.csv").unlink()
    with pytest.raises(InvalidInputError, match=r"movies\.csv does not exist"):
        convert_movielens(d, tmp_path / "out")
    d = write_ml(tmp_path / "ml2")
    (d / "ratings.csv").write_bytes(b"userId,movieId,stars\r\n1,2,3\r\n")
    with pytest.raises(InvalidInputError, match="'rating' is missing"):
        convert_movielens(d, tmp_path / "out")
    d = write_ml(tmp_path / "ml3")
    (d / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\r\n1,2,good,5\r\n")
    with pytest.raises(InvalidInputError, match="malformed rows"):
        convert_movielens(d, tmp_path / "out")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Toy Story (1995)", ("Toy Story", 1995)),
        ("American President, The (1995)", ("The American President", 1995)),
        ("Babylon 5", ("Babylon 5", None)),
        ("Fawlty Towers (1975-1979)", ("Fawlty Towers", 1975)),
    ],
)
def test_split_title(raw: str, want: tuple[str, int | None]) -> None:
    assert split_title(raw) == want
