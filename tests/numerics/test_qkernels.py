"""Fixed-point kernels: C (tt_*_q.c) == numpy twin (tinytrain.numerics.qkernels) bit for bit
on random shapes / strides / pads / groups / scales / seeds, and both compute the right thing
(float64 / torch references within the quantization error)."""
import numpy as np
from hypothesis import given, settings, strategies as st

from conftest import SANITIZE
from num_helpers import conv_params, pool_params, pool_ref, shapes, torch_conv
from tinytrain.numerics import fixed as fx, qkernels as qk
from tinytrain.numerics.prng import Pcg32

BITS = st.sampled_from([8, 16])
SEED = st.integers(0, 2**32 - 1)
EX = dict(deadline=None, max_examples=12 if SANITIZE else 60)


def qdt(bits):
    return np.int8 if bits == 8 else np.int16


def adt(bits):
    return np.int32 if bits == 8 else np.int64


def rand_q(rng, bits, shape, sparsity=0.0):
    lo, hi = fx.qrange(bits)
    a = rng.integers(lo, hi + 1, shape).astype(qdt(bits))
    if sparsity:
        a[rng.random(shape) < sparsity] = 0
    return a


def rand_rq(rng, bits, channels, acc_typical):
    """A random tt_requant whose outputs mostly fit (some saturate)."""
    mode = int(rng.integers(0, 3))
    per_channel = bool(rng.integers(0, 2))
    n = channels if per_channel else 1
    target = 2.0 ** (bits - 1) * rng.uniform(0.3, 3.0, n)
    reals = target / max(acc_typical, 1.0)
    act = [(None, None), (0, None), (-3, 5)][int(rng.integers(0, 3))]
    if mode == fx.RQ_TFLITE:
        ms = [fx.quantize_multiplier(r) for r in reals]
        rq = fx.Requant(mode, tuple(m for m, _ in ms), tuple(s for _, s in ms),
                        per_channel=per_channel, act_min=act[0], act_max=act[1])
    elif mode == fx.RQ_POW2:
        rq = fx.Requant(mode, shift=tuple(int(np.round(np.log2(r))) for r in reals),
                        per_channel=per_channel, act_min=act[0], act_max=act[1])
    else:
        rq = fx.Requant(mode, fscale=tuple(float(np.float32(r)) for r in reals),
                        per_channel=per_channel, act_min=act[0], act_max=act[1])
    return rq, reals


def real_scale(rq, reals, ch):
    if rq.mode == fx.RQ_TFLITE:
        m, s, _ = rq.channel_arrays(int(ch.max()) + 1)
        return m[ch] * 2.0 ** (s[ch] - 31)
    if rq.mode == fx.RQ_POW2:
        _, s, _ = rq.channel_arrays(int(ch.max()) + 1)
        return 2.0 ** s[ch].astype(np.float64)
    _, _, f = rq.channel_arrays(int(ch.max()) + 1)
    return f[ch].astype(np.float64)


def check_requantized(y, acc_exact, rq, reals, ch, bits):
    """|y - clamp(acc * M)| <= 1 (double rounding: < 0.5 + 0.5) against the real product,
    plus the multiplier's own precision: 16 bits in TFLite's int64 form, fp32 for FLOAT."""
    lo, hi = fx.qrange(bits)
    amin = lo if rq.act_min is None else rq.act_min
    amax = hi if rq.act_max is None else rq.act_max
    ideal = np.clip(acc_exact * real_scale(rq, reals, ch), amin, amax)
    rel = 2.0**-15 if (bits == 16 and rq.mode == fx.RQ_TFLITE) else 2.0**-22
    assert np.all(np.abs(y.astype(np.float64) - ideal) <= 1.0 + np.abs(ideal) * rel)


# ---- GEMM -----------------------------------------------------------------------------------

@settings(**EX)
@given(bits=BITS, seed=SEED, n=st.integers(1, 4), k=st.integers(1, 40), m=st.integers(1, 12),
       has_b=st.booleans())
