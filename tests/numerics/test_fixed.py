"""Fixed-point primitives: C (tt_fixed.h/.c) == numpy (tinytrain.numerics.fixed) == exact
Python-int references, plus accuracy of the integer exp / log."""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from tinytrain.numerics import fixed as fx

I32 = st.integers(-2**31, 2**31 - 1)
MULT = st.integers(0, 2**31 - 1)


def ref_rdbpot(x: int, e: int) -> int:
    """round(x / 2^e), ties away from zero, exact."""
    if e == 0:
        return x
    q = (abs(x) + (1 << (e - 1))) >> e
    return q if x >= 0 else -q


def ref_srdhm(a: int, b: int) -> int:
    if a == b == -2**31:
        return 2**31 - 1
    ab = a * b
    # round to nearest, ties toward +inf
    return (ab + (1 << 30)) >> 31


@settings(max_examples=500, deadline=None)
@given(a=I32, b=I32)
def test_srdhm(nl, a, b):
    c = nl.lib.tt_fx_srdhm(a, b)
    assert c == ref_srdhm(a, b) == int(fx.srdhm(a, b))
    if not a == b == -2**31:
        assert abs(Fraction(a * b, 2**31) - c) <= Fraction(1, 2)


@settings(max_examples=500, deadline=None)
@given(x=I32, e=st.integers(0, 31))
def test_rdbpot(nl, x, e):
    assert nl.lib.tt_fx_rdbpot(x, e) == ref_rdbpot(x, e) == int(fx.rdbpot(x, e))


@settings(max_examples=500, deadline=None)
@given(x=I32, m=MULT, shift=st.integers(-31, 30))
def test_mbqm(nl, x, m, shift):
    left, right = max(shift, 0), max(-shift, 0)
    xs = min(max(x << left, -2**31), 2**31 - 1)
    ref = ref_rdbpot(ref_srdhm(xs, m), right)
    assert nl.lib.tt_fx_mbqm(x, m, shift) == ref == int(fx.mbqm(x, m, shift))


