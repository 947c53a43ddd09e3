"""Daemon benchmarks over loopback HTTP: recommend latency, freshness and ingest throughput.

Each mode starts a real ``rtrec serve`` in a temporary home (text features off unless
``--text``), drives it with a standard-library HTTP client on keep-alive connections, and
prints progress to stderr. The last line of stdout is one JSON object.

    python bench/serve.py latency     # p50/p99 of GET /v1/recommend with 10,000 catalog items
    python bench/serve.py freshness   # POST acknowledged -> learned / reflected, at 1,000 events/s background
    python bench/serve.py ingest      # events/s committed, POST batches of 1,000
    python bench/serve.py genre       # 30 five-star ratings of one genre -> 5 of the top 10, seconds
    python bench/serve.py million     # recommend p50/p99 with 1,000,000 items with text embeddings
    python bench/serve.py all

Targets from the issue: latency p99 < 10 ms; freshness p50 < 100 ms and p99 < 1 s;
ingest >= 50,000 events/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import random
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rtrec.serve.metrics import percentile
from rtrec.serve.testing import DaemonProcess

T0 = 1_700_000_000
CATEGORIES = [f"cat{i}" for i in range(50)]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Conn:
    """One keep-alive HTTP connection."""

    def __init__(self, url: str) -> None:
        u = urllib.parse.urlsplit(url)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.c.request(method, path, body=body, headers=headers)
        r = self.c.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None


def pcts(values: list[float]) -> dict[str, float | None]:
    data = sorted(values)
    out = {f"p{q}": percentile(data, q / 100) for q in (50, 90, 99)}
    return {k: (round(v * 1000, 3) if v is not None else None) for k, v in out.items()} | {"n": len(data)}


def make_config(args: argparse.Namespace) -> str:
    return (
        f"[text]\nenabled = {'true' if args.text else 'false'}\n\n"
        "[serve]\n"
        f"exploration = {json.dumps(args.policy)}\n"
        "max_batch = 10000\n"
        "max_body_bytes = 33554432\n"
        "checkpoint_every_s = 30.0\n"
    )


def start(args: argparse.Namespace, home: Path) -> DaemonProcess:
    d = DaemonProcess(home, config=make_config(args), args=("--quiet",))
    t = time.perf_counter()
    d.start(timeout=300)
    say(f"daemon up at {d.url} in {time.perf_counter() - t:.1f} s")
    return d


def post_catalog(conn: Conn, n_items: int) -> None:
    for lo in range(0, n_items, 5000):
        items = [
            {
                "item_id": f"i{i}",
                "title": f"item {i}",
                "category": CATEGORIES[i % len(CATEGORIES)],
                "tags": [f"t{i % 7}"],
            }
            for i in range(lo, min(n_items, lo + 5000))
        ]
        status, out = conn.request("POST", "/v1/items", json.dumps(items).encode())
        assert status == 200, out


def events(prefix: str, n: int, n_users: int, n_items: int, rng: random.Random, ts: float = T0) -> list[dict]:
    out = []
    for j in range(n):
        kind = "click" if rng.random() < 0.1 else "impression"
        out.append(
            {
                "event_id": f"{prefix}{j}",
                "ts": ts + j * 0.001,
                "user_id": f"u{rng.randrange(n_users)}",
                "item_id": f"i{rng.randrange(n_items)}",
                "event_type": kind,
            }
        )
    return out


def wait_learned(conn: Conn, timeout: float = 600.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, stats = conn.request("GET", "/v1/stats")
        if stats["learn"]["lag_events"] == 0:
            return stats
        time.sleep(0.2)
    raise RuntimeError("learner did not catch up")


class Background:
    """Posts ``rate`` events/s in batches every ``period`` seconds on its own connection, from a
    process of its own (a thread would make the timing client wait for its interpreter)."""

    def __init__(self, url: str, rate: float, n_users: int, n_items: int, period: float = 0.05) -> None:
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self._sent = ctx.Value("q", 0)
        self._proc = ctx.Process(
            target=post_background, args=(url, rate, n_users, n_items, period, self.stop, self._sent), daemon=True
        )

    def start(self) -> None:
        self._proc.start()

    def join(self) -> None:
        self._proc.join()

    @property
    def sent(self) -> int:
        return int(self._sent.value)


def post_background(url: str, rate: float, n_users: int, n_items: int, period: float, stop: Any, sent: Any) -> None:
    conn = Conn(url)
    rng = random.Random(1)
    per = max(1, round(rate * period))
    next_t = time.perf_counter()
    k = 0
    while not stop.is_set():
        batch = events(f"bg{k}-", per, n_users, n_items, rng, ts=time.time())
        status, _ = conn.request("POST", "/v1/events", json.dumps(batch).encode())
        if status == 200:
            with sent.get_lock():
                sent.value += per
        k += 1
        next_t += period
        time.sleep(max(0.0, next_t - time.perf_counter()))


def time_recommends(conn: Conn, users: list[str], n: int, rng: random.Random) -> list[float]:
    """Seconds of each of ``n`` top-10 requests for users drawn from ``users``."""
    lat = []
    for _ in range(n):
        u = rng.choice(users)
        t = time.perf_counter()
        status, body = conn.request("GET", f"/v1/recommend?user_id={u}&k=10")
        lat.append(time.perf_counter() - t)
        assert status == 200 and len(body["items"]) == 10, body
    return lat


def bench_latency(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    d = start(args, home)
    try:
        conn = Conn(d.url)
        post_catalog(conn, args.items)
        rng = random.Random(0)
        warm = events("w", args.warm_events, args.users, args.items, rng)
        for lo in range(0, len(warm), 5000):
            conn.request("POST", "/v1/events", json.dumps(warm[lo : lo + 5000]).encode())
        wait_learned(conn)
        users = [f"u{i}" for i in range(args.users)]
        for u in users:  # first request per user reads the log once; measure the steady state
            conn.request("GET", f"/v1/recommend?user_id={u}&k=10")
        out: dict[str, Any] = {"catalog_items": args.items}
        for phase, bg_rate in (("idle", 0.0), ("background_1000_eps", 1000.0)):
            bg = Background(d.url, bg_rate, args.users, args.items) if bg_rate else None
            if bg:
                bg.start()
                time.sleep(1.0)
            lat = time_recommends(conn, users, args.requests, rng)
            if bg:
                bg.stop.set()
                bg.join()
            out[phase] = pcts(lat)
            say(f"recommend latency ({phase}), ms: {out[phase]}")
        _, stats = conn.request("GET", "/v1/stats")
        out["server_side_ms"] = {
            k: v * 1000 if isinstance(v, float) else v for k, v in stats["recommend"]["latency"].items()
        }
        return out
    finally:
        d.terminate()


def bench_freshness(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    d = start(args, home)
    try:
        conn = Conn(d.url)
        post_catalog(conn, args.items)
        bg = Background(d.url, args.rate, args.users, args.items)
        bg.start()
        time.sleep(2.0)
        learned, reflected = [], []
        deadline = time.monotonic() + args.seconds
        k = 0
        while time.monotonic() < deadline:
            ev = [
                {"event_id": f"probe{k}", "ts": time.time(), "user_id": "probe", "item_id": "i1", "event_type": "click"}
            ]
            t_ack0 = time.perf_counter()
            status, out = conn.request("POST", "/v1/events", json.dumps(ev).encode())
            t_ack = time.perf_counter()
            assert status == 200 and out["accepted"] == 1, out
            seq = out["last_seq"]
            while True:
                _, rec = conn.request("GET", "/v1/recommend?user_id=probe&k=1&candidates=i1,i2&exclude_seen=false")
                if rec["learned_seq"] >= seq:
                    reflected.append(time.perf_counter() - t_ack)
                    break
                time.sleep(0.001)
            del t_ack0
            k += 1
            time.sleep(0.05)
        bg.stop.set()
        bg.join()
        _, stats = conn.request("GET", "/v1/stats")
        learned = stats["freshness"]["learned"]
        out = {
            "background_events_per_s": args.rate,
            "background_sent": bg.sent,
            "probes": k,
            "reflected_in_recommend_ms": pcts(reflected),
            "learned_server_side_ms": {k2: (v * 1000 if isinstance(v, float) else v) for k2, v in learned.items()},
        }
        say(f"freshness: {out}")
        return out
    finally:
        d.terminate()


def bench_ingest(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    d = start(args, home)
    try:
        conn = Conn(d.url)
        post_catalog(conn, args.items)
        rng = random.Random(2)
        n_batches = args.batches
        say(f"building {n_batches} batches of {args.batch} events")
        bodies = [
            json.dumps(events(f"b{b}-", args.batch, args.users, args.items, rng)).encode() for b in range(n_batches)
        ]
        say(f"{len(bodies[0]) / 1024:.0f} KiB per batch")
        lock = threading.Lock()
        nxt = [0]
        accepted = [0]

        def worker() -> None:
            c = Conn(d.url)
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= n_batches:
                    return
                status, out = c.request("POST", "/v1/events", bodies[i])
                assert status == 200, out
                with lock:
                    accepted[0] += out["accepted"]

        threads = [threading.Thread(target=worker) for _ in range(args.connections)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t
        eps = accepted[0] / elapsed
        say(f"ingest: {accepted[0]} events in {elapsed:.2f} s = {eps:,.0f} events/s committed")
        return {
            "batch": args.batch,
            "connections": args.connections,
            "events": accepted[0],
            "seconds": round(elapsed, 3),
            "events_per_s": round(eps),
        }
    finally:
        d.terminate()


def bench_genre(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """A new user posts 30 five-star ratings of one genre: seconds from the POST's answer until at
    least 5 of their top-10 are of that genre (polled every 10 ms), one user per trial."""
    from rtrec.serve.testing import GENRES, genre_world

    d = start(args, home)
    try:
        conn = Conn(d.url)
        items, history = genre_world(per_genre=200, users=1000, ratings_per_user=20)
        conn.request("POST", "/v1/items", json.dumps(items).encode())
        for lo in range(0, len(history), 5000):
            conn.request("POST", "/v1/events", json.dumps(history[lo : lo + 5000]).encode())
        wait_learned(conn)
        say(f"{len(items):,} films, {len(history):,} earlier ratings learned")
        seconds, counts = [], []
        t_event = history[-1]["ts"] + 1000.0
        for trial in range(args.trials):
            genre = GENRES[trial % len(GENRES)]
            user = f"newcomer-{trial}"
            ratings = [
                {
                    "event_id": f"g{trial}-{i}",
                    "ts": t_event + i,
                    "user_id": user,
                    "item_id": f"{genre}-{i}",
                    "event_type": "rating",
                    "value": 5.0,
                }
                for i in range(30)
            ]
            t_event += 100.0
            status, _ = conn.request("POST", "/v1/events", json.dumps(ratings).encode())
            assert status == 200
            acked = time.perf_counter()
            got = 0
            while time.perf_counter() - acked < 10.0:
                _, rec = conn.request("GET", f"/v1/recommend?user_id={user}&k=10&policy=none")
                got = sum(it["item_id"].startswith(f"{genre}-") for it in rec["items"])
                if got >= 5:
                    break
                time.sleep(0.01)
            seconds.append(time.perf_counter() - acked)
            counts.append(got)
            say(f"{user} ({genre}): {got} of 10 after {seconds[-1]:.3f} s")
        return {
            "catalog_items": len(items),
            "earlier_ratings": len(history),
            "trials": args.trials,
            "seconds_to_5_of_10": {"p50": round(float(np.median(seconds)), 3), "max": round(max(seconds), 3)},
            "genre_items_in_top_10": counts,
        }
    finally:
        d.terminate()


class PlantedEncoder:
    """Stands in for the configured text encoder to fill the embedding cache with synthetic,
    clustered vectors (encoding a million items on this CPU would take an hour). It carries the
    real encoder's cache key and width, so the daemon finds every item cached and encodes none."""

    def __init__(self, real: Any, vectors: np.ndarray) -> None:
        self.name, self.cache_key, self.dim = real.name, real.cache_key, real.dim
        self.device, self.batch_size = "cpu", 64
        self._vectors, self._next = vectors, 0

    def encode(self, texts: list[str], progress: Any = None) -> np.ndarray:
        out = self._vectors[self._next : self._next + len(texts)]
        self._next += len(texts)
        return out


