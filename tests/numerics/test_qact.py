"""Fixed-point Sigmoid / Tanh (tt_act_lut_q.c): C == numpy twin (tinytrain.numerics.qact) bit for
bit for every kernel on random inputs incl. the int8 / int16 extremes, random scales and random
(also non-monotone) tables; and the numbers of the contract: forward within 1 LSB of float64,
backward from y within its bound, few-bit errors that halve per bit and match an independent
Lloyd-Max, optimal for the weights they were built for."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import SANITIZE
from tinytrain.numerics import fixed as fx, qact as qa

BITS = st.sampled_from([8, 16])
FN = st.sampled_from(qa.FNS)
K = st.integers(1, 4)
SEED = st.integers(0, 2**32 - 1)
LOG_SX = st.floats(-16.0, 4.0)
EX = dict(deadline=None, max_examples=12 if SANITIZE else 60)


def qdt(bits):
    return np.int8 if bits == 8 else np.int16


def adt(bits):
    return np.int32 if bits == 8 else np.int64


def rand_x(rng, bits, n):
    """Uniform over the storage range with the extremes, 0 and +-1 sprinkled in."""
    lo, hi = fx.qrange(bits)
    x = rng.integers(lo, hi + 1, n)
    if n:
        special = np.array([lo, hi, 0, 1, -1, lo + 1, hi - 1])
        pick = rng.random(n) < 0.2
        x[pick] = special[rng.integers(0, special.size, int(pick.sum()))]
    return x.astype(qdt(bits))


def c_fn(nl, name, bits):
    return getattr(nl.lib, f"tt_{name}_q{bits}")


def lut16(nl, tab, keep):
    table = np.ascontiguousarray(tab.table, np.uint16)
    keep.append(table)
    return nl.ffi.new("tt_act_lut16 *", {"table": nl.ptr(table), "n_seg": tab.n_seg,
                                         "mult": tab.mult, "shift": tab.shift})


def c_fwd(nl, tab, x, keep, out=None):
    y = np.zeros(x.size, x.dtype) if out is None else out
    if tab.bits == 8:
        t = np.ascontiguousarray(tab.table, np.int8)
        keep.append(t)
        nl.ok(c_fn(nl, f"{tab.fn}_fwd", 8)(nl.ptr(t), nl.ptr(x), nl.ptr(y), x.size))
    else:
        nl.ok(c_fn(nl, f"{tab.fn}_fwd", 16)(lut16(nl, tab, keep), nl.ptr(x), nl.ptr(y), x.size))
    return y


def twin_fwd(tab, x):
    return (qa.sigmoid_fwd if tab.fn == "sigmoid" else qa.tanh_fwd)(tab, x)


@st.composite
def random_lut(draw, fn):
    """A tt_act_lut16 with arbitrary contents: the integer path, not only builder outputs."""
    rng = np.random.default_rng(draw(SEED))
    n_seg = draw(st.sampled_from([1, 2, 7, 256, 4096]))
    table = rng.integers(0, 65536, n_seg + 1).astype(np.uint16)
    if draw(st.booleans()):
        table[:] = 65535 if draw(st.booleans()) else 0
    mult = draw(st.sampled_from([0, 1, 2**31 - 1, int(rng.integers(0, 2**31))]))
    shift = draw(st.integers(0, 62))
    return qa.ActTable(fn, 16, 1.0, table, n_seg, mult, shift)


# ---- forward: C == numpy --------------------------------------------------------------------

@settings(**EX)
@given(bits=BITS, fn=FN, log_sx=LOG_SX, seed=SEED, n=st.integers(0, 300))
def test_fwd_matches_numpy(nl, bits, fn, log_sx, seed, n):
    rng = np.random.default_rng(seed)
    tab = qa.build_act_table(fn, 2.0 ** log_sx, bits)
    x = rand_x(rng, bits, n)
    keep = []
    y = c_fwd(nl, tab, x, keep)
    np.testing.assert_array_equal(y, twin_fwd(tab, x))
    inplace = x.copy()
    c_fwd(nl, tab, inplace, keep, out=inplace)
    np.testing.assert_array_equal(inplace, y)


@settings(**EX)
@given(fn=FN, data=st.data(), seed=SEED, n=st.integers(0, 200))
def test_fwd_q16_random_tables_match_numpy(nl, fn, data, seed, n):
    tab = data.draw(random_lut(fn))
    x = rand_x(np.random.default_rng(seed), 16, n)
    np.testing.assert_array_equal(c_fwd(nl, tab, x, []), twin_fwd(tab, x))


# ---- forward: accuracy (exhaustive over the inputs) --------------------------------------------

SX_SWEEP = [2.0 ** -16, 1e-4, 2.0 ** -12, 3.1e-4, 1e-3, 2.0 ** -9, 0.0123, 0.05, 0.37, 1.0, 16.0]


@pytest.mark.parametrize("fn", qa.FNS)
@pytest.mark.parametrize("bits", [8, 16])
def test_fwd_within_one_lsb_of_float64(nl, fn, bits):
    lo, hi = fx.qrange(bits)
    x = np.arange(lo, hi + 1).astype(qdt(bits))
    for s_x in SX_SWEEP:
        tab = qa.build_act_table(fn, s_x, bits)
        y = c_fwd(nl, tab, x, [])
        np.testing.assert_array_equal(y, twin_fwd(tab, x))
        ref = qa.act_ref(fn, s_x * x.astype(np.float64)) * 2.0 ** (bits - 1)
        err = np.abs(y - ref)
        assert err.max() <= qa.FWD_MAX_ERR_LSB + 1e-9, (s_x, err.max())
        if bits == 8:      # the table is the rule itself
            np.testing.assert_array_equal(y, qa.ideal_q(fn, s_x * x.astype(np.float64), 8))
        # monotone, and odd / point-symmetric up to the top clamp
        assert np.all(np.diff(y.astype(np.int64)) >= 0)
        yi = y.astype(np.int64)
        mirror = -yi[1:][::-1] if fn == "tanh" else (1 << (bits - 1)) - yi[1:][::-1]
        assert np.all(np.abs(yi[1:] - mirror) <= 1)


def test_fwd_q16_smaller_table_bound():
    x = np.arange(-32768, 32768).astype(np.int16)
    for fn, bound in (("sigmoid", 1.1), ("tanh", 1.65)):
        for s_x in SX_SWEEP:
            tab = qa.build_act_table(fn, s_x, 16, n_seg=256)
            err = np.abs(twin_fwd(tab, x) - qa.act_ref(fn, s_x * x.astype(np.float64)) * 32768)
            assert err.max() <= bound, (fn, s_x, err.max())


# ---- backward from the output ----------------------------------------------------------------

@settings(**EX)
@given(bits=BITS, fn=FN, seed=SEED, n=st.integers(0, 300))
def test_bwd_x_from_output_matches_numpy(nl, bits, fn, seed, n):
    rng = np.random.default_rng(seed)
    gy, y = rand_x(rng, bits, n), rand_x(rng, bits, n)     # any y, also outside sigmoid's range
    gx = np.full(n, 7, adt(bits))
    nl.ok(c_fn(nl, f"{fn}_bwd_x", bits)(nl.ptr(gy), nl.ptr(y), nl.ptr(gx), n))
    twin = (qa.sigmoid_bwd_x if fn == "sigmoid" else qa.tanh_bwd_x)(gy, y, bits)
    np.testing.assert_array_equal(gx, twin)
    # exact: gx = gy * f'(y real) * 2^-E, with f' written in y (no rounding anywhere)
    yr = y.astype(np.float64) * 2.0 ** -(bits - 1)
    dref = yr * (1 - yr) if fn == "sigmoid" else 1 - yr * yr
    np.testing.assert_array_equal(gx.astype(np.float64),
                                  gy * dref * 2.0 ** -qa.bwd_exponent(fn, bits))


@pytest.mark.parametrize("fn", qa.FNS)
@pytest.mark.parametrize("bits", [8, 16])
def test_bwd_x_from_output_accuracy(fn, bits):
    lo, hi = fx.qrange(bits)
    x = np.arange(lo, hi + 1).astype(qdt(bits))
    e = qa.bwd_exponent(fn, bits)
    assert e == -2 * (bits - 1)
    for s_x in SX_SWEEP:
        y = twin_fwd(qa.build_act_table(fn, s_x, bits), x)
        d = (qa.sigmoid_bwd_x if fn == "sigmoid" else qa.tanh_bwd_x)(np.ones_like(y), y, bits)
        err = np.abs(d * 2.0 ** e - qa.deriv_ref(fn, s_x * x.astype(np.float64)))
        assert err.max() <= qa.bwd_max_err(fn, bits), (s_x, err.max())


# ---- codes: packing ----------------------------------------------------------------------------

@settings(**EX)
@given(k=K, seed=SEED, n=st.integers(0, 100))
def test_code_pack_unpack(nl, k, seed, n):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, n).astype(np.uint8)         # high bits must be ignored
    nb = qa.code_bytes(n, k)
    assert nb == math.ceil(n * k / 8)
    packed = np.full(nb + 3, 0xA5, np.uint8)                 # sentinel past the end
    nl.ok(nl.lib.tt_act_code_pack(nl.ptr(codes), nl.ptr(packed), n, k))
    np.testing.assert_array_equal(packed[:nb], qa.act_code_pack(codes, k))
    assert np.all(packed[nb:] == 0xA5)
    # the documented layout: code i in stream bits [i k, i k + k), unused high bits 0
    stream = np.unpackbits(packed[:nb], bitorder="little")
    mask = (1 << k) - 1
    for i in range(n):
        v = sum(int(stream[i * k + b]) << b for b in range(k))
        assert v == codes[i] & mask
    assert not stream[n * k:].any()
    out = np.full(n + 2, 0xEE, np.uint8)
    nl.ok(nl.lib.tt_act_code_unpack(nl.ptr(packed), nl.ptr(out), n, k))
    np.testing.assert_array_equal(out[:n], codes & mask)
    np.testing.assert_array_equal(qa.act_code_unpack(packed[:nb], n, k), codes & mask)
    assert np.all(out[n:] == 0xEE)


# ---- codes: forward and backward, C == numpy ---------------------------------------------------

@settings(**EX)
@given(bits=BITS, fn=FN, k=K, log_sx=LOG_SX, seed=SEED, n=st.integers(0, 150),
       sorted_thr=st.booleans())
def test_code_fwd_matches_numpy(nl, bits, fn, k, log_sx, seed, n, sorted_thr):
    rng = np.random.default_rng(seed)
    tab = qa.build_act_table(fn, 2.0 ** log_sx, bits)
    x = rand_x(rng, bits, n)
    nb = qa.code_bytes(n, k)
    y = np.zeros(n, qdt(bits))
    packed = np.full(nb + 2, 0x5A, np.uint8)
    keep = []
    if bits == 8:
        src = rng.integers(0, 256, 256).astype(np.uint8)     # any byte: low k bits are used
        t = np.ascontiguousarray(tab.table, np.int8)
        nl.ok(c_fn(nl, f"{fn}_code_fwd", 8)(nl.ptr(t), nl.ptr(src), nl.ptr(x), nl.ptr(y),
                                            nl.ptr(packed), n, k))
    else:
        src = rng.integers(-5, 32770, (1 << k) - 1).astype(np.int32)
        if sorted_thr:
            src.sort()
        nl.ok(c_fn(nl, f"{fn}_code_fwd", 16)(lut16(nl, tab, keep), nl.ptr(src), nl.ptr(x),
                                             nl.ptr(y), nl.ptr(packed), n, k))
    ty, tp = (qa.sigmoid_code_fwd if fn == "sigmoid" else qa.tanh_code_fwd)(tab, (src, k), x)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(y, twin_fwd(tab, x))
    np.testing.assert_array_equal(packed[:nb], tp)
    assert np.all(packed[nb:] == 0x5A)
    if bits == 16 and sorted_thr:      # the binary search is the count of thresholds <= |x|
        u = np.abs(x.astype(np.int64))
        np.testing.assert_array_equal(qa.act_code_unpack(tp, n, k),
                                      (u[:, None] >= src[None, :]).sum(axis=1))
    # in place: y over x
    inplace = x.copy()
    p2 = np.zeros(nb, np.uint8)
    if bits == 8:
        nl.ok(c_fn(nl, f"{fn}_code_fwd", 8)(nl.ptr(t), nl.ptr(src), nl.ptr(inplace),
                                            nl.ptr(inplace), nl.ptr(p2), n, k))
    else:
        nl.ok(c_fn(nl, f"{fn}_code_fwd", 16)(lut16(nl, tab, keep), nl.ptr(src), nl.ptr(inplace),
                                             nl.ptr(inplace), nl.ptr(p2), n, k))
    np.testing.assert_array_equal(inplace, y)
    np.testing.assert_array_equal(p2, tp)


@settings(**EX)
@given(bits=BITS, fn=FN, k=K, seed=SEED, n=st.integers(0, 150))
def test_code_bwd_matches_numpy(nl, bits, fn, k, seed, n):
    rng = np.random.default_rng(seed)
    gy = rand_x(rng, bits, n)
    codes = rng.integers(0, 1 << k, n).astype(np.uint8)
    packed = qa.act_code_pack(codes, k)
    lim = 1 << 23 if bits == 8 else 2**31 - 1
    levels = rng.integers(-lim, lim + 1, 1 << k).astype(np.int32)
    levels[rng.random(1 << k) < 0.2] = lim
    gx = np.full(n, 3, adt(bits))
    nl.ok(c_fn(nl, f"{fn}_bwd_x_code", bits)(nl.ptr(gy), nl.ptr(packed), nl.ptr(levels),
                                             nl.ptr(gx), n, k))
    twin = (qa.sigmoid_bwd_x_code if fn == "sigmoid" else qa.tanh_bwd_x_code)(gy, packed,
                                                                              levels, k, bits)
    np.testing.assert_array_equal(gx, twin)
    np.testing.assert_array_equal(gx, gy.astype(np.int64) * levels[codes])


# ---- argument errors: TT_ERR_ARG, nothing written ------------------------------------------

def test_argument_errors(nl):
    E = nl.lib.TT_ERR_ARG
    tab = qa.build_act_table("tanh", 0.01, 16)
    keep = []
    x = np.array([5, -5, 0], np.int16)
    y = np.full(3, 9, np.int16)
    packed = np.full(2, 9, np.uint8)
    thr = np.array([1, 2, 3], np.int32)
    for field, bad in (("n_seg", 0), ("n_seg", 4097), ("shift", 63), ("shift", -1),
                       ("mult", -1), ("table", nl.NULL)):
        p = lut16(nl, tab, keep)
        setattr(p, field, bad)
        assert nl.lib.tt_tanh_fwd_q16(p, nl.ptr(x), nl.ptr(y), 3) == E
        assert nl.lib.tt_tanh_code_fwd_q16(p, nl.ptr(thr), nl.ptr(x), nl.ptr(y), nl.ptr(packed),
                                           3, 2) == E
    p = lut16(nl, tab, keep)
    for k in (0, 5, -1):
        assert nl.lib.tt_sigmoid_code_fwd_q16(p, nl.ptr(thr), nl.ptr(x), nl.ptr(y),
                                              nl.ptr(packed), 3, k) == E
        assert nl.lib.tt_act_code_pack(nl.ptr(packed), nl.ptr(packed[1:].copy()), 1, k) == E
    assert nl.lib.tt_sigmoid_fwd_q16(p, nl.ptr(x), nl.ptr(y), -1) == E
    assert nl.lib.tt_sigmoid_fwd_q16(p, nl.NULL, nl.ptr(y), 3) == E
    assert np.all(y == 9) and np.all(packed == 9)
    # q8 levels beyond 2^23 could overflow the int32 accumulator: refused
    gy = np.array([100, -128], np.int8)
    gx = np.full(2, 4, np.int32)
    lv = np.array([1 << 23, 0], np.int32)
    code = np.zeros(1, np.uint8)
    nl.ok(nl.lib.tt_tanh_bwd_x_code_q8(nl.ptr(gy), nl.ptr(code), nl.ptr(lv), nl.ptr(gx), 2, 1))
    lv[1] = -(1 << 23) - 1
    gx[:] = 4
    assert nl.lib.tt_tanh_bwd_x_code_q8(nl.ptr(gy), nl.ptr(code), nl.ptr(lv), nl.ptr(gx), 2,
                                        1) == E
    assert np.all(gx == 4)
    with pytest.raises(ValueError):
        qa.act_bwd_x_code(gy, code, lv, 1, 8)
    # n = 0 accepts NULL everywhere
    assert nl.lib.tt_sigmoid_fwd_q8(nl.NULL, nl.NULL, nl.NULL, 0) == nl.lib.TT_OK
    assert nl.lib.tt_act_code_unpack(nl.NULL, nl.NULL, 0, 3) == nl.lib.TT_OK


# ---- few-bit: the built codes ------------------------------------------------------------------

@pytest.mark.parametrize("fn", qa.FNS)
def test_fewbit_errors_halve_per_bit_and_match_documented(fn):
    rms = []
    for k in (1, 2, 3, 4):
        c = qa.build_act_codes(fn, 2.0 ** -12, 16, k)
        assert c.rms == pytest.approx(qa.FEWBIT_RMS[fn][k - 1], rel=0.01)
        rms.append(c.rms)
    for a, b in zip(rms, rms[1:]):
        assert 1.8 < a / b < 2.2
    # int8 with a typical input scale: the same behaviour on the 129 distinct |x|
    r8 = [qa.build_act_codes(fn, 0.05, 8, k).rms for k in (1, 2, 3, 4)]
    assert all(a > b for a, b in zip(r8, r8[1:]))
    assert r8[1] == pytest.approx(rms[1], rel=0.1)


def lloyd_max_continuous(fn, k, iters=1000):
    """Independent reference: Lloyd-Max on the VALUES of f'(X), X ~ N(0, 1), on a dense grid
    (no cut-point DP, no integer inputs)."""
    x = np.linspace(0.0, 9.0, 60001)
    w = np.exp(-0.5 * x * x)
    v = qa.deriv_ref(fn, x)
    m = 1 << k
    q = np.quantile(v, (np.arange(m) + 0.5) / m)
    for _ in range(iters):
        idx = np.searchsorted(0.5 * (q[1:] + q[:-1]), v)
        q_new = np.bincount(idx, w * v, m) / np.bincount(idx, w, m)
        if np.allclose(q_new, q, rtol=0, atol=1e-12):
            break
        q = q_new
    return math.sqrt(np.average((v - q[idx]) ** 2, weights=w))


@pytest.mark.parametrize("fn", qa.FNS)
def test_fewbit_matches_independent_lloyd_max(fn):
    for k in (1, 2, 3):
        ref = lloyd_max_continuous(fn, k)
        assert qa.build_act_codes(fn, 2.0 ** -12, 16, k).rms == pytest.approx(ref, rel=0.01)


@pytest.mark.parametrize("fn", qa.FNS)
@pytest.mark.parametrize("bits,s_x", [(8, 0.03), (8, 0.25), (16, 3e-4), (16, 0.01)])
def test_fewbit_built_codes_consistent_and_locally_optimal(nl, fn, bits, s_x):
    for k in (1, 2, 3, 4):
        c = qa.build_act_codes(fn, s_x, bits, k)
        assert c.exp == qa.bwd_exponent(fn, bits)
        assert c.thresholds.dtype == np.int32 and c.thresholds.size == (1 << k) - 1
        assert np.all(np.diff(c.thresholds) > 0) and c.thresholds[0] > 0
        assert np.all(np.diff(c.levels.astype(np.int64)) <= 0)          # f' falls with |x|
        lo, hi = fx.qrange(bits)
        xs = np.arange(lo, hi + 1)
        if bits == 8:
            np.testing.assert_array_equal(c.code_table, qa.code_of(np.abs(xs), c.thresholds, k))
        # the kernels with the built parameters: gx = gy * level(code(x))
        rng = np.random.default_rng(k)
        x = rand_x(rng, bits, 64)
        gy = rand_x(rng, bits, 64)
        tab = qa.build_act_table(fn, s_x, bits)
        nb = qa.code_bytes(64, k)
        y, packed, keep = np.zeros(64, qdt(bits)), np.zeros(nb, np.uint8), []
        if bits == 8:
            t = np.ascontiguousarray(tab.table, np.int8)
            ct = np.ascontiguousarray(c.code_table)
            nl.ok(c_fn(nl, f"{fn}_code_fwd", 8)(nl.ptr(t), nl.ptr(ct), nl.ptr(x), nl.ptr(y),
                                                nl.ptr(packed), 64, k))
        else:
            th = np.ascontiguousarray(c.thresholds)
            nl.ok(c_fn(nl, f"{fn}_code_fwd", 16)(lut16(nl, tab, keep), nl.ptr(th), nl.ptr(x),
                                                 nl.ptr(y), nl.ptr(packed), 64, k))
        gx = np.zeros(64, adt(bits))
        lv = np.ascontiguousarray(c.levels)
        nl.ok(c_fn(nl, f"{fn}_bwd_x_code", bits)(nl.ptr(gy), nl.ptr(packed), nl.ptr(lv),
                                                 nl.ptr(gx), 64, k))
        code = qa.code_of(np.abs(x.astype(np.int64)), c.thresholds, k)
        np.testing.assert_array_equal(gx, gy.astype(np.int64) * c.levels[code])
        # locally optimal: moving any threshold by +-1 (levels re-fitted) does not help
        w = qa._fold_weights(s_x, bits, None) + 1e-15          # as the builder
        u = np.arange(hi + 2)
        fp = qa.deriv_ref(fn, s_x * u)

        def cost(thr):
            code_u = qa.code_of(u, thr, k)
            lv_r = np.array([np.average(fp[code_u == j], weights=w[code_u == j])
                             for j in range(1 << k)])
            return float((w * (fp - lv_r[code_u]) ** 2).sum())
        base = cost(c.thresholds)
        tol = 1e-9        # the DPs are exact over their cuts; prefix-sum rounding only
        for j in range(c.thresholds.size):
            for dlt in (-1, 1):
                t2 = c.thresholds.copy()
                t2[j] += dlt
                if np.all(np.diff(t2) > 0) and t2[0] > 0 and t2[-1] <= hi + 1:
                    assert cost(t2) >= base * (1 - tol), (k, j, dlt)


@pytest.mark.parametrize("fn", qa.FNS)
def test_fewbit_calibration_samples_beat_the_normal_prior_on_their_data(fn):
    rng = np.random.default_rng(1)
    samples = np.concatenate([rng.normal(1.5, 0.4, 4000), rng.normal(-0.3, 0.2, 2000)])
    s_x = 0.02
    for k in (1, 2, 3):
        cal = qa.build_act_codes(fn, s_x, 8, k, samples=samples)
        prior = qa.build_act_codes(fn, s_x, 8, k)
        u = np.abs(np.clip(np.round(samples / s_x), -128, 127)).astype(np.int64)
        fp = qa.deriv_ref(fn, s_x * u)

        def err(c):
            return np.sqrt(np.mean((fp - c.levels[qa.code_of(u, c.thresholds, k)]
                                    * 2.0 ** c.exp) ** 2))
        assert err(cal) <= err(prior) + 1e-6
        assert err(cal) == pytest.approx(cal.rms, rel=1e-3)


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError):
        qa.build_act_table("relu", 0.1, 8)
    with pytest.raises(ValueError):
        qa.build_act_table("tanh", 0.1, 12)
    with pytest.raises(ValueError):
        qa.build_act_table("tanh", -0.1, 8)
    with pytest.raises(ValueError):
        qa.build_act_table("tanh", 0.1, 16, n_seg=5000)
    with pytest.raises(ValueError):
        qa.build_act_codes("tanh", 0.1, 8, 5)
    with pytest.raises(ValueError):
        qa.code_bytes(3, 0)
    with pytest.raises(ValueError):
        qa.sigmoid_fwd(qa.build_act_table("tanh", 0.1, 8), np.zeros(1, np.int8))