def test_gemm_fwd(nl, bits, seed, n, k, m, has_b):
    rng = np.random.default_rng(seed)
    x, w = rand_q(rng, bits, (n, k)), rand_q(rng, bits, (m, k))
    b = (rng.integers(-2**20, 2**20, m) * (1 if bits == 8 else 2**12)).astype(adt(bits)) \
        if has_b else None
    typical = np.sqrt(k) * 2.0 ** (2 * bits - 4)
    rq, reals = rand_rq(rng, bits, m, typical)
    y = np.zeros(n * m, qdt(bits))
    keep, cnt = [], nl.counter(3)
    fn = getattr(nl.lib, f"tt_gemm_fwd_q{bits}")
    nl.ok(fn(nl.ptr(x), nl.ptr(w), nl.ptr(b), nl.ptr(y), n, k, m, nl.requant(rq, bits, keep), cnt))
    ref, nsat = qk.gemm_fwd(x, w, b, n, k, m, rq, bits)
    np.testing.assert_array_equal(y, ref)
    assert cnt[0] == 3 + nsat
    acc = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b.astype(np.float64))
    check_requantized(y.reshape(n, m), acc, rq, reals, np.arange(m)[None, :], bits)


@settings(**EX)
@given(bits=BITS, seed=SEED, n=st.integers(1, 5), k=st.integers(1, 30), m=st.integers(1, 12),
       accumulate=st.booleans())
def test_gemm_bwd(nl, bits, seed, n, k, m, accumulate):
    rng = np.random.default_rng(seed)
    gy, w, x = rand_q(rng, bits, (n, m), 0.3), rand_q(rng, bits, (m, k)), rand_q(rng, bits, (n, k))
    init_x = rng.integers(-2**20, 2**20, n * k).astype(adt(bits)) if accumulate else None
    init_w = rng.integers(-2**20, 2**20, m * k).astype(adt(bits)) if accumulate else None
    gx = init_x.copy() if accumulate else np.full(n * k, 77, adt(bits))
    gw = init_w.copy() if accumulate else np.full(m * k, 77, adt(bits))
    nl.ok(getattr(nl.lib, f"tt_gemm_bwd_x_q{bits}")(nl.ptr(gy), nl.ptr(w), nl.ptr(gx), n, k, m,
                                                    int(accumulate)))
    nl.ok(getattr(nl.lib, f"tt_gemm_bwd_w_q{bits}")(nl.ptr(gy), nl.ptr(x), nl.ptr(gw), n, k, m,
                                                    int(accumulate)))
    np.testing.assert_array_equal(gx, qk.gemm_bwd_x(gy, w, n, k, m, init_x, bits))
    np.testing.assert_array_equal(gw, qk.gemm_bwd_w(gy, x, n, k, m, init_w, bits))
    f = np.float64
    ex = gy.astype(f) @ w.astype(f) + (0 if init_x is None else init_x.reshape(n, k))
    ew = gy.T.astype(f) @ x.astype(f) + (0 if init_w is None else init_w.reshape(m, k))
    np.testing.assert_array_equal(gx.reshape(n, k), ex)
    np.testing.assert_array_equal(gw.reshape(m, k), ew)


@settings(**EX)
@given(bits=BITS, seed=SEED, outer=st.integers(1, 3), c=st.integers(1, 6),
       inner=st.integers(1, 20), accumulate=st.booleans())
def test_bias_bwd(nl, bits, seed, outer, c, inner, accumulate):
    rng = np.random.default_rng(seed)
    gy = rand_q(rng, bits, (outer, c, inner))
    init = rng.integers(-1000, 1000, c).astype(adt(bits)) if accumulate else None
    gb = init.copy() if accumulate else np.zeros(c, adt(bits))
    nl.ok(getattr(nl.lib, f"tt_bias_bwd_q{bits}")(nl.ptr(gy), nl.ptr(gb), outer, c, inner,
                                                  int(accumulate)))
    np.testing.assert_array_equal(gb, qk.bias_bwd(gy, outer, c, inner, init, bits))
    np.testing.assert_array_equal(gb, gy.astype(np.int64).sum(axis=(0, 2)) + (0 if init is None else init))


# ---- convolution ------------------------------------------------------------------------------

