"""``rtrec convert``: turn public data sets into events.parquet and items.parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from rtrec.cli._common import handle_errors

convert_app = typer.Typer(
    name="convert",
    help="Convert a public data set into events.parquet and items.parquet.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


SRC_ARGUMENT = typer.Argument(
    ..., help="A MovieLens folder (ml-latest-small layout: ratings.csv, movies.csv, tags.csv)."
)
OUT_OPTION = typer.Option(..., "--out", help="Folder to write events.parquet and items.parquet into.")
USER_TAGS_OPTION = typer.Option(
    False,
    "--user-tags",
    help="Add the users' tags (tags.csv) to each movie's tags and description. They are counted over "
    "the whole file, so a replay of the ratings with them reads the future.",
)


@convert_app.command("movielens")
@handle_errors
def movielens(
    src: Path = SRC_ARGUMENT,
    out: Path = OUT_OPTION,
    user_tags: bool = USER_TAGS_OPTION,
) -> None:
    """Each rating becomes a rating event; each movie an item with title, year and genres."""
    import pyarrow.parquet as pq

    from rtrec.convert import convert_movielens

    events_path, items_path = convert_movielens(src, out, user_tags=user_tags)
    n_events = pq.ParquetFile(events_path).metadata.num_rows
    n_items = pq.ParquetFile(items_path).metadata.num_rows
    typer.echo(f"Wrote {n_events} rating events to {events_path} and {n_items} items to {items_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(convert_app, name="convert")
