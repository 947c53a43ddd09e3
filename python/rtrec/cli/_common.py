"""Shared pieces of the command modules: config from flags, error reporting, consoles."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from rtrec.errors import RtrecError

F = TypeVar("F", bound=Callable[..., Any])

HOME_OPTION = typer.Option(None, "--home", help="rtrec home directory [env: RTREC_HOME; default: ~/.rtrec].")
CONFIG_OPTION = typer.Option(None, "--config", help="TOML config file [env: RTREC_CONFIG].")


def debug_enabled() -> bool:
    return os.environ.get("RTREC_DEBUG", "") not in ("", "0")


def handle_errors(fn: F) -> F:
    """Turn an expected failure into one line on stderr and exit status 1.

    Set ``RTREC_DEBUG=1`` to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RtrecError as exc:
            if debug_enabled():
                raise
            msg = f"Error: {exc}"
            if exc.hint:
                msg += f"\nHint: {exc.hint}"
            typer.echo(msg, err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def load(config: Path | None, home: Path | None, overrides: dict[str, Any] | None = None) -> Any:
    from rtrec.config import load_config

    return load_config(config, home=home, overrides=overrides)


def stderr_console() -> Any:
    """A Rich console on stderr; progress and colour switch off when stderr is not a terminal."""
    from rich.console import Console

    return Console(stderr=True, force_terminal=None if sys.stderr.isatty() else False)
