"""``rtrec forget``: erase one user everywhere a home keeps them (the daemon's, or a stopped home's)."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import typer

from rtrec.cli._common import CONFIG_OPTION, HOME_OPTION, handle_errors, load


@handle_errors
def forget(
    user_id: str = typer.Argument(
        ..., help="The user's id, as the producers send it (raw, even with pseudonymous ids)."
    ),
    home: Path | None = HOME_OPTION,
    config: Path | None = CONFIG_OPTION,
    url: str | None = typer.Option(None, "--url", help="Daemon URL [default: the daemon running on the home, if any]."),
    token: str | None = typer.Option(None, "--token", help="Bearer token with write scope [env: RTREC_TOKEN]."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as one JSON object."),
) -> None:
    """Forget a user: events, rejected rows, model state, inbox files and checkpoints.

    When a daemon serves the home (or --url is given) it does the work (DELETE /v1/users/ID);
    otherwise the stopped home is changed directly and its database file rewritten at once.
    """
    cfg = load(config, home)
    from rtrec.serve.client import get_json, running_url

    target = url or running_url(cfg.home)
    if target is not None:
        path = "/v1/users/" + urllib.parse.quote(user_id, safe="")
        out = get_json(target.rstrip("/") + path, token or cfg.serve.token, timeout=600.0, method="DELETE")
    else:
        from rtrec.serve.privacy import forget_offline

        out = forget_offline(cfg, user_id)
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(
        f"Forgot the user: {out['events']} events, {out['rejected']} rejected rows, {out['examples']} examples in "
        f"the model, {out['pending']} pending impressions, {out['replay_rows']} replay rows; "
        f"{out['checkpoints']} older checkpoints removed, {out['files']} inbox files rewritten."
    )


def register(app: typer.Typer) -> None:
    app.command("forget")(forget)