@settings(**EX)
@given(p=conv_params(), bits=BITS, seed=SEED, has_b=st.booleans())
def test_conv2d_fwd(nl, p, bits, seed, has_b):
    rng = np.random.default_rng(seed)
    xs, ws, ys = shapes(p)
    x, w = rand_q(rng, bits, xs), rand_q(rng, bits, ws)
    b = rng.integers(-2**18, 2**18, p["out_c"]).astype(adt(bits)) if has_b else None
    typical = np.sqrt(ws[1] * ws[2] * ws[3]) * 2.0 ** (2 * bits - 4)
    rq, reals = rand_rq(rng, bits, p["out_c"], typical)
    y = np.zeros(int(np.prod(ys)), qdt(bits))
    keep, cnt = [], nl.counter()
    nl.ok(getattr(nl.lib, f"tt_conv2d_fwd_q{bits}")(nl.conv(p), nl.ptr(x), nl.ptr(w), nl.ptr(b),
                                                    nl.ptr(y), nl.requant(rq, bits, keep), cnt))
    ref, nsat = qk.conv2d_fwd(p, x, w, b, rq, bits)
    np.testing.assert_array_equal(y, ref)
    assert cnt[0] == nsat
    acc, _, _ = torch_conv(p, x, w, b)
    check_requantized(y.reshape(ys), acc, rq, reals, np.arange(p["out_c"])[:, None, None], bits)


@settings(**EX)
@given(p=conv_params(), bits=BITS, seed=SEED, accumulate=st.booleans())
def test_conv2d_bwd(nl, p, bits, seed, accumulate):
    rng = np.random.default_rng(seed)
    xs, ws, ys = shapes(p)
    x, w, gy = rand_q(rng, bits, xs), rand_q(rng, bits, ws), rand_q(rng, bits, ys, 0.3)
    ix = rng.integers(-999, 999, int(np.prod(xs))).astype(adt(bits)) if accumulate else None
    iw = rng.integers(-999, 999, int(np.prod(ws))).astype(adt(bits)) if accumulate else None
    gx = ix.copy() if accumulate else np.full(int(np.prod(xs)), 5, adt(bits))
    gw = iw.copy() if accumulate else np.full(int(np.prod(ws)), 5, adt(bits))
    nl.ok(getattr(nl.lib, f"tt_conv2d_bwd_x_q{bits}")(nl.conv(p), nl.ptr(gy), nl.ptr(w),
                                                      nl.ptr(gx), int(accumulate)))
    nl.ok(getattr(nl.lib, f"tt_conv2d_bwd_w_q{bits}")(nl.conv(p), nl.ptr(gy), nl.ptr(x),
                                                      nl.ptr(gw), int(accumulate)))
    np.testing.assert_array_equal(gx, qk.conv2d_bwd_x(p, gy, w, ix, bits))
    np.testing.assert_array_equal(gw, qk.conv2d_bwd_w(p, gy, x, iw, bits))
    _, tgx, tgw = torch_conv(p, x, w, gy=gy)
    np.testing.assert_array_equal(gx.reshape(xs), tgx + (0 if ix is None else ix.reshape(xs)))
    np.testing.assert_array_equal(gw.reshape(ws), tgw + (0 if iw is None else iw.reshape(ws)))


def test_conv_rejects_bad_shapes(nl):
    p = dict(in_c=3, in_h=4, in_w=4, out_c=4, out_h=2, out_w=2, k_h=3, k_w=3, stride_h=1,
             stride_w=1, pad_top=0, pad_left=0, groups=2)           # 3 % 2 != 0
    x = np.zeros(48, np.int8)
    y = np.full(16, 9, np.int8)
    keep = []
    rq = nl.requant(fx.Requant(fx.RQ_POW2, shift=(0,)), 8, keep)
    assert nl.lib.tt_conv2d_fwd_q8(nl.conv(p), nl.ptr(x), nl.ptr(x), nl.NULL, nl.ptr(y), rq,
                                   nl.NULL) == nl.lib.TT_ERR_SHAPE
    assert np.all(y == 9)


# ---- ReLU and masks ------------------------------------------------------------------------------

