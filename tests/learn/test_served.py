import gc

import numpy as np

from rtrec.learn.served import ServedCache, ServedRow


def row(k: int) -> ServedRow:
    return ServedRow(np.array([k, k + 1]), np.array([k]), np.full(3, k, np.float32), 0.1 * k, float(k), 2.0 * k)


def test_a_served_row_is_taken_once_with_what_was_put():
    cache = ServedCache(capacity=10)
    cache.put("r1", [4, 7], [row(1), row(2)])
    got = cache.take(["r1", "r1", None, "r2"], np.array([7, 7, 4, 4]))
    assert got[0] is not None and got[0].prob == 0.2 and got[0].indices.tolist() == [2, 3]
    assert got[1:] == [None, None, None]  # taken already; no request id; another request
    assert cache.used == 1 and len(cache) == 1


def test_the_oldest_rows_go_first():
    cache = ServedCache(capacity=3)
    for k in range(5):
        cache.put(f"r{k}", [k], [row(k)])
    assert len(cache) == 3
    assert cache.take(["r0", "r4"], np.array([0, 4]))[0] is None


def test_a_full_cache_adds_nothing_to_the_collectors_passes():
    # A full collection stops every thread of the daemon and walks every tracked object.
    cache = ServedCache(capacity=5000)
    gc.collect()
    before = len(gc.get_objects())
    for r in range(1000):
        cache.put(f"r{r}", list(range(5)), [row(k) for k in range(5)])
    gc.collect()
    assert len(gc.get_objects()) - before < 100
