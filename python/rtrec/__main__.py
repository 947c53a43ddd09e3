"""Entry point for ``python -m rtrec``."""

from rtrec.cli import app

app(prog_name="rtrec")
