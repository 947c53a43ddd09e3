"""A pure-Python reference of the feature hashing algorithm (see rust/src/hash.rs)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

MASK32 = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & MASK32


def fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    h ^= h >> 16
    return h


def murmur3_32(data: bytes, seed: int = 0) -> int:
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & MASK32
    n = len(data)
    for i in range(0, n - n % 4, 4):
        k = struct.unpack_from("<I", data, i)[0]
        k = (_rotl((k * c1) & MASK32, 15) * c2) & MASK32
        h = _rotl(h ^ k, 13)
        h = (h * 5 + 0xE6546B64) & MASK32
    tail = data[n - n % 4 :]
    k = 0
    for i, b in enumerate(tail):
        k ^= b << (8 * i)
    if tail:
        k = (_rotl((k * c1) & MASK32, 15) * c2) & MASK32
        h ^= k
    return fmix32(h ^ n)


def sign_of(h: int) -> float:
    return 1.0 if fmix32(h ^ 0x5BD1E995) >> 31 == 0 else -1.0


def hash_rows(
    columns: dict[str, Sequence[object]],
    namespaces: Sequence[str],
    *,
    bits: int,
    seed: int = 0,
    crosses: Sequence[tuple[str, str]] = (),
) -> tuple[list[int], list[int], list[float]]:
    """Indices, CSR offsets and signs, exactly as the native hasher computes them."""
    mask = (1 << bits) - 1
    seeds = {ns: murmur3_32(ns.encode(), seed) for ns in namespaces}
    cross_seeds = [murmur3_32(f"{a}^{b}".encode(), seed) for a, b in crosses]
    n_rows = len(columns[namespaces[0]])
    indices: list[int] = []
    signs: list[float] = []
    offsets = [0]
    for r in range(n_rows):
        raw: dict[str, list[int]] = {}
        for ns in namespaces:
            v = columns[ns][r]
            values = [] if v is None else ([v] if isinstance(v, str) else [x for x in v if x is not None])  # type: ignore[union-attr]
            raw[ns] = [murmur3_32(s.encode(), seeds[ns]) for s in values]
            for h in raw[ns]:
                indices.append(h & mask)
                signs.append(sign_of(h))
        for (a, b), cs in zip(crosses, cross_seeds, strict=True):
            for ha in raw[a]:
                for hb in raw[b]:
                    h = murmur3_32(struct.pack("<II", ha, hb), cs)
                    indices.append(h & mask)
                    signs.append(sign_of(h))
        offsets.append(len(indices))
    return indices, offsets, signs