@settings(max_examples=500, deadline=None)
@given(x=st.integers(-2**47 + 1, 2**47 - 1), m=MULT, shift=st.integers(-31, 14))
def test_mbqm64(nl, x, m, shift):
    r = (m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF
    t = 15 - shift
    ref = min(max((x * r + (1 << (t - 1))) >> t, -2**31), 2**31 - 1)
    assert nl.lib.tt_fx_mbqm64(x, m, shift) == ref == int(fx.mbqm64(x, m, shift))


@settings(max_examples=500, deadline=None)
@given(x=st.integers(-2**63, 2**63 - 1), shift=st.integers(-63, 62))
def test_shift_round(nl, x, shift):
    ref = ref_rdbpot(x, -shift) if shift <= 0 else min(max(x << shift, -2**63), 2**63 - 1)
    assert nl.lib.tt_fx_shift_round64(x, shift) == ref == int(fx.shift_round(x, shift))


@settings(max_examples=500, deadline=None)
@given(real=st.floats(1e-12, 1e8, allow_nan=False))
def test_quantize_multiplier(real):
    m, shift = fx.quantize_multiplier(real)
    assume(m != 0)
    assert 2**30 <= m < 2**31
    assert abs(m * 2.0 ** (shift - 31) / real - 1) <= 2.0**-31
    # exact value: m = round(real * 2^(31 - shift)), ties away
    exact = Fraction(real) * 2 ** (31 - shift)
    assert abs(exact - m) <= Fraction(1, 2)


def test_quantize_multiplier_edges():
    assert fx.quantize_multiplier(0.0) == (0, 0)
    assert fx.quantize_multiplier(1.0) == (2**30, 1)
    assert fx.quantize_multiplier(0.25) == (2**30, -1)
    assert fx.quantize_multiplier(2.0**-40) == (0, 0)          # below resolution
    m, s = fx.quantize_multiplier(1 - 2.0**-40)                 # rounds up to 2^31
    assert (m, s) == (2**30, 1)
    assert fx.pow2_exponent(0.125) == -3 and fx.pow2_exponent(0.3) is None


def rq_case(rng, mode, per_channel, bits, channels):
    n = channels if per_channel else 1
    if mode == fx.RQ_TFLITE:
        reals = rng.uniform(1e-5, 0.5 if bits == 8 else 2e-3, n) * 2.0 ** rng.integers(-4, 3, n)
        ms = [fx.quantize_multiplier(r) for r in reals]
        return fx.Requant(mode, tuple(m for m, _ in ms), tuple(s for _, s in ms),
                          per_channel=per_channel)
    if mode == fx.RQ_POW2:
        return fx.Requant(mode, shift=tuple(int(v) for v in rng.integers(-20, 3, n)),
                          per_channel=per_channel)
    return fx.Requant(mode, fscale=tuple(float(v) for v in rng.uniform(1e-5, 0.05, n)),
                      per_channel=per_channel)


@pytest.mark.parametrize("mode", [fx.RQ_TFLITE, fx.RQ_POW2, fx.RQ_FLOAT])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", [8, 16])
def test_requant_arrays(nl, mode, per_channel, bits):
    rng = np.random.default_rng(100 * mode + 10 * per_channel + bits)
    for trial in range(20):
        c, inner = int(rng.integers(1, 6)), int(rng.integers(1, 9))
        n = c * inner * int(rng.integers(1, 3))
        rq = rq_case(rng, mode, per_channel, bits, c)
        if trial % 3 == 1:
            rq = fx.Requant(rq.mode, rq.mult, rq.shift, rq.fscale, rq.per_channel, 0, None)
        if trial % 3 == 2:
            rq = fx.Requant(rq.mode, rq.mult, rq.shift, rq.fscale, rq.per_channel, -5, 6)
        if bits == 8:
            acc = rng.integers(-2**31, 2**31, n).astype(np.int32)
            acc[: n // 2] //= 2 ** int(rng.integers(8, 24))
            y = np.zeros(n, np.int8)
            fn = nl.lib.tt_requant_q32_q8
        else:
            acc = rng.integers(-2**46, 2**46, n).astype(np.int64)
            acc[: n // 2] //= 2 ** int(rng.integers(8, 40))
            y = np.zeros(n, np.int16)
            fn = nl.lib.tt_requant_q64_q16
        keep = []
        cnt = nl.counter(5)
        nl.ok(fn(nl.requant(rq, bits, keep), nl.ptr(acc), nl.ptr(y), n, c, inner, cnt))
        ch = (np.arange(n) // inner) % c
        ref, nsat = fx.requant(rq, acc, ch, bits)
        np.testing.assert_array_equal(y, ref)
        assert cnt[0] == 5 + nsat


def test_requant_rejects_bad_params(nl):
    keep = []
    acc = np.zeros(4, np.int32)
    y = np.zeros(4, np.int8)
    bad = [fx.Requant(fx.RQ_TFLITE, (-1,), (0,)), fx.Requant(fx.RQ_TFLITE, (2**30,), (31,)),
           fx.Requant(fx.RQ_POW2, shift=(70,)), fx.Requant(fx.RQ_FLOAT, fscale=(-1.0,)),
           fx.Requant(7), fx.Requant(fx.RQ_TFLITE, (2**30,), (0,), act_min=-200)]
    for rq in bad:
        assert nl.lib.tt_requant_q32_q8(nl.requant(rq, 8, keep), nl.ptr(acc), nl.ptr(y), 4, 1,
                                        1, nl.NULL) == nl.lib.TT_ERR_ARG


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mult=MULT, shift=st.integers(-31, 30))
def test_rescale_q32(nl, seed, mult, shift):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2**31, 2**31, 64).astype(np.int32)
    x[:32] >>= int(rng.integers(0, 31))
    y = np.zeros_like(x)
    cnt = nl.counter()
    nl.ok(nl.lib.tt_rescale_q32(nl.ptr(x), nl.ptr(y), 64, mult, shift, cnt))
    ref, nsat = fx.rescale_q32(x, mult, shift)
    np.testing.assert_array_equal(y, ref)
    assert cnt[0] == nsat
    nl.ok(nl.lib.tt_rescale_q32(nl.ptr(x), nl.ptr(x), 64, mult, shift, nl.NULL))   # in place
    np.testing.assert_array_equal(x, ref)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-7, 1.0), n=st.integers(1, 50))
def test_requant_float_q8(nl, seed, scale, n):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-2**31, 2**31, n).astype(np.int32) >> int(rng.integers(0, 31))
    y = np.zeros(n, np.int8)
    cnt = nl.counter()
    nl.ok(nl.lib.tt_requant_float_q8(nl.ptr(acc), nl.ptr(y), n, scale, cnt))
    v = fx.requant_float_values(acc, np.float32(scale))
    ref, nsat = fx.sat(v, -128, 127)
    np.testing.assert_array_equal(y, ref)
    assert cnt[0] == nsat
    # RNE on the float product: ties go to even
    exact = acc.astype(np.float32) * np.float32(scale)
    assert np.all(np.abs(ref - np.clip(exact, -128, 127)) <= 0.5)