@settings(**EX)
@given(bits=BITS, seed=SEED, n=st.integers(0, 70))
def test_relu_and_masks(nl, bits, seed, n):
    rng = np.random.default_rng(seed)
    x, gy = rand_q(rng, bits, n, 0.2), rand_q(rng, bits, n)
    y = np.zeros(n, qdt(bits))
    nl.ok(getattr(nl.lib, f"tt_relu_fwd_q{bits}")(nl.ptr(x), nl.ptr(y), n))
    np.testing.assert_array_equal(y, qk.relu_fwd(x))
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    gx = np.zeros(n, qdt(bits))
    nl.ok(getattr(nl.lib, f"tt_relu_bwd_x_q{bits}")(nl.ptr(gy), nl.ptr(y), nl.ptr(gx), n))
    np.testing.assert_array_equal(gx, qk.relu_bwd_x(gy, y))
    mask = np.full((n + 7) // 8, 0xAA, np.uint8)
    nl.ok(getattr(nl.lib, f"tt_relu_mask_pack_q{bits}")(nl.ptr(y), nl.ptr(mask), n))
    np.testing.assert_array_equal(mask, qk.relu_mask_pack(y))
    gx2 = np.zeros(n, qdt(bits))
    nl.ok(getattr(nl.lib, f"tt_relu_bwd_x_mask_q{bits}")(nl.ptr(gy), nl.ptr(mask), nl.ptr(gx2), n))
    np.testing.assert_array_equal(gx2, gx)
    bits_out = np.zeros(n, np.uint8)
    nl.ok(nl.lib.tt_mask_unpack(nl.ptr(mask), nl.ptr(bits_out), n))
    np.testing.assert_array_equal(bits_out, (y > 0).astype(np.uint8))
    inplace = x.copy()
    nl.ok(getattr(nl.lib, f"tt_relu_fwd_q{bits}")(nl.ptr(inplace), nl.ptr(inplace), n))
    np.testing.assert_array_equal(inplace, y)


# ---- pooling ---------------------------------------------------------------------------------

@settings(**EX)
@given(p=pool_params(), bits=BITS, seed=SEED, accumulate=st.booleans())
def test_maxpool(nl, p, bits, seed, accumulate):
    rng = np.random.default_rng(seed)
    n_in, n_out = p["c"] * p["in_h"] * p["in_w"], p["c"] * p["out_h"] * p["out_w"]
    x = rand_q(rng, bits, n_in)
    x[rng.random(n_in) < 0.3] = 7                        # ties: the first maximum wins
    gy = rand_q(rng, bits, n_out)
    y = np.zeros(n_out, qdt(bits))
    nl.ok(getattr(nl.lib, f"tt_maxpool2d_fwd_q{bits}")(nl.pool(p), nl.ptr(x), nl.ptr(y)))
    np.testing.assert_array_equal(y, qk.maxpool2d_fwd(p, x))
    yr, arg = pool_ref(p, x, "max")
    np.testing.assert_array_equal(y, yr.reshape(-1))
    init = rand_q(rng, bits, n_in) if accumulate else None
    gx = init.copy() if accumulate else np.full(n_in, 3, qdt(bits))
    cnt = nl.counter()
    nl.ok(getattr(nl.lib, f"tt_maxpool2d_bwd_x_q{bits}")(nl.pool(p), nl.ptr(gy), nl.ptr(x),
                                                         nl.ptr(gx), int(accumulate), cnt))
    ref, nsat = qk.maxpool2d_bwd_x(p, gy, x, init, bits)
    np.testing.assert_array_equal(gx, ref)
    assert cnt[0] == nsat
    exact = np.zeros((p["c"], p["in_h"] * p["in_w"])) + (0 if init is None else init.reshape(p["c"], -1))
    for c in range(p["c"]):
        np.add.at(exact[c], arg[c].reshape(-1), gy.reshape(p["c"], -1)[c])
    if nsat == 0:
        np.testing.assert_array_equal(gx, exact.reshape(-1))


@settings(**EX)
@given(p=pool_params(), bits=BITS, seed=SEED, accumulate=st.booleans(), frac=st.integers(0, 16))
def test_avgpool(nl, p, bits, seed, accumulate, frac):
    rng = np.random.default_rng(seed)
    n_in, n_out = p["c"] * p["in_h"] * p["in_w"], p["c"] * p["out_h"] * p["out_w"]
    x, gy = rand_q(rng, bits, n_in), rand_q(rng, bits, n_out)
    y = np.zeros(n_out, qdt(bits))
    nl.ok(getattr(nl.lib, f"tt_avgpool2d_fwd_q{bits}")(nl.pool(p), nl.ptr(x), nl.ptr(y)))
    np.testing.assert_array_equal(y, qk.avgpool2d_fwd(p, x, bits))
    yr, _ = pool_ref(p, x, "avg")
    assert np.abs(y - yr.reshape(-1)).max() <= 0.5
    init = rng.integers(-999, 999, n_in).astype(adt(bits)) if accumulate else None
    gx = init.copy() if accumulate else np.full(n_in, 3, adt(bits))
    nl.ok(getattr(nl.lib, f"tt_avgpool2d_bwd_x_q{bits}")(nl.pool(p), nl.ptr(gy), nl.ptr(gx), frac,
                                                         int(accumulate)))
    np.testing.assert_array_equal(gx, qk.avgpool2d_bwd_x(p, gy, frac, init, bits))
    # against the exact adjoint of the average (scale 2^-frac), within half a unit per window
    exact = np.zeros((p["c"], p["in_h"], p["in_w"]))
    g3 = gy.reshape(p["c"], p["out_h"], p["out_w"]).astype(np.float64) * 2.0**frac
    cnt_cells = np.zeros_like(exact)
    for oh in range(p["out_h"]):
        for ow in range(p["out_w"]):
            hs, ws = oh * p["stride_h"] - p["pad_top"], ow * p["stride_w"] - p["pad_left"]
            h0, h1 = max(hs, 0), min(hs + p["k_h"], p["in_h"])
            w0, w1 = max(ws, 0), min(ws + p["k_w"], p["in_w"])
            d = p["k_h"] * p["k_w"] if p["count_include_pad"] else (h1 - h0) * (w1 - w0)
            exact[:, h0:h1, w0:w1] += (g3[:, oh, ow] / d)[:, None, None]
            cnt_cells[:, h0:h1, w0:w1] += 1
    got = gx.reshape(exact.shape) - (0 if init is None else init.reshape(exact.shape))
    assert np.all(np.abs(got - exact) <= 0.5 * cnt_cells + 1e-9)


@settings(**EX)
@given(bits=BITS, seed=SEED, c=st.integers(1, 5), hw=st.integers(1, 40), accumulate=st.booleans(),
       frac=st.integers(0, 16))
def test_global_avgpool(nl, bits, seed, c, hw, accumulate, frac):
    rng = np.random.default_rng(seed)
    x, gy = rand_q(rng, bits, c * hw), rand_q(rng, bits, c)
    y = np.zeros(c, qdt(bits))
    nl.ok(getattr(nl.lib, f"tt_global_avgpool_fwd_q{bits}")(nl.ptr(x), nl.ptr(y), c, hw))
    np.testing.assert_array_equal(y, qk.global_avgpool_fwd(x, c, hw, bits))
    assert np.abs(y - x.reshape(c, hw).astype(np.float64).mean(axis=1)).max() <= 0.5
    init = rng.integers(-999, 999, c * hw).astype(adt(bits)) if accumulate else None
    gx = init.copy() if accumulate else np.zeros(c * hw, adt(bits))
    nl.ok(getattr(nl.lib, f"tt_global_avgpool_bwd_x_q{bits}")(nl.ptr(gy), nl.ptr(gx), c, hw, frac,
                                                              int(accumulate)))
    np.testing.assert_array_equal(gx, qk.global_avgpool_bwd_x(gy, c, hw, frac, init, bits))


# ---- add -------------------------------------------------------------------------------------

@st.composite
def bcast_case(draw):
    shape = [draw(st.integers(1, 4)) for _ in range(4)]
    def operand():
        keep = [draw(st.booleans()) or s == 1 for s in shape]
        oshape = [s if k else 1 for s, k in zip(shape, keep)]
        strides, acc = [0] * 4, 1
        for d in range(3, -1, -1):
            strides[d] = acc if oshape[d] > 1 else 0
            acc *= oshape[d]
        return strides, acc
    (sa, na), (sb, nb) = operand(), operand()
    return shape, sa, na, sb, nb


@settings(**EX)
@given(case=bcast_case(), bits=BITS, seed=SEED, relu=st.booleans())
def test_add(nl, case, bits, seed, relu):
    shape, sa, na, sb, nb = case
    rng = np.random.default_rng(seed)
    a, b = rand_q(rng, bits, na), rand_q(rng, bits, nb)
    s_a, s_b = rng.uniform(0.01, 1.0), rng.uniform(0.01, 1.0)
    s_y = (s_a + s_b) * rng.uniform(0.3, 1.2)
    q = fx.tflite_add_params(s_a, s_b, s_y, bits)
    lo, hi = fx.qrange(bits)
    act_min = 0 if relu else lo
    qp = nl.ffi.new("tt_qadd_params *", dict(
        left_shift=q.left_shift, a_mult=q.a_mult, a_shift=q.a_shift, b_mult=q.b_mult,
        b_shift=q.b_shift, y_mult=q.y_mult, y_shift=q.y_shift, act_min=act_min, act_max=hi))
    ny = int(np.prod(shape))
    y = np.zeros(ny, qdt(bits))
    cnt = nl.counter()
    nl.ok(getattr(nl.lib, f"tt_add_fwd_q{bits}")(nl.bcast(shape, sa, sb), qp, nl.ptr(a), nl.ptr(b),
                                                 nl.ptr(y), cnt))
    ref, nsat = qk.add_fwd_act(shape, sa, sb, a, b, q, act_min, hi, bits)
    np.testing.assert_array_equal(y, ref)
    assert cnt[0] == nsat
    from tinytrain.numerics.chains import bcast_offsets
    real = (a[bcast_offsets(shape, sa)] * s_a + b[bcast_offsets(shape, sb)] * s_b) / s_y
    assert np.abs(y - np.clip(real.reshape(-1), act_min, hi)).max() <= 1.0 + 1e-6
    # backward: reduction over the broadcast dims into accumulators
    gy = rand_q(rng, bits, ny)
    for which, (st_, n_op) in enumerate([(sa, na), (sb, nb)]):
        for accumulate in (0, 1):
            init = rng.integers(-50, 50, n_op).astype(adt(bits))
            g = init.copy()
            nl.ok(getattr(nl.lib, f"tt_add_bwd_q{bits}")(nl.bcast(shape, sa, sb), nl.ptr(gy),
                                                         nl.ptr(g), which, accumulate))
            exp = qk.add_bwd(shape, st_, gy, n_op, init if accumulate else None, bits)
            np.testing.assert_array_equal(g, exp)
            full = np.zeros(n_op, np.int64)
            np.add.at(full, bcast_offsets(shape, st_).reshape(-1), gy.astype(np.int64))
            np.testing.assert_array_equal(g, full + (init if accumulate else 0))


# ---- softmax cross-entropy --------------------------------------------------------------------

@settings(**EX)
@given(bits=BITS, seed=SEED, rows=st.integers(1, 4), cols=st.integers(1, 20),
       s_x=st.floats(1e-4, 4.0))
def test_softmax_xent(nl, bits, seed, rows, cols, s_x):
    rng = np.random.default_rng(seed)
    logits = rand_q(rng, bits, (rows, cols))
    if bits == 16:
        s_x = s_x / 256
    labels = rng.integers(0, cols, rows).astype(np.int32)
    m, sh = fx.quantize_multiplier(s_x)
    loss = nl.ffi.new("int32_t *")
    g = np.zeros(rows * cols, np.int32)
    nl.ok(getattr(nl.lib, f"tt_softmax_xent_q{bits}")(nl.ptr(logits), nl.ptr(labels), rows, cols,
                                                      m, sh, loss, nl.ptr(g)))
    ref_loss, ref_g = qk.softmax_xent(logits, labels, rows, cols, m, sh)
    assert loss[0] == ref_loss
    np.testing.assert_array_equal(g, ref_g)
    # float64: log-softmax of the real logits (scale as represented by (m, sh))
    xr = logits.astype(np.float64) * (m * 2.0 ** (sh - 31))
    xr = xr - xr.max(axis=1, keepdims=True)
    lse = np.log(np.exp(xr).sum(axis=1))
    lrow = lse - xr[np.arange(rows), labels]
    big = lrow.max() < 120
    if big:
        assert abs(loss[0] / 2**24 - lrow.mean()) <= 2e-7 * max(1, lrow.mean()) + 1e-7
    p = np.exp(xr - lse[:, None])
    p[np.arange(rows), labels] -= 1
    assert np.abs(g.reshape(rows, cols) / 2**30 - p).max() <= 3e-8 + 2e-7 * np.abs(xr).max()


def test_softmax_xent_errors_and_null_outputs(nl):
    x = np.array([1, 2, 3], np.int8)
    bad = np.array([3], np.int32)
    assert nl.lib.tt_softmax_xent_q8(nl.ptr(x), nl.ptr(bad), 1, 3, 2**30, 0, nl.NULL,
                                     nl.NULL) == nl.lib.TT_ERR_ARG
    ok = np.array([1], np.int32)
    loss = nl.ffi.new("int32_t *")
    nl.ok(nl.lib.tt_softmax_xent_q8(nl.ptr(x), nl.ptr(ok), 1, 3, 2**30, -6, loss, nl.NULL))
    assert loss[0] == qk.softmax_xent(x, ok, 1, 3, 2**30, -6)[0]


# ---- optimizers ---------------------------------------------------------------------------------

@settings(**EX)
@given(bits=st.sampled_from([8, 16, 32]), seed=SEED, n=st.integers(1, 60),
       stochastic=st.booleans(), lr=st.floats(1e-7, 1e-2))
def test_sgd_upd(nl, bits, seed, n, stochastic, lr):
    rng = np.random.default_rng(seed)
    lo, hi = fx.qrange(bits)
    w = rng.integers(lo, hi + 1, n, dtype=np.int64).astype(fx.storage_dtype(bits))
    g = rng.integers(-2**31, 2**31, n).astype(np.int32) >> int(rng.integers(0, 24))
    m, sh = fx.quantize_multiplier(lr)
    sh = max(sh, -31)
    rounding = int(stochastic)
    st_c = nl.prng(seed, 17)
    w_c, g_c = w.copy(), g.copy()
    cnt = nl.counter()
    nl.ok(getattr(nl.lib, f"tt_sgd_upd_q{bits}")(nl.ptr(w_c), nl.ptr(g_c), n, m, sh, rounding,
                                                 st_c, cnt))
    rng_py = Pcg32(seed, 17)
    ref, nsat = qk.sgd_upd(w, g, m, sh, rounding, rng_py, bits)
    np.testing.assert_array_equal(w_c, ref)
    assert cnt[0] == nsat and np.all(g_c == 0)
    assert st_c.state == rng_py.state                  # same number of draws
    delta = g.astype(np.float64) * (m * 2.0 ** (sh - 31))
    ideal = np.clip(w.astype(np.float64) - delta, lo, hi)
    assert np.abs(w_c - ideal).max() <= (1.0 if stochastic else 0.5) + 1e-9


@settings(**EX)
@given(bits=st.sampled_from([8, 16, 32]), seed=SEED, n=st.integers(1, 60),
       stochastic=st.booleans(), g_shift=st.integers(-20, 8))
def test_momentum_upd(nl, bits, seed, n, stochastic, g_shift):
    rng = np.random.default_rng(seed)
    lo, hi = fx.qrange(bits)
    w = rng.integers(lo, hi + 1, n, dtype=np.int64).astype(fx.storage_dtype(bits))
    g = rng.integers(-2**31, 2**31, n).astype(np.int32) >> int(rng.integers(0, 24))
    v = rng.integers(-2**31, 2**31, n).astype(np.int32) >> int(rng.integers(0, 8))
    lr_m, lr_s = fx.quantize_multiplier(rng.uniform(1e-7, 1e-3))
    beta_mult = round(0.9 * 2**31)                     # 0.9 in Q31
    p = nl.ffi.new("tt_qmomentum *", dict(lr_mult=lr_m, lr_shift=lr_s, beta_mult=beta_mult,
                                          g_shift=g_shift, rounding=int(stochastic)))
    w_c, g_c, v_c = w.copy(), g.copy(), v.copy()
    st_c = nl.prng(seed, 3)
    cnt = nl.counter()
    nl.ok(getattr(nl.lib, f"tt_momentum_upd_q{bits}")(nl.ptr(w_c), nl.ptr(g_c), nl.ptr(v_c), n, p,
                                                      st_c, cnt))
    rng_py = Pcg32(seed, 3)
    w_r, v_r, nsat = qk.momentum_upd(w, g, v, lr_m, lr_s, beta_mult, g_shift, int(stochastic),
                                     rng_py, bits)
    np.testing.assert_array_equal(w_c, w_r)
    np.testing.assert_array_equal(v_c, v_r)
    assert cnt[0] == nsat and np.all(g_c == 0) and st_c.state == rng_py.state
    v_ideal = np.clip(0.9 * v.astype(np.float64) + g.astype(np.float64) * 2.0**g_shift,
                      -2**31, 2**31 - 1)
    assert np.abs(v_c - v_ideal).max() <= 1.0 + 1e-9 * np.abs(v_ideal).max()


def test_stochastic_rounding_update_is_unbiased(nl):
    n = 20_000
    w = np.zeros(n, np.int16)
    g = np.full(n, -3, np.int32)                       # delta = -3 * 0.1 = -0.3 per element
    m, sh = fx.quantize_multiplier(0.1)
    st_c = nl.prng(99, 1)
    nl.ok(nl.lib.tt_sgd_upd_q16(nl.ptr(w), nl.ptr(g), n, m, sh, 1, st_c, nl.NULL))
    assert set(np.unique(w)) == {0, 1}
    assert abs(w.mean() - 0.3) < 0.01
    w[:] = 0
    g[:] = -3
    nl.ok(nl.lib.tt_sgd_upd_q16(nl.ptr(w), nl.ptr(g), n, m, sh, 0, nl.NULL, nl.NULL))
    assert np.all(w == 0)                               # nearest: the step is lost


def test_update_argument_errors(nl):
    w = np.zeros(4, np.int8)
    g = np.zeros(4, np.int32)
    assert nl.lib.tt_sgd_upd_q8(nl.ptr(w), nl.ptr(g), 4, 2**30, 0, 1, nl.NULL,
                                nl.NULL) == nl.lib.TT_ERR_ARG          # SR needs a generator
    assert nl.lib.tt_sgd_upd_q8(nl.ptr(w), nl.ptr(g), 4, -1, 0, 0, nl.NULL,
                                nl.NULL) == nl.lib.TT_ERR_ARG
    assert nl.lib.tt_sgd_upd_q8(nl.ptr(w), nl.ptr(g), 4, 1, 40, 0, nl.NULL,
                                nl.NULL) == nl.lib.TT_ERR_ARG


# ---- forward gradient (SPSA) ---------------------------------------------------------------

@settings(**EX)
@given(bits=BITS, seed=SEED, n=st.integers(0, 100), eps=st.integers(-300, 300),
       dist=st.sampled_from([0, 1]), step=st.integers(0, 2**31 - 1), k=st.integers(0, 64))
def test_zo_perturb_and_accumulate(nl, bits, seed, n, eps, dist, step, k):
    rng = np.random.default_rng(seed)
    lo, hi = fx.qrange(bits)
    w = (rng.integers(lo // 2, hi // 2, n) if bits == 16 else rng.integers(-60, 61, n)).astype(qdt(bits))
    sid = int(nl.lib.tt_prng_stream_id(step, k))
    st_c, cnt = nl.prng(seed, sid), nl.counter()
    w_p = np.zeros(n, qdt(bits))
    nl.ok(getattr(nl.lib, f"tt_zo_perturb_q{bits}")(nl.ptr(w), nl.ptr(w_p), n, st_c, eps, dist, cnt))
    g_py = Pcg32(seed, sid)
    ref, nsat = qk.zo_perturb(w, g_py, eps, dist, bits)
    np.testing.assert_array_equal(w_p, ref)
    assert cnt[0] == nsat and st_c.state == g_py.state
    # regenerate the same z (same key) and remove it: exact when nothing saturated
    st2 = nl.prng(seed, sid)
    w_back = w_p.copy()
    nl.ok(getattr(nl.lib, f"tt_zo_perturb_q{bits}")(nl.ptr(w_back), nl.ptr(w_back), n, st2, -eps,
                                                    dist, nl.NULL))
    if nsat == 0:
        np.testing.assert_array_equal(w_back, w)
    # g += d * z * 2^shift with the same z
    g = rng.integers(-2**20, 2**20, n).astype(np.int32)
    d, shift = int(rng.integers(-2**24, 2**24)), int(rng.integers(-20, 4))
    st3, cnt3 = nl.prng(seed, sid), nl.counter()
    g_c = g.copy()
    nl.ok(nl.lib.tt_zo_accum_q32(nl.ptr(g_c), n, st3, d, shift, dist, cnt3))
    g_ref, n3 = qk.zo_accum(g, Pcg32(seed, sid), d, shift, dist)
    np.testing.assert_array_equal(g_c, g_ref)
    assert cnt3[0] == n3
    z = (Pcg32(seed, sid).rademacher(n) if dist == 0 else Pcg32(seed, sid).gauss(n)).astype(np.int64)
    np.testing.assert_array_equal(w_p, np.clip(w.astype(np.int64) + eps * z, lo, hi))
