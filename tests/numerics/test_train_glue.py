"""The glue a generated fixed-point training step calls around the kernels (tt_train_q.c):
float <-> integer conversion at the API boundary, per-channel SGD with a runtime exponent,
int64 bias updates and the join of two gradients with different exponents. C == numpy twin,
bit for bit, on random data including the edge cases (skipped / clipped updates, NaN, huge
exponent gaps)."""
import numpy as np
import pytest

from tinytrain.numerics import qkernels as qk
from tinytrain.numerics.prng import Pcg32

DT = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}
TT_ERR_NAN = 3


@pytest.mark.parametrize("bits", [8, 16, 32, 64])
@pytest.mark.parametrize("seed", range(4))
def test_quantize_dequantize_match_twin(nl, bits, seed):
    rng = np.random.default_rng(seed)
    ch, inner = int(rng.integers(1, 5)), int(rng.integers(1, 7))
    n = ch * inner
    x = (rng.standard_normal(n) * 10 ** rng.uniform(-2, 3)).astype(np.float32)
    x[:2] = [np.float32(0.5), np.float32(-2.5)]          # ties go to even (8/16 bits)
    if bits == 8:
        x[2:4] = [np.inf, -1e30]                           # saturate, counted
    inv = (1.0 / rng.uniform(0.001, 0.5, ch)).astype(np.float32)
    q = np.zeros(n, DT[bits])
    sat = nl.counter()
    nl.ok(nl.lib.tt_quantize_f32(nl.ptr(x), nl.ptr(q), bits, n, nl.ptr(inv), ch, inner, sat))
    want, nsat = qk.quantize_f32(x, bits, inv, ch, inner)
    np.testing.assert_array_equal(q, want)
    assert sat[0] == nsat
    scale = (1.0 / inv).astype(np.float32)
    y = np.zeros(n, np.float32)
    nl.ok(nl.lib.tt_dequantize_f32(nl.ptr(q), bits, nl.ptr(y), n, nl.ptr(scale), ch, inner))
    np.testing.assert_array_equal(y, qk.dequantize_f32(q, scale, ch, inner))


def test_quantize_refuses_nan_and_writes_nothing(nl):
    x = np.array([1.0, np.nan, 2.0], np.float32)
    q = np.full(3, 7, np.int8)
    inv = np.ones(1, np.float32)
    assert nl.lib.tt_quantize_f32(nl.ptr(x), nl.ptr(q), 8, 3, nl.ptr(inv), 1, 1, nl.NULL) == TT_ERR_NAN
    np.testing.assert_array_equal(q, [7, 7, 7])
    with pytest.raises(ValueError):
        qk.quantize_f32(x, 8, inv)


@pytest.mark.parametrize("wbits", [8, 16, 32, 64])
@pytest.mark.parametrize("rounding", [qk.ROUND_NEAREST, qk.ROUND_STOCHASTIC])
@pytest.mark.parametrize("seed", range(5))
def test_sgd_per_channel_matches_twin(nl, wbits, rounding, seed):
    rng = np.random.default_rng(seed)
    ch, inner = int(rng.integers(1, 6)), int(rng.integers(1, 40))
    lim = {8: 127, 16: 32767, 32: 1 << 30, 64: 1 << 40}[wbits]
    w = rng.integers(-lim, lim + 1, ch * inner).astype(DT[wbits])
    g = rng.integers(-(1 << 30), 1 << 30, ch * inner).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, ch).astype(np.int32)
    # shifts around the edges: skipped (< -31 after e), clipped (> 31), normal
    shift = rng.integers(-40, 35, ch).astype(np.int32)
    mult[0] = 0 if ch > 2 else mult[0]
    e = int(rng.integers(-8, 8))
    sat = nl.counter()
    wc, gc = w.copy(), g.copy()
    crng = nl.prng(seed, 5)
    nl.ok(nl.lib.tt_sgd_upd_pc(nl.ptr(wc), wbits, nl.ptr(gc), ch, inner, nl.ptr(mult),
                               nl.ptr(shift), e, rounding, crng, sat))
    prng = Pcg32(seed, 5)
    wp, nsat = qk.sgd_upd_pc(w, wbits, g, ch, inner, mult, shift, e, rounding, prng)
    np.testing.assert_array_equal(wc, wp)
    assert sat[0] == nsat
    assert not gc.any()                          # gradients are consumed
    assert nl.lib.tt_prng_u32(crng) == prng.next_u32()   # same number of draws


