import gc
import tracemalloc

import numpy as np

from rtrec.learn.served import ServedBlock, ServedCache


def block(items: list[int], dense_dim: int = 3) -> ServedBlock:
    """Row ``j`` of item ``k = items[j]``: hashed features ``[k, k + 1]``, cross ``[k]``, dense ``k``."""
    k = np.asarray(items, np.int64)
    n = len(k)
    return ServedBlock(
        item_idx=k,
        indices=np.stack([k, k + 1], axis=1).reshape(-1),
        offsets=np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        xindices=k.copy(),
        xoffsets=np.arange(n + 1, dtype=np.int64),
        dense=np.repeat(k[:, None], dense_dim, axis=1).astype(np.float32),
        prob=k / 10.0,
        item_n=k.astype(np.float32),
        user_n=2.0 * k.astype(np.float32),
    )


def test_a_served_row_is_taken_once_with_what_was_put():
    cache = ServedCache(capacity=10)
    cache.put("r1", block([4, 7]))
    got = cache.take(["r1", "r1", None, "r2"], np.array([7, 7, 4, 4]))
    row = got[0]
    assert row is not None and row.prob == 0.7 and row.item_n == 7.0 and row.user_n == 14.0
    assert row.indices.tolist() == [7, 8] and row.xindices.tolist() == [7] and row.dense.tolist() == [7.0] * 3
    assert got[1:] == [None, None, None]  # taken already; no request id; another request
    assert cache.used == 1 and len(cache) == 1
    last = cache.take(["r1"], np.array([4]))[0]
    assert last is not None and last.indices.tolist() == [4, 5]
    assert len(cache) == 0 and cache.take(["r1"], np.array([4])) == [None]


def test_the_oldest_requests_go_first_and_a_request_served_again_replaces_its_rows():
    cache = ServedCache(capacity=4)
    for k in range(3):
        cache.put(f"r{k}", block([k, 10 + k]))
    assert len(cache) == 4  # r0 went: 6 rows over the bound of 4
    assert cache.take(["r0", "r2"], np.array([0, 2]))[0] is None
    cache.put("r1", block([5]))
    assert len(cache) == 2 and cache.take(["r1", "r1"], np.array([1, 5]))[0] is None


def test_a_full_cache_adds_nothing_to_the_collectors_passes():
    # A full collection stops every thread of the daemon and walks every tracked object.
    cache = ServedCache(capacity=50_000)
    gc.collect()
    before = len(gc.get_objects())
    for r in range(1000):
        cache.put(f"r{r}", block(list(range(10))))
    gc.collect()
    gc.collect()
    assert len(gc.get_objects()) - before < 100


def test_a_full_cache_costs_little_more_than_its_features():
    # 200,000 rows of 12 hashed and 4 cross features and 24 dense ones: about 220 bytes of data each.
    cache = ServedCache(capacity=200_000)
    rng = np.random.default_rng(0)
    base = block(list(range(10)), dense_dim=24)._replace(
        indices=rng.integers(0, 1 << 20, 120), offsets=np.arange(0, 121, 12), xindices=rng.integers(0, 99, 40)
    )
    base = base._replace(xoffsets=np.arange(0, 41, 4))
    data = sum(a.nbytes for a in base) / 10
    tracemalloc.start()
    try:
        for r in range(20_000):
            cache.put(f"r{r}", ServedBlock(*(a.copy() for a in base)))
        per_row = tracemalloc.get_traced_memory()[0] / len(cache)
    finally:
        tracemalloc.stop()
    assert len(cache) == 200_000
    assert per_row < data + 200, (per_row, data)
