"""Overload: busy producers and a recommend client against one daemon; freshness, latency and memory.

``--producers`` threads post batches of ``--batch`` events (slates of 9 impressions shown to
one user with a request id, each followed by a click on one of its items) as fast as the
daemon takes them, for ``--seconds``; a 429 is honoured (its Retry-After) and the batch sent
again. One client, in a process of its own (so that its timings do not wait for the
producers' interpreter), calls ``GET /v1/recommend`` in a loop (with ``--log-shown`` it also
logs each list it gets, as impressions with the list's request id and a click on one of
them, so that the daemon learns them from the features it served). Every 0.25 s the daemon's
``/v1/stats`` and resident memory are sampled. At the end the daemon's garbage-collector
pauses are read, and the daemon gets SIGTERM (timed) and is started again to check that it
resumes the backlog exactly once.

Reports (one JSON object, last line): events accepted and learned per second, the share of
batches refused with 429, the share of events set aside by feedback cleaning, learner lag
(seconds behind the oldest acknowledged event, p50 / p99 / max over the samples), recommend
latency seen by the client (p50 / p99 / max: over the whole run, over the calls after the first
``--warmup`` seconds, and the p99 of each 30 s) and as the daemon measured it
(``recommend_server_ms``: its last 4,096 calls, those before the end), RSS (start, peak, and the peaks
of each half and each quarter: a plateau has the last ones close), the impressions held with
their features at most and their bytes, the served snapshots held and used, checkpoint
seconds (lock held and in all) and bytes per learned event, SIGTERM seconds, and whether the
restart learned the backlog exactly once.

Usage: ``python bench/load.py [--seconds 180] [--producers 4] [--batch 1000] [--items 1000]
[--window S] [--samples FILE] [--log-shown] [--recommend-rate R] [--warmup 60]`` (``--window``: a shorter
impression window, so that impressions expire as negatives sooner; ``--samples``: every sample
as a JSON line, to see what a lag spike lines up with)
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

from rtrec.serve.testing import DaemonProcess

CONFIG = """\
[text]
enabled = false
"""


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, url: str) -> None:
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def recommend_loop(url: str, users: int, stop: Any, out: Any, log_shown: bool = False, rate: float = 0.0) -> None:
    """Call ``GET /v1/recommend`` for random users until ``stop`` is set; send the latencies (ms) to ``out``.

    With ``log_shown`` each list is then logged as a client that shows it would: an impression
    per item with the list's ``request_id``, and a click on one of them, so that the daemon
    learns them from the features it served (only the GET is timed). ``rate`` > 0 paces the
    calls to that many a second (0: one after another, as fast as the daemon answers)."""
    c = Client(url)
    rng = np.random.default_rng(99)
    rec_ms: list[tuple[float, float]] = []  # (when it was answered, monotonic; milliseconds)
    due = time.perf_counter()
    while not stop.is_set():
        if rate > 0:
            due += 1.0 / rate
            time.sleep(max(0.0, due - time.perf_counter()))
        user = f"u{int(rng.integers(users))}"
        t0 = time.perf_counter()
        status, _, body = c.call("GET", f"/v1/recommend?user_id={user}&k=10")
        if status != 200:
            continue
        rec_ms.append((time.monotonic(), (time.perf_counter() - t0) * 1000.0))
        if log_shown:
            got = json.loads(body)
            shown = [it["item_id"] for it in got["items"]]
            if shown:
                ts, rid = time.time(), got["request_id"]
                rows = [{"event_id": f"{rid}-{j}", "ts": ts, "user_id": user, "item_id": item,
                         "event_type": "impression", "request_id": rid} for j, item in enumerate(shown)]  # fmt: skip
                click = shown[int(rng.integers(len(shown)))]
                rows.append({"event_id": f"{rid}-c", "ts": ts, "user_id": user, "item_id": click,
                             "event_type": "click", "request_id": rid})  # fmt: skip
                c.call("POST", "/v1/events", json.dumps(rows).encode())
    out.send(rec_ms)


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def overload_rows(rng: np.random.Generator, prefix: str, n: int, users: int, items: int, ts: float) -> list[dict]:
    """``n`` events of the overload mix: slates shown to one user (9 impressions with a request id),
    each followed by a click on one of its items (one event in ten), as a client logs them."""
    rows: list[dict] = []
    for s in range((n + 9) // 10):
        user, request = f"u{int(rng.integers(users))}", f"{prefix}-{s}"
        shown = [f"i{int(k)}" for k in rng.choice(items, size=9, replace=False)]
        slate = [(item, "impression") for item in shown] + [(shown[int(rng.integers(9))], "click")]
        rows += [
            {"event_id": f"{request}-{j}", "ts": ts, "user_id": user, "item_id": item, "event_type": kind,
             "request_id": request}
            for j, (item, kind) in enumerate(slate)
        ]  # fmt: skip
    return rows[:n]


def with_window(window: float | None) -> str:
    """The bench's config, with ``labels.impression_window_s`` set when ``window`` is given."""
    return CONFIG if window is None else CONFIG + f"\n[labels]\nimpression_window_s = {window}\n"


