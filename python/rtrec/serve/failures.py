"""What a request that fails unexpectedly gets: a JSON 500 naming the failure, and its traceback in the log."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("rtrec.serve")

__all__ = ["report_unexpected"]


def report_unexpected(app: FastAPI) -> None:
    """Answer an exception that no other handler takes with a JSON 500 that names its type, and
    log the request and the traceback: the daemon stays up, and its log says what failed."""

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"error": f"internal error: {type(exc).__name__}", "hint": "the daemon's log has the traceback"},
            status_code=500,
        )
