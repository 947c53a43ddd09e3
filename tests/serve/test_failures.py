"""A request that fails unexpectedly gets a JSON 500 that names the failure, and the daemon logs its traceback."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from rtrec.serve.api import create_app


class _BrokenService:
    max_body_bytes = 1 << 20
    max_batch = 1000
    token = None
    read_token = None

    def recommend(self, user_id: str, k: int, **kw: Any) -> dict[str, Any]:
        raise IndexError("index 0 is out of bounds for axis 0 with size 0")

    def serves_inline(self, user_id: str, candidates: list[str] | None, **request: Any) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def test_an_unexpected_failure_answers_json_naming_it_and_logs_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="rtrec.serve"):
        client = TestClient(create_app(_BrokenService()), raise_server_exceptions=False)  # type: ignore[arg-type]
        r = client.get("/v1/recommend?user_id=u1&k=5")
    assert r.status_code == 500
    assert r.json()["error"] == "internal error: IndexError"
    failed = [rec for rec in caplog.records if "GET /v1/recommend failed" in rec.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert "out of bounds" in str(failed[0].exc_info[1])
