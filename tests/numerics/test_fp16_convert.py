"""binary16 conversions and the plain exp / log: C == numpy bit for bit, and numpy's own
float16 casts (round to nearest even) agree on every non-NaN value."""
import math

import numpy as np
import pytest

from tinytrain.numerics import fp16

ALL_HALF = np.arange(65536, dtype=np.uint32).astype(np.uint16)


def c_to_f32(nl, h):
    out = np.zeros(h.size, np.float32)
    nl.ok(nl.lib.tt_f16_to_f32_n(nl.ptr(h), nl.ptr(out), h.size))
    return out


def c_to_f16(nl, x):
    x = np.ascontiguousarray(x, np.float32)
    out = np.zeros(x.size, np.uint16)
    nl.ok(nl.lib.tt_f32_to_f16_n(nl.ptr(x), nl.ptr(out), x.size))
    return out


def is_nan16(h):
    return ((h & 0x7C00) == 0x7C00) & ((h & 0x03FF) != 0)


def test_all_halfs_to_float_and_back(nl):
    f_c = c_to_f32(nl, ALL_HALF)
    f_py = fp16.f16_to_f32(ALL_HALF)
    np.testing.assert_array_equal(f_c.view(np.uint32), f_py.view(np.uint32))
    nan = is_nan16(ALL_HALF)
    # exact against numpy's cast for every non-NaN half
    np.testing.assert_array_equal(f_c[~nan].view(np.uint32),
                                  ALL_HALF[~nan].view(np.float16).astype(np.float32).view(np.uint32))
    # NaNs: quiet float NaN, payload << 13, sign kept
    fb = f_c[nan].view(np.uint32)
    assert np.all(np.isnan(f_c[nan])) and np.all(fb & 0x00400000)
    np.testing.assert_array_equal((fb >> 13) & 0x1FF, ALL_HALF[nan] & 0x1FF)
    np.testing.assert_array_equal(fb >> 31, ALL_HALF[nan] >> 15)
    # round trip: identity, except signalling NaNs come back quiet
    back_c = c_to_f16(nl, f_c)
    np.testing.assert_array_equal(back_c, fp16.f32_to_f16(f_c))
    np.testing.assert_array_equal(back_c[~nan], ALL_HALF[~nan])
    np.testing.assert_array_equal(back_c[nan], ALL_HALF[nan] | 0x0200)


def edge_floats():
    vals = [0.0, -0.0, np.inf, -np.inf, 65504.0, 65519.996, 65520.0, 65536.0, 1e38, -1e38,
            2.0**-14, 2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-26, 3 * 2.0**-26,
            2.0**-149, 1.0, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 1.0 + 2.0**-11 + 2.0**-23,
            0.1, 1 / 3]
    b = np.array(vals, np.float32)
    # every float whose 13 low mantissa bits sit at a rounding boundary, across exponents
    exps = np.arange(0, 255, dtype=np.uint32) << 23
    lows = np.array([0, 1, 0xFFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x3000], np.uint32)
    mants = (np.arange(0, 1 << 10, 37, dtype=np.uint32) << 13)[:, None] + lows[None, :]
    grid = (exps[:, None] | mants.reshape(-1)[None, :]).reshape(-1)
    grid = np.concatenate([grid, grid | 0x80000000])
    nans = np.array([0x7F800001, 0x7FC00000, 0xFFFFFFFF, 0x7FBFFFFF, 0x7F802000], np.uint32)
    return np.concatenate([b, grid.view(np.float32), nans.view(np.float32)])


def check_floats(nl, x):
    h_c = c_to_f16(nl, x)
    h_py = fp16.f32_to_f16(x)
    np.testing.assert_array_equal(h_c, h_py)
    nan = np.isnan(x)
    with np.errstate(over="ignore"):
        ref = x[~nan].astype(np.float16)
    np.testing.assert_array_equal(h_c[~nan], ref.view(np.uint16))
    assert np.all(is_nan16(h_c[nan]))
    np.testing.assert_array_equal(h_c[nan] & 0x03FF,
                                  0x0200 | ((x[nan].view(np.uint32) >> 13) & 0x03FF))


def test_edge_cases(nl):
    check_floats(nl, edge_floats())


@pytest.mark.parametrize("seed", range(4))
def test_millions_of_random_floats(nl, seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, 1_000_000, dtype=np.uint64).astype(np.uint32)
    check_floats(nl, bits.view(np.float32))                       # every exponent
    near = rng.normal(0, 1, 500_000).astype(np.float32) * np.float32(2.0) ** rng.integers(
        -30, 18, 500_000).astype(np.float32)                       # the half range
    check_floats(nl, near)


def test_scalar_functions_match_arrays(nl):
    x = edge_floats()[:200]
    assert [nl.lib.tt_f32_to_f16(float(v)) for v in x] == list(fp16.f32_to_f16(x))
    h = ALL_HALF[::257]
    got = np.array([nl.lib.tt_f16_to_f32(int(v)) for v in h], np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), fp16.f16_to_f32(h).view(np.uint32))


def c_plain(nl, fn, x):
    return np.array([getattr(nl.lib, fn)(float(v)) for v in x], np.float32)


def test_plain_exp_log_bit_exact_and_accurate(nl):
    rng = np.random.default_rng(11)
    x = np.concatenate([
        rng.uniform(-104, 89, 20_000), rng.uniform(-20, 0, 20_000), rng.normal(0, 1, 5_000),
        [0.0, -0.0, 88.72, 88.73, -87.3, -103.9, -104.0, -150.0, 200.0, np.inf, -np.inf,
         np.nan]]).astype(np.float32)
    e_c = c_plain(nl, "tt_expf_plain", x)
    e_py = fp16.expf_plain(x)
    np.testing.assert_array_equal(e_c.view(np.uint32), e_py.view(np.uint32))
    ref = np.exp(x.astype(np.float64))
    ok = np.isfinite(ref) & (ref > 1.2e-38) & (ref < 3e38)
    ulp = np.abs(e_c[ok] - ref[ok]) / np.spacing(np.abs(ref[ok]).astype(np.float32))
    assert ulp.max() <= 3, ulp.max()
    assert e_c[x == np.inf][0] == np.inf and e_c[x == -np.inf][0] == 0
    assert np.isnan(e_c[np.isnan(x)]).all()

    y = np.concatenate([
        np.abs(rng.normal(0, 1, 20_000)), rng.uniform(0.5, 2, 10_000), rng.uniform(1, 1000, 10_000),
        (rng.integers(1, 2**31, 5_000).astype(np.uint32) & 0x7F7FFFFF).view(np.float32),
        [1.0, 2.0, 1e-45, 1e-40, 3e38, 0.0, -0.0, -1.0, np.inf, np.nan]]).astype(np.float32)
    l_c = c_plain(nl, "tt_logf_plain", y)
    l_py = fp16.logf_plain(y)
    np.testing.assert_array_equal(l_c.view(np.uint32), l_py.view(np.uint32))
    ok = (y > 0) & np.isfinite(y) & (y != 1.0)
    ref = np.log(y[ok].astype(np.float64))
    err = np.abs(l_c[ok] - ref) / np.spacing(np.abs(ref).astype(np.float32))
    assert err.max() <= 4, err.max()
    assert l_c[y == 1.0][0] == 0.0 and l_c[y == 0][0] == -np.inf
    assert np.isnan(l_c[y == -1.0][0]) and l_c[y == np.inf][0] == np.inf
    assert math.isclose(l_c[y == np.float32(1e-45)][0], math.log(float(np.float32(1e-45))),
                        rel_tol=1e-6)