def start_with_catalog(home: Path, items: int, config: str = CONFIG) -> DaemonProcess:
    """A daemon (text off) on ``home`` with a catalog of ``items`` items in 20 categories."""
    d = DaemonProcess(home, config=config).start()
    d.post("/v1/items", [{"item_id": f"i{k}", "category": f"c{k % 20}", "tags": [f"t{k % 50}"]} for k in range(items)])
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--window", type=float, default=None, help="labels.impression_window_s (default: the config's)")
    ap.add_argument("--samples", type=Path, default=None, help="also write every 0.25 s sample here (JSON lines)")
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument(
        "--log-shown", action="store_true", help="the recommend client logs each list it gets (impressions, a click)"
    )
    ap.add_argument("--recommend-rate", type=float, default=0.0, help="recommend calls per second (0: back to back)")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds left out of recommend_ms_after_warmup")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        config = with_window(args.window)
        d = start_with_catalog(home, args.items, config)
        stop = threading.Event()
        counts = {"accepted": 0, "batches": 0, "throttled": 0}
        lock = threading.Lock()

        def produce(p: int) -> None:
            c = Client(d.url)
            rng = np.random.default_rng(p)
            n = 0
            while not stop.is_set():
                rows = overload_rows(rng, f"p{p}-{n}", args.batch, args.users, args.items, time.time())
                body = json.dumps(rows).encode()
                while not stop.is_set():
                    status, headers, raw = c.call("POST", "/v1/events", body)
                    with lock:
                        counts["batches"] += 1
                    if status == 200:
                        with lock:
                            counts["accepted"] += json.loads(raw)["accepted"]
                        break
                    if status == 429:
                        with lock:
                            counts["throttled"] += 1
                        stop.wait(float(headers.get("retry-after", headers.get("Retry-After", "1"))))
                        continue
                    raise AssertionError(f"POST /v1/events answered {status}: {raw[:200]!r}")
                n += 1

        samples: list[dict[str, Any]] = []
        rss0 = rss_bytes(d.pid)
        threads = [threading.Thread(target=produce, args=(p,)) for p in range(args.producers)]
        ctx = mp.get_context("spawn")
        rec_stop = ctx.Event()
        rec_out, rec_in = ctx.Pipe(duplex=False)
        recommender = ctx.Process(
            target=recommend_loop, args=(d.url, args.users, rec_stop, rec_in, args.log_shown, args.recommend_rate)
        )
        recommender.start()
        t_start = time.monotonic()
        for t in threads:
            t.start()
        sampler = Client(d.url)
        while time.monotonic() - t_start < args.seconds:
            time.sleep(0.25)
            status, _, raw = sampler.call("GET", "/v1/stats")
            if status == 200:
                s = json.loads(raw)
                samples.append(
                    {
                        "t": time.monotonic() - t_start,
                        "lag_s": s["learn"]["lag_s"],
                        "lag_events": s["learn"]["lag_events"],
                        "learned": s["learn"]["learned_total"],
                        "rss": rss_bytes(d.pid),
                        "pending": s["model"]["labels"]["pending"] + s["model"]["labels"]["retained"],
                        "label_bytes": s["model"]["labels"]["snapshot_bytes"] + s["model"]["labels"]["index_bytes"],
                        "checkpoint": s.get("checkpoint"),
                        "gc2": s["gc"]["pauses"]["gen2"]["count"],
                        "learn_batch_p99_s": s["learn"]["batch_latency"].get("p99"),
                    }
                )
        stop.set()
        rec_stop.set()
        for t in threads:
            t.join()
        rec_at_ms: list[tuple[float, float]] = rec_out.recv()
        recommender.join()
        elapsed = time.monotonic() - t_start
        last = d.get("/v1/stats")
        server_ms = {k: v * 1000.0 for k, v in last["recommend"]["latency"].items() if k in ("p50", "p90", "p99")}
        gc_pauses = {  # the daemon's garbage-collector pauses: how many, the median and the longest (ms;
            # the longest full one is usually start-up's, before what it loaded is frozen)
            gen: {
                "count": p["count"],
                "p50_ms": None if p["p50"] is None else round(p["p50"] * 1000.0, 1),
                "max_ms": round(last["gc"]["max_s"][gen] * 1000.0, 1),
            }
            for gen, p in last["gc"]["pauses"].items()
        }
        log_seq = last["ingest"]["log_seq"]
        t0 = time.monotonic()
        code = d.terminate()
        sigterm_s = time.monotonic() - t0
        d.start()
        deadline = time.monotonic() + 600
        while d.get("/v1/stats")["learn"]["learned_seq"] < log_seq and time.monotonic() < deadline:
            time.sleep(0.5)
        resumed = d.get("/v1/stats")
        d.terminate()
    if args.samples is not None:
        args.samples.write_text("".join(json.dumps(x) + "\n" for x in samples))
    half = len(samples) // 2
    rss = [s["rss"] for s in samples]
    learned = [s["learned"] for s in samples]
    ckpts = {
        s["checkpoint"]["seq"]: s["checkpoint"]
        for s in samples
        if s["checkpoint"] and "lock_seconds" in s["checkpoint"]
    }
    ck = list(ckpts.values())
    rec_ms = [ms for _, ms in rec_at_ms]
    rec_warm = [ms for at, ms in rec_at_ms if at - t_start >= args.warmup]
    rec_by_30s = [
        pct([ms for at, ms in rec_at_ms if k * 30 <= at - t_start < (k + 1) * 30], 99)
        for k in range(int(np.ceil(elapsed / 30)))
    ]
    out = {
        "bench": "load",
        "seconds": round(elapsed, 1),
        "producers": args.producers,
        "batch": args.batch,
        "accepted_events_per_s": round(counts["accepted"] / elapsed, 1),
        "learned_events_per_s": round((learned[-1] - learned[0]) / max(samples[-1]["t"] - samples[0]["t"], 1e-9), 1)
        if len(samples) > 1
        else None,
        "throttled_share": round(counts["throttled"] / max(counts["batches"], 1), 4),
        # Set aside by feedback cleaning (not learned), of the events the learner went through.
        "quarantined_share": round(last["learn"]["quarantined_total"] / max(last["learn"]["learned_total"], 1), 4),
        "lag_s": {k: pct([s["lag_s"] for s in samples], q) for k, q in (("p50", 50), ("p99", 99), ("max", 100))},
        "lag_events_max": max((s["lag_events"] for s in samples), default=None),
        "recommend_ms": {k: pct(rec_ms, q) for k, q in (("p50", 50), ("p99", 99), ("max", 100))},
        "recommend_ms_after_warmup": {k: pct(rec_warm, q) for k, q in (("p50", 50), ("p99", 99), ("max", 100))},
        "recommend_p99_ms_by_30s": [None if p is None else round(p, 1) for p in rec_by_30s],
        "recommend_calls": len(rec_ms),
        "recommend_server_ms": server_ms,
        "gc_pauses": gc_pauses,
        "rss_bytes": {
            "start": rss0,
            "peak": max(rss, default=None),
            "peak_first_half": max(rss[:half], default=None),
            "peak_second_half": max(rss[half:], default=None),
            # A plateau has the last quarters' peaks close together.
            "peak_by_quarter": [int(q.max()) if len(q) else None for q in np.array_split(np.array(rss), 4)],
        },
        # Impressions held with their features (waiting, or kept for a late positive), and the
        # bytes of their store and indexes: bounded by labels.max_snapshots.
        "impressions_held_max": max((s["pending"] for s in samples), default=None),
        "impressions_held_bytes_max": max((s["label_bytes"] for s in samples), default=None),
        # The items remembered per user at the end (pairs, bytes): bounded by learner.items_per_user.
        "user_items": last["model"]["user_items"],
        # Served features kept until the list's impressions come (used: learned from them).
        "served_snapshots": last["model"]["served_snapshots"],
        "checkpoints": len(ck),
        "checkpoint_seconds_max": max((c["seconds"] for c in ck), default=None),
        "checkpoint_lock_seconds_max": max((c["lock_seconds"] for c in ck), default=None),
        "checkpoint_lock_wait_seconds_max": max((c.get("lock_wait_seconds", 0.0) for c in ck), default=None),
        "checkpoint_bytes_per_learned_event": float(
            np.median([c["bytes_per_learned_event"] for c in ck if c["bytes_per_learned_event"]])
        )
        if ck
        else None,
        "sigterm_seconds": round(sigterm_s, 2),
        "sigterm_exit_code": code,
        "resumed_exactly_once": resumed["model"]["events_seen"] == log_seq
        and resumed["learn"]["learned_seq"] == log_seq,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