def test_sgd_q64_saturates_at_int64_limits(nl):
    w = np.array([np.iinfo(np.int64).min + 5, np.iinfo(np.int64).max - 5, 0], np.int64)
    g = np.array([1 << 30, -(1 << 30), 3], np.int32)
    sat = nl.counter()
    nl.ok(nl.lib.tt_sgd_upd_q64(nl.ptr(w), nl.ptr(g), 3, (1 << 31) - 1, 31, 0, nl.NULL, sat))
    want, n = qk._sgd_upd_q64([np.iinfo(np.int64).min + 5, np.iinfo(np.int64).max - 5, 0],
                              [1 << 30, -(1 << 30), 3], (1 << 31) - 1, 31, 0, None)
    np.testing.assert_array_equal(w, want)
    assert w[0] == np.iinfo(np.int64).min and w[1] == np.iinfo(np.int64).max
    assert sat[0] == n == 2


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("seed", range(8))
def test_grad_join_matches_twin_and_real_sum(nl, bits, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    lim = (1 << (bits - 1)) - 1
    a = rng.integers(-lim, lim + 1, n).astype(DT[bits])
    b = rng.integers(-lim, lim + 1, n).astype(DT[bits])
    ea = int(rng.integers(-40, 10))
    eb = ea + int(rng.choice([0, 1, -3, 7, -25, 80]))     # incl. a gap beyond every bit
    ac, e_c, sat = a.copy(), nl.ffi.new("int *", ea), nl.counter()
    fn = nl.lib.tt_grad_join_q8 if bits == 8 else nl.lib.tt_grad_join_q16
    nl.ok(fn(nl.ptr(ac), e_c, nl.ptr(b), eb, n, sat))
    v, e, ns = qk.grad_join(a, ea, b, eb, bits)
    np.testing.assert_array_equal(ac, v)
    assert e_c[0] == e and sat[0] == ns == 0
    real = a.astype(np.float64) * 2.0 ** ea + b.astype(np.float64) * 2.0 ** eb
    got = ac.astype(np.float64) * 2.0 ** e
    # within one LSB of the result plus the rounding of the smaller operand
    assert np.all(np.abs(got - real) <= 2.0 ** e + 2.0 ** (max(ea, eb) - 16))


@pytest.mark.parametrize("wbits", [8, 16, 32, 64])
@pytest.mark.parametrize("rounding", [qk.ROUND_NEAREST, qk.ROUND_STOCHASTIC])
@pytest.mark.parametrize("seed", range(4))
def test_momentum_per_channel_matches_twin(nl, wbits, rounding, seed):
    rng = np.random.default_rng(seed)
    ch, inner = int(rng.integers(1, 5)), int(rng.integers(1, 30))
    n = ch * inner
    lim = {8: 127, 16: 32767, 32: 1 << 30, 64: 1 << 40}[wbits]
    w = rng.integers(-lim, lim + 1, n).astype(DT[wbits])
    w[0] = lim if n > 1 else w[0]                         # saturation at the top, counted
    v = rng.integers(-(1 << 28), 1 << 28, n).astype(np.int32)
    g = rng.integers(-(1 << 30), 1 << 30, n).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, ch).astype(np.int32)
    shift = rng.integers(-40, 20, ch).astype(np.int32)
    e, beta = int(rng.integers(-10, 10)), int(0.9 * (1 << 31))
    wc, gc, vc, sat = w.copy(), g.copy(), v.copy(), nl.counter()
    crng = nl.prng(seed, 9)
    nl.ok(nl.lib.tt_momentum_upd_pc(nl.ptr(wc), wbits, nl.ptr(gc), nl.ptr(vc), ch, inner,
                                    nl.ptr(mult), nl.ptr(shift), e, beta, rounding, crng, sat))
    prng = Pcg32(seed, 9)
    wp, vp, ns = qk.momentum_upd_pc(w, wbits, g, v, ch, inner, mult, shift, e, beta, rounding,
                                    prng)
    np.testing.assert_array_equal(wc, wp)
    np.testing.assert_array_equal(vc, vp)
    assert sat[0] == ns and not gc.any()
    assert nl.lib.tt_prng_u32(crng) == prng.next_u32()


@pytest.mark.parametrize("xbits,ybits", [(8, 16), (16, 8), (8, 8), (16, 16)])
@pytest.mark.parametrize("seed", range(6))
def test_act_convert_matches_twin(nl, xbits, ybits, seed):
    """Per-layer precision: an activation copied at the other width by a TFLite multiplier
    (ratio of the two scales, up or down), saturating and counting."""
    from tinytrain.numerics import fixed as fx
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    lim = (1 << (xbits - 1))
    x = rng.integers(-lim, lim, n).astype(DT[xbits])
    x[:2] = [-lim, lim - 1]
    ratio = rng.uniform(0.8, 1.25) * 2.0 ** ((ybits - xbits) + rng.integers(-2, 3))
    mult, shift = fx.quantize_multiplier(ratio)
    y = np.zeros(n, DT[ybits])
    sat = nl.counter()
    nl.ok(nl.lib.tt_act_convert_q(nl.ptr(x), xbits, nl.ptr(y), ybits, n, mult, shift, sat))
    want, nsat = qk.act_convert(x, xbits, ybits, mult, shift)
    np.testing.assert_array_equal(y, want)
    assert sat[0] == nsat
    exact = np.clip(np.rint(x.astype(np.float64) * ratio), -(1 << (ybits - 1)), (1 << (ybits - 1)) - 1)
    assert np.abs(want.astype(np.float64) - exact).max() <= 1


@pytest.mark.parametrize("seed", range(6))
def test_gradient_width_conversions_match_twin(nl, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    g8 = rng.integers(-128, 128, n).astype(np.int8)
    g16 = np.zeros(n, np.int16)
    nl.ok(nl.lib.tt_grad_widen_q8_q16(nl.ptr(g8), nl.ptr(g16), n))
    np.testing.assert_array_equal(g16, qk.grad_widen_q8_q16(g8))
    np.testing.assert_array_equal(g16.astype(np.int64), g8.astype(np.int64) * 256)  # exact
    top = int(rng.choice([1, 100, 127, 128, 5000, 32767]))
    h = rng.integers(-top, top + 1, n).astype(np.int16)
    h[0] = -32768 if seed == 0 else h[0]
    out = np.zeros(n, np.int8)
    rs = nl.ffi.new("int *")
    nl.ok(nl.lib.tt_grad_quant_pow2_q16_q8(nl.ptr(h), nl.ptr(out), n, rs))
    want, wrs = qk.grad_quant_pow2_q16_q8(h)
    np.testing.assert_array_equal(out, want)
    assert rs[0] == wrs and np.abs(want.astype(int)).max() <= 128
