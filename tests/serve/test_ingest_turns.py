"""Posted batches wait for their turn without holding worker threads: while many batches wait
for the learner to make room, recommend requests are still answered."""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
from typing import Any

from starlette.testclient import TestClient

from rtrec.serve.api import create_app


class _WaitingService:
    """Each posted batch waits in admission until ``release`` is set (a learner far behind)."""

    max_body_bytes = 1 << 20
    max_batch = 1000
    token = None
    read_token = None

    def __init__(self) -> None:
        self.release = threading.Event()
        self.waiting = 0
        self.most_waiting = 0
        self._lock = threading.Lock()

    def check_capacity(self, incoming: int = 0, arrived: float | None = None) -> None:
        if arrived is None:
            return
        with self._lock:
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
        self.release.wait(60)
        with self._lock:
            self.waiting -= 1

    def simple_events(self, body: bytes) -> None:
        return None  # every batch is parsed row by row

    def ingest_events(self, rows: list[Any], source: str) -> dict[str, Any]:
        return {"accepted": len(rows), "duplicates": 0, "rejected": []}

    def recommend(self, user_id: str, k: int, **kw: Any) -> dict[str, Any]:
        return {"user_id": user_id, "items": []}

    def serves_inline(self, user_id: str, candidates: list[str] | None, **request: Any) -> bool:
        return False  # through the thread pool, beside the waiting batches

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def test_batches_waiting_for_room_leave_threads_for_recommend() -> None:
    svc = _WaitingService()
    body = json.dumps([{"event_id": "e", "ts": 1.7e9, "user_id": "u", "item_id": "i", "event_type": "click"}])
    with TestClient(create_app(svc)) as client, cf.ThreadPoolExecutor(61) as pool:  # type: ignore[arg-type]
        posts = [
            pool.submit(client.post, "/v1/events", content=body, headers={"content-type": "application/json"})
            for _ in range(60)  # more than the 40 worker threads requests share
        ]
        for _ in range(3000):
            if svc.waiting:
                break
            threading.Event().wait(0.01)
        assert svc.waiting, "no batch reached admission"
        rec = pool.submit(client.get, "/v1/recommend", params={"user_id": "u", "k": 3})
        try:
            answer = rec.result(timeout=30)  # before any waiting batch is let through
        finally:
            svc.release.set()
        assert answer.status_code == 200, answer.text
        assert all(p.result(timeout=60).status_code == 200 for p in posts)
    assert svc.most_waiting == 1  # one batch at a time in admission


class _ThreadService(_WaitingService):
    """Records which thread answered each recommend; "known" users are served inline."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: dict[str, str] = {}

    def recommend(self, user_id: str, k: int, **kw: Any) -> dict[str, Any]:
        self.threads[user_id] = threading.current_thread().name
        return {"user_id": user_id, "items": []}

    def serves_inline(self, user_id: str, candidates: list[str] | None, **request: Any) -> bool:
        return user_id == "known" and candidates is None


def test_a_known_users_list_is_served_on_the_event_loop_and_the_rest_off_it() -> None:
    svc = _ThreadService()
    with TestClient(create_app(svc)) as client:  # type: ignore[arg-type]
        loop_thread = client.portal.call(lambda: threading.current_thread().name)  # type: ignore[union-attr]
        for params in ({"user_id": "known"}, {"user_id": "stranger"}, {"user_id": "known", "candidates": "a,b"}):
            r = client.get("/v1/recommend", params=params)
            assert r.status_code == 200, r.text
            svc.threads[f"{params['user_id']}+{'candidates' in params}"] = svc.threads.pop(params["user_id"])
    assert svc.threads["known+False"] == loop_thread
    assert svc.threads["stranger+False"] != loop_thread and svc.threads["known+True"] != loop_thread