@pytest.mark.parametrize("kind", ["q32_q8", "q32_q16", "q64_q16", "q64_q32"])
def test_grad_quant_pow2(nl, kind):
    rng = np.random.default_rng(len(kind))
    src, dst = kind.split("_")
    adt = np.int32 if src == "q32" else np.int64
    bits = int(dst[1:])
    ydt = fx.storage_dtype(bits)
    top = 31 if src == "q32" else 63
    for trial in range(200):
        n = int(rng.integers(1, 40))
        e = int(rng.integers(0, top))
        acc = rng.integers(-(2**e), 2**e + 1, n, dtype=np.int64).astype(adt)
        if trial == 0:
            acc[:] = 0
        if trial == 1:
            acc[0] = np.iinfo(adt).min
        sh = nl.ffi.new("int *")
        nl.ok(getattr(nl.lib, f"tt_grad_scale_pow2_{src}")(nl.ptr(acc), n, bits, sh))
        s = fx.grad_scale_pow2(acc, bits)
        assert sh[0] == s
        limit = 2 ** (bits - 1) - 1
        q, nsat = fx.requant_pow2(acc, s, bits)
        assert nsat == 0 and np.abs(q).max() <= limit
        if s > 0:                               # the largest value keeps >= bits-1 bits
            assert np.abs(q).max() >= (limit + 1) // 2
        y = np.zeros(n, ydt)
        nl.ok(getattr(nl.lib, f"tt_grad_quant_pow2_{kind}")(nl.ptr(acc), nl.ptr(y), n, sh))
        np.testing.assert_array_equal(y, q)
        # in place: the narrow result overwrites the front of the accumulator buffer
        buf = acc.copy()
        nl.ok(getattr(nl.lib, f"tt_grad_quant_pow2_{kind}")(
            nl.ptr(buf), nl.ffi.cast(f"{np.dtype(ydt).name}_t *", nl.ffi.from_buffer(buf)), n, sh))
        np.testing.assert_array_equal(buf.view(ydt)[:n], q)
        # explicit shift, incl. left shifts with saturation
        r = int(rng.integers(-8, 12))
        cnt = nl.counter()
        nl.ok(getattr(nl.lib, f"tt_requant_pow2_{kind}")(nl.ptr(acc), nl.ptr(y), n, r, cnt))
        q2, n2 = fx.requant_pow2(acc, r, bits)
        np.testing.assert_array_equal(y, q2)
        assert cnt[0] == n2


def test_exp_q24_q30(nl):
    rng = np.random.default_rng(3)
    z = np.concatenate([-rng.integers(0, 2**31, 20_000), -rng.integers(0, 2**24 * 25, 20_000),
                        [0, -1, -2, 5, 2**31 - 1, -2**31, -(2**24), -(2**24) * 21,
                         -(2**24) * 22]]).astype(np.int64)
    got_c = np.array([nl.lib.tt_exp_q24_q30(int(v)) for v in z], np.int64)
    got = fx.exp_q24_q30(z)
    np.testing.assert_array_equal(got_c, got)
    ref = np.exp(np.minimum(z, 0) / 2**24) * 2**30
    assert np.abs(got - ref).max() <= 3.5, np.abs(got - ref).max()
    assert got[z == 0][0] == 2**30 and np.all(got <= 2**30) and np.all(got >= 0)
    assert np.all(np.diff(got[np.argsort(z)]) >= 0)           # monotone


def test_log_q30_q24(nl):
    rng = np.random.default_rng(4)
    s = np.concatenate([rng.integers(2**30, 2**40, 20_000), rng.integers(1, 2**62, 10_000),
                        [1, 2, 2**30, 2**30 + 1, 2**31, 3 * 2**29, 2**62, 2**63 - 1, 0, -5]])
    s = s.astype(np.int64)
    got_c = np.array([nl.lib.tt_log_q30_q24(int(v)) for v in s], np.int64)
    got = fx.log_q30_q24(s)
    np.testing.assert_array_equal(got_c, got)
    pos = s > 0
    ref = np.array([math.log(int(v) / 2**30) for v in s[pos]]) * 2**24
    assert np.abs(got[pos] - ref).max() <= 1.0, np.abs(got[pos] - ref).max()
    assert got[s == 2**30][0] == 0
    assert np.all(got[~pos] == -2**31)


def test_qas_and_add_helpers():
    s_w, s_x, s_gy = 0.02, 0.05, 2.0**-9
    m, sh = fx.qas_weight_multiplier(s_w * s_gy * s_x, s_w)
    assert math.isclose(m * 2.0 ** (sh - 31), s_gy * s_x / s_w, rel_tol=1e-9)
    m, sh = fx.qas_bias_multiplier(s_w * s_x * s_gy, s_w, s_x)
    assert math.isclose(m * 2.0 ** (sh - 31), s_gy / (s_w * s_x), rel_tol=1e-9)
    p = fx.tflite_add_params(0.1, 0.05, 0.2)
    assert p.left_shift == 20 and p.a_shift <= 0 and p.b_shift <= 0
    assert math.isclose(p.a_mult * 2.0 ** (p.a_shift - 31), 0.5, rel_tol=1e-8)
