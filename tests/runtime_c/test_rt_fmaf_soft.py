"""tt_fmaf_soft (used on cores without hardware FMA) is correctly rounded: equal bits to the
host C library's fmaf (glibc's is correctly rounded) on random and adversarial triples."""
import ctypes
import ctypes.util

import numpy as np
import pytest


def _libm_fmaf():
    name = ctypes.util.find_library("m")
    if not name:
        pytest.skip("no libm to compare against")
    f = ctypes.CDLL(name).fmaf
    f.restype = ctypes.c_float
    f.argtypes = [ctypes.c_float] * 3
    return f


def _triples(rng, n):
    """Random triples, cancellations, and double-rounding traps (a double-then-float fma gets
    ~150 of these wrong; the test below would catch it)."""
    a = rng.standard_normal(n).astype(np.float32) * np.float32(2.0) ** rng.integers(-20, 20, n)
    b = rng.standard_normal(n).astype(np.float32) * np.float32(2.0) ** rng.integers(-20, 20, n)
    c = rng.standard_normal(n).astype(np.float32) * np.float32(2.0) ** rng.integers(-40, 40, n)
    # cancellation: c close to -a*b, where a double-rounding fma goes wrong
    k = n // 3
    c[:k] = (-(a[:k].astype(np.float64) * b[:k])).astype(np.float32)
    # ties: products whose low bits sit exactly at float32 halfway points
    a[k:2 * k] = (rng.integers(1 << 23, 1 << 24, k) | 1).astype(np.float32)
    b[k:2 * k] = np.float32(1.0) + np.float32(2.0 ** -23) * rng.integers(1, 8, k).astype(np.float32)
    c[k:2 * k] = np.float32(2.0 ** -30) * rng.choice([-1, 1], k).astype(np.float32)
    # double-rounding traps: a*b close to a float32 halfway point, and c = (midpoint - a*b) plus
    # a tiny term: the exact sum is a hair off the midpoint, the double
    # sum lands on it, and a double-then-float fma rounds the tie the wrong way half the time
    aa = rng.integers(1 << 23, 1 << 24, 2_000_000).astype(np.float64)
    bb = rng.integers(1 << 23, 1 << 24, 2_000_000).astype(np.float64)
    p = aa * bb                                   # exact: < 2^48
    e = np.floor(np.log2(p)) - 23                 # float32 ulp exponent of p
    mid = (np.floor(p / 2 ** e) + 0.5) * 2 ** e
    keep = np.abs(p - mid) < 2.0 ** 10
    aa, bb, mid, p = aa[keep][:k], bb[keep][:k], mid[keep][:k], p[keep][:k]
    tiny = 2.0 ** -9 * rng.choice([-1.0, 1.0], len(p))  # far below half a double ulp of mid
    a = np.concatenate([a, aa])
    b = np.concatenate([b, bb])
    c = np.concatenate([c, (mid - p) + tiny])       # exact in float32 (19 bits)
    return a.astype(np.float32), b.astype(np.float32), c.astype(np.float32)


def test_fmaf_soft_is_correctly_rounded(rt):
    fmaf = _libm_fmaf()
    rng = np.random.default_rng(7)
    a, b, c = _triples(rng, 30000)
    bad = 0
    for x, y, z in zip(a.tolist(), b.tolist(), c.tolist()):
        want = np.float32(fmaf(x, y, z))
        got = np.float32(rt.lib.tt_fmaf_soft(x, y, z))
        if want.view(np.uint32) != got.view(np.uint32) and not (np.isnan(want) and np.isnan(got)):
            bad += 1
    assert bad == 0


def test_fmaf_soft_special_values(rt):
    fmaf = _libm_fmaf()
    vals = [0.0, -0.0, 1.0, -1.0, float("inf"), -float("inf"), 3.4e38, -3.4e38, 1e-45, -1e-45,
            1.1754944e-38, 2.0 ** -149, 1.5, 2.0 ** 64]
    for x in vals:
        for y in vals:
            for z in vals:
                want = np.float32(fmaf(x, y, z))
                got = np.float32(rt.lib.tt_fmaf_soft(x, y, z))
                if np.isnan(want):
                    assert np.isnan(got)
                else:
                    assert want.view(np.uint32) == got.view(np.uint32), (x, y, z, want, got)
