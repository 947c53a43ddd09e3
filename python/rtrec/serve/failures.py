"""Error answers of the API: the body every error has, and for a request that fails unexpectedly a JSON
500 naming the failure, with its traceback in the log."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("rtrec.serve")

__all__ = ["error_response", "report_unexpected"]


def error_response(status: int, message: str, hint: str | None = None, **extra: Any) -> JSONResponse:
    """The body every error of the API has: ``error``, then ``hint`` when there is one, then ``extra``."""
    body: dict[str, Any] = {"error": message}
    if hint:
        body["hint"] = hint
    body.update(extra)
    return JSONResponse(body, status_code=status)


def report_unexpected(app: FastAPI) -> None:
    """Answer an exception that no other handler takes with a JSON 500 that names its type, and
    log the request and the traceback: the daemon stays up, and its log says what failed."""

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error: {type(exc).__name__}", "the daemon's log has the traceback")