def bench_million(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """A daemon over 1,000,000 catalog items with text embeddings (the content source searches an
    IVF index above retrieve.ann_above), users with click histories; recommend over HTTP."""
    import pyarrow as pa

    from retrieval import clustered, sessions
    from rtrec.config import load_config
    from rtrec.events import EventLog
    from rtrec.text import EmbeddingCache, load_encoder

    n = args.items
    home.mkdir(parents=True, exist_ok=True)
    cfg = load_config(home=home)
    t = time.perf_counter()
    ids = [f"i{i}" for i in range(n)]
    with EventLog.open(cfg.db_path, cfg.events) as log:
        log.upsert_items(
            pa.table(
                {
                    "item_id": ids,
                    "title": [f"item {i}" for i in range(n)],
                    "category": [CATEGORIES[i // 1000 % len(CATEGORIES)] for i in range(n)],
                }
            )
        )
        real = load_encoder(cfg.text)
        cache = EmbeddingCache(
            log.cursor, PlantedEncoder(real, clustered(n, real.dim, max(1, n // 500))), cfg.text.template
        )
        cache.refresh(log.items())
    say(f"catalog of {n:,} items and their embeddings written in {time.perf_counter() - t:.1f} s")
    config = (
        '[serve]\nexploration = "epsilon"\nmax_batch = 10000\nmax_body_bytes = 33554432\n'
        "checkpoint_every_s = 86400.0\nmax_lag_s = 600.0\n"
    )
    d = DaemonProcess(home, config=config, args=("--quiet",))
    t = time.perf_counter()
    d.start(timeout=900)
    conn = Conn(d.url)
    try:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            _, stats = conn.request("GET", "/v1/stats")
            if stats["model"]["text"]["items_with_text"] >= n:
                break
            time.sleep(2.0)
        else:
            raise RuntimeError("the daemon did not take up the embeddings")
        say(f"daemon up with {n:,} embedded items in {time.perf_counter() - t:.1f} s")
        users, items, _ts = sessions(n, args.warm_events, topics=max(1, n // 1000), seed=4)
        now = time.time() - 3600
        rows = [
            {"event_id": f"w{k}", "ts": now + k * 0.01, "user_id": f"u{u}", "item_id": f"i{i}", "event_type": "click"}
            for k, (u, i) in enumerate(zip(users.tolist(), items.tolist(), strict=True))
        ]
        t = time.perf_counter()
        for lo in range(0, len(rows), 5000):
            status, out = conn.request("POST", "/v1/events", json.dumps(rows[lo : lo + 5000]).encode())
            assert status == 200, out
        wait_learned(conn, timeout=3600)
        say(f"learned {len(rows):,} clicks in {time.perf_counter() - t:.1f} s")
        known = sorted({f"u{u}" for u in users.tolist()})
        rng = random.Random(0)
        for u in known[:50]:
            conn.request("GET", f"/v1/recommend?user_id={u}&k=10")
        lat = time_recommends(conn, known, args.requests, rng)
        result = {"catalog_items": n, "warm_clicks": len(rows), "idle": pcts(lat)}
        say(f"recommend latency at {n:,} items, ms: {result['idle']}")
        return result
    finally:
        d.kill()  # a final checkpoint of a million embeddings is not what is measured


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["latency", "freshness", "ingest", "genre", "million", "all"])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--warm-events", type=int, default=20_000)
    p.add_argument("--requests", type=int, default=2_000)
    p.add_argument("--rate", type=float, default=1_000.0, help="background events/s for freshness")
    p.add_argument("--seconds", type=float, default=20.0, help="freshness probing time")
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--connections", type=int, default=2)
    p.add_argument("--policy", default="epsilon")
    p.add_argument("--trials", type=int, default=12, help="genre: new users, one after another")
    p.add_argument("--text", action="store_true", help="enable the text encoder (slower start)")
    args = p.parse_args()
    modes = ["latency", "freshness", "ingest"] if args.mode == "all" else [args.mode]
    result: dict[str, Any] = {
        "bench": "serve",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    with tempfile.TemporaryDirectory(prefix="rtrec-bench-") as tmp:
        for mode in modes:
            fn = {
                "latency": bench_latency,
                "freshness": bench_freshness,
                "ingest": bench_ingest,
                "genre": bench_genre,
                "million": bench_million,
            }[mode]
            result[mode] = fn(args, Path(tmp) / mode)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
