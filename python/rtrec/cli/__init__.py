"""The ``rtrec`` command line.

Each module in this package (other than those starting with ``_``) defines one command
and a ``register(app)`` function; they are discovered here so that adding a command is
adding a file. Command modules import only typer at import time, so ``rtrec --help``
stays fast; torch, transformers and duckdb load inside the command that needs them.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from rtrec import __version__

app = typer.Typer(
    name="rtrec",
    help="A real-time recommender for one machine.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rtrec {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """A real-time recommender for one machine: a DuckDB event log, an online CTR model and a language-model prior."""


for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_mod}").register(app)
