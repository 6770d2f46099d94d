"""Mixed-precision forward kernels, w16a8 (int8 activations, int16 weights, int64 accumulators
and bias, TFLite requantization by mbqm64 to int8): C (tt_gemm_fwd_w16a8 /
tt_conv2d_fwd_w16a8) == numpy twin (qkernels.gemm_fwd / conv2d_fwd with wbits=16) bit for bit
on random shapes / strides / pads / groups / requant modes / act ranges; == the _q16 kernel on
the widened input followed by the int8 saturation; within the quantization error of float64 /
torch."""
import numpy as np
from hypothesis import given, settings, strategies as st

from conftest import SANITIZE
from num_helpers import conv_params, shapes, torch_conv
from tinytrain.numerics import fixed as fx, qkernels as qk

SEED = st.integers(0, 2**32 - 1)
EX = dict(deadline=None, max_examples=10 if SANITIZE else 50)
ACTS = [(None, None), (0, None), (-3, 5), (-128, 127), (0, 6)]


def rand_x(rng, shape):
    return rng.integers(-128, 128, shape).astype(np.int8)


def rand_w(rng, shape):
    w = rng.integers(-32768, 32768, shape).astype(np.int16)
    w.reshape(-1)[: max(1, w.size // 10)] = -32768          # the largest product, 2^22
    return w


def rand_bias(rng, n):
    """int64 biases, some beyond int32 (the accumulator is int64 before the requant)."""
    mag = 2.0 ** rng.uniform(0, 36, n)
    return (np.round(mag) * rng.choice([-1, 1], n)).astype(np.int64)


def rand_rq(rng, channels, acc_typical):
    """A random tt_requant to int8 whose outputs mostly fit (some saturate)."""
    mode = int(rng.integers(0, 3))
    per_channel = bool(rng.integers(0, 2))
    n = channels if per_channel else 1
    reals = 128.0 * rng.uniform(0.3, 3.0, n) / max(acc_typical, 1.0)
    act = ACTS[int(rng.integers(0, len(ACTS)))]
    kw = dict(per_channel=per_channel, act_min=act[0], act_max=act[1])
    if mode == fx.RQ_TFLITE:
        ms = [fx.quantize_multiplier(r) for r in reals]
        return fx.Requant(mode, tuple(m for m, _ in ms), tuple(s for _, s in ms), **kw), reals
    if mode == fx.RQ_POW2:
        return fx.Requant(mode, shift=tuple(int(np.round(np.log2(r))) for r in reals), **kw), reals
    return fx.Requant(mode, fscale=tuple(float(np.float32(r)) for r in reals), **kw), reals


def real_scale(rq, ch):
    m, s, f = rq.channel_arrays(int(ch.max()) + 1)
    if rq.mode == fx.RQ_TFLITE:
        return m[ch] * 2.0 ** (s[ch] - 31)
    if rq.mode == fx.RQ_POW2:
        return 2.0 ** s[ch].astype(np.float64)
    return f[ch].astype(np.float64)


def check_float(y, acc_exact, rq, ch):
    """One rounding (mbqm64 ties up, rdbpot, fp32 rne): |y - clamp(acc * M)| <= 0.5, plus the
    multiplier's own precision (16 bits in TFLite's int64 form, fp32 products)."""
    amin = -128 if rq.act_min is None else rq.act_min
    amax = 127 if rq.act_max is None else rq.act_max
    ideal = np.clip(acc_exact * real_scale(rq, ch), amin, amax)
    rel = 2.0**-15 if rq.mode == fx.RQ_TFLITE else 2.0**-22
    assert np.all(np.abs(y.astype(np.float64) - ideal) <= 0.5 + np.abs(ideal) * rel + 1e-9)


def as_q16_reference(nl, rq, call_q16, n_out):
    """The _q16 kernel with the act range opened to int16, then the int8 saturation and the
    act clamp: what w16a8 must compute (TFLite mode: mbqm64 in both)."""
    wide = fx.Requant(rq.mode, rq.mult, rq.shift, rq.fscale, rq.per_channel, None, None)
    keep, y16 = [], np.zeros(n_out, np.int16)
    nl.ok(call_q16(nl.requant(wide, 16, keep), y16))
    nsat = int(np.count_nonzero((y16 < -128) | (y16 > 127)))
    amin = -128 if rq.act_min is None else rq.act_min
    amax = 127 if rq.act_max is None else rq.act_max
    return np.clip(y16, amin, amax).astype(np.int8), nsat


@settings(**EX)
@given(seed=SEED, n=st.integers(1, 4), k=st.integers(1, 64), m=st.integers(1, 12),
       has_b=st.booleans())
def test_gemm_fwd_w16a8(nl, seed, n, k, m, has_b):
    rng = np.random.default_rng(seed)
    x, w = rand_x(rng, (n, k)), rand_w(rng, (m, k))
    b = rand_bias(rng, m) if has_b else None
    rq, _ = rand_rq(rng, m, np.sqrt(k) * 2.0**20)
    y = np.zeros(n * m, np.int8)
    keep, cnt = [], nl.counter(7)
    nl.ok(nl.lib.tt_gemm_fwd_w16a8(nl.ptr(x), nl.ptr(w), nl.ptr(b), nl.ptr(y), n, k, m,
                                   nl.requant(rq, 8, keep), cnt))
    ref, nsat = qk.gemm_fwd(x, w, b, n, k, m, rq, bits=8, wbits=16)
    np.testing.assert_array_equal(y, ref)
    assert cnt[0] == 7 + nsat
    x16 = x.astype(np.int16)
    y16, n16 = as_q16_reference(nl, rq, lambda r, out: nl.lib.tt_gemm_fwd_q16(
        nl.ptr(x16), nl.ptr(w), nl.ptr(b), nl.ptr(out), n, k, m, r, nl.NULL), n * m)
    np.testing.assert_array_equal(y, y16)
    assert nsat == n16
    acc = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b.astype(np.float64))
    check_float(y.reshape(n, m), acc, rq, np.arange(m)[None, :])


@settings(**EX)
@given(p=conv_params(), seed=SEED, has_b=st.booleans())
def test_conv2d_fwd_w16a8(nl, p, seed, has_b):
    rng = np.random.default_rng(seed)
    xs, ws, ys = shapes(p)
    x, w = rand_x(rng, xs), rand_w(rng, ws)
    b = rand_bias(rng, p["out_c"]) if has_b else None
    rq, _ = rand_rq(rng, p["out_c"], np.sqrt(ws[1] * ws[2] * ws[3]) * 2.0**20)
    n_out = int(np.prod(ys))
    y = np.zeros(n_out, np.int8)
    keep, cnt = [], nl.counter()
    nl.ok(nl.lib.tt_conv2d_fwd_w16a8(nl.conv(p), nl.ptr(x), nl.ptr(w), nl.ptr(b), nl.ptr(y),
                                     nl.requant(rq, 8, keep), cnt))
    ref, nsat = qk.conv2d_fwd(p, x, w, b, rq, bits=8, wbits=16)
    np.testing.assert_array_equal(y, ref)
    assert cnt[0] == nsat
    x16 = x.astype(np.int16)
    y16, n16 = as_q16_reference(nl, rq, lambda r, out: nl.lib.tt_conv2d_fwd_q16(
        nl.conv(p), nl.ptr(x16), nl.ptr(w), nl.ptr(b), nl.ptr(out), r, nl.NULL), n_out)
    np.testing.assert_array_equal(y, y16)
    assert nsat == n16
    acc, _, _ = torch_conv(p, x, w, b)
    check_float(y.reshape(ys), acc, rq, np.arange(p["out_c"])[:, None, None])


def test_w16a8_requant_is_int64_not_int32(nl):
    """An accumulator beyond int32 (int64 bias) is requantized as is; the q8 path would first
    saturate it to int32. -128 * -32768 = 2^22 is the largest product."""
    x = np.full(4, -128, np.int8)
    w = np.full(4, -32768, np.int16)
    b = np.array([(1 << 33) - (1 << 24)], np.int64)         # acc = 2^33 exactly
    rq = fx.Requant(fx.RQ_TFLITE, (1 << 30,), (-27,))        # 0.5 * 2^-27 = 2^-28: acc -> 32
    keep, cnt, y = [], nl.counter(), np.zeros(1, np.int8)
    nl.ok(nl.lib.tt_gemm_fwd_w16a8(nl.ptr(x), nl.ptr(w), nl.ptr(b), nl.ptr(y), 1, 4, 1,
                                   nl.requant(rq, 8, keep), cnt))
    assert y[0] == 32 and cnt[0] == 0
    assert qk.gemm_fwd(x, w, b, 1, 4, 1, rq, bits=8, wbits=16) == (np.array([32], np.int8), 0)


def test_w16a8_argument_checks(nl):
    x = np.ones(3, np.int8)
    w = np.ones(6, np.int16)
    y = np.full(2, 9, np.int8)
    keep = []
    p = dict(in_c=1, in_h=1, in_w=3, out_c=2, out_h=1, out_w=1, k_h=1, k_w=3, stride_h=1,
             stride_w=1, pad_top=0, pad_left=0, groups=1)

    def both(rq):
        r = nl.requant(rq, 8, keep)
        return (nl.lib.tt_gemm_fwd_w16a8(nl.ptr(x), nl.ptr(w), nl.NULL, nl.ptr(y), 1, 3, 2, r,
                                         nl.NULL),
                nl.lib.tt_conv2d_fwd_w16a8(nl.conv(p), nl.ptr(x), nl.ptr(w), nl.NULL, nl.ptr(y),
                                           r, nl.NULL))
    ok, err = nl.lib.TT_OK, nl.lib.TT_ERR_ARG
    # shift 15 is fine for tt_mbqm (q8) but outside tt_mbqm64's [-31, 14]
    assert both(fx.Requant(fx.RQ_TFLITE, (1 << 30,), (15,))) == (err, err)
    assert nl.lib.tt_gemm_fwd_q8(nl.ptr(x), nl.ptr(x), nl.NULL, nl.ptr(y), 1, 3, 1,
                                 nl.requant(fx.Requant(fx.RQ_TFLITE, (1 << 30,), (15,)), 8, keep),
                                 nl.NULL) == ok
    y[:] = 9
    per_ch = fx.Requant(fx.RQ_TFLITE, (1 << 30, 1 << 30), (0, 15), per_channel=True)
    assert both(per_ch) == (err, err)
    assert both(fx.Requant(fx.RQ_POW2, shift=(0,), act_min=-129)) == (err, err)   # int8 act range
    assert both(fx.Requant(fx.RQ_POW2, shift=(0,), act_max=128)) == (err, err)
    assert np.all(y == 9)                                   # nothing written on an error
    assert both(fx.Requant(fx.RQ_TFLITE, (1 << 30,), (14,))) == (ok, ok)
    assert nl.lib.tt_requant_check_acc64(nl.requant(fx.Requant(fx.RQ_TFLITE, (1 << 30,), (14,)),
                                                    16, keep), 1, 16) == ok


@settings(**EX)
@given(seed=SEED)
def test_requant_one_acc64(nl, seed):
    """bits 16: tt_requant_one itself; bits 8: mbqm64 + int8 saturation (numpy acc64)."""
    rng = np.random.default_rng(seed)
    rq, _ = rand_rq(rng, 1, 2.0 ** rng.uniform(10, 40))
    accs = (rng.uniform(-1, 1, 64) * 2.0 ** rng.uniform(0, 46, 64)).astype(np.int64)
    keep = []
    for bits in (8, 16):
        r = nl.requant(rq, bits, keep)
        if nl.lib.tt_requant_check_acc64(r, 1, bits) != nl.lib.TT_OK:
            continue
        got, cnt = [], nl.counter()
        for a in accs:
            got.append(nl.lib.tt_requant_one_acc64(r, 0, int(a), bits, cnt))
        ref, nsat = fx.requant(rq, accs, 0, bits, acc64=True)
        np.testing.assert_array_equal(got, ref)
        assert cnt[0] == nsat
        if bits == 16:
            c2 = nl.counter()
            np.testing.assert_array_equal(
                got, [nl.lib.tt_requant_one(r, 0, int(a), 16, c2) for a in accs])
            assert c2[0] == nsat
