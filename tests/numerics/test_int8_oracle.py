"""Int8 inference semantics against INDEPENDENT implementations, bit for bit:

- TFLite Micro (pip `tflite-micro`, its Python interpreter) for FULLY_CONNECTED (int8 and
  int16x8), CONV_2D and DEPTHWISE_CONV_2D (per-channel), ADD, AVERAGE_POOL_2D, MAX_POOL_2D:
  our default requantization (TT_RQ_TFLITE) and the q8 / q16 kernels.
- onnxruntime QLinearMatMul / QLinearConv with int8 x int8 operands and zero points 0: our
  TT_RQ_FLOAT mode (float32 multiply, round half to even), incl. exact ties.
Each oracle is skipped when its package is missing.
"""
import numpy as np
import pytest

import oracle_models as om
from tinytrain.numerics import fixed as fx, qkernels as qk

needs_tflm = pytest.mark.skipif(not om.tflm_available(), reason="tflite-micro not installed")
f32 = lambda v: float(np.float32(v))  # noqa: E731 (scales live as float32 in both formats)


def c_gemm(nl, x, w, b, rq, bits):
    n, k = x.shape
    m = w.shape[0]
    y = np.zeros(n * m, fx.storage_dtype(bits))
    keep = []
    fn = getattr(nl.lib, f"tt_gemm_fwd_q{bits}")
    nl.ok(fn(nl.ptr(np.ascontiguousarray(x)), nl.ptr(np.ascontiguousarray(w)), nl.ptr(b), nl.ptr(y),
             n, k, m, nl.requant(rq, bits, keep), nl.NULL))
    return y.reshape(n, m)


def c_conv(nl, p, x, w, b, rq):
    y = np.zeros(p["out_c"] * p["out_h"] * p["out_w"], np.int8)
    keep = []
    nl.ok(nl.lib.tt_conv2d_fwd_q8(nl.conv(p), nl.ptr(x.reshape(-1)), nl.ptr(w.reshape(-1)),
                                  nl.ptr(b), nl.ptr(y), nl.requant(rq, 8, keep), nl.NULL))
    return y.reshape(p["out_c"], p["out_h"], p["out_w"])


@needs_tflm
@pytest.mark.parametrize("bits", [8, 16])
def test_tflm_fully_connected(nl, bits):
    rng = np.random.default_rng(bits)
    lo, hi = fx.qrange(bits)
    mismatches = total = 0
    for t in range(150):
        n, k, m = int(rng.integers(1, 3)), int(rng.integers(1, 80)), int(rng.integers(1, 20))
        x = rng.integers(lo, hi + 1, (n, k)).astype(fx.storage_dtype(bits))
        w = rng.integers(-127, 128, (m, k)).astype(np.int8)
        b = rng.integers(-9000, 9000, m).astype(np.int32 if bits == 8 else np.int64)
        sx, sw = f32(rng.uniform(1e-3, 0.1)), f32(rng.uniform(1e-3, 0.1))
        sy = f32(sx * sw * np.sqrt(k) * 64 * rng.uniform(0.2, 3) * (1 if bits == 8 else 1 / 2))
        relu = t % 4 == 0
        y_tflm = om.tflm_fully_connected(x, w, b, sx, sw, sy, bits, relu)
        mult, shift = fx.tflite_output_multiplier(sx, sw, sy)
        rq = fx.Requant(fx.RQ_TFLITE, (mult,), (shift,), act_min=0 if relu else None)
        y_c = c_gemm(nl, x, w.astype(fx.storage_dtype(bits)), b, rq, bits)
        y_py, _ = qk.gemm_fwd(x, w, b, n, k, m, rq, bits)
        np.testing.assert_array_equal(y_c.reshape(-1), y_py)
        mismatches += int((y_c != y_tflm).sum())
        total += y_c.size
    assert total > 1000 and mismatches == 0, f"{mismatches} of {total} differ"


def conv_case(rng, depthwise):
    c = int(rng.integers(1, 5))
    mult = int(rng.integers(1, 3)) if depthwise else 1
    oc = c * mult if depthwise else int(rng.integers(1, 6))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    h, wd = int(rng.integers(kh, 10)), int(rng.integers(kw, 10))
    padding = ["SAME", "VALID"][int(rng.integers(0, 2))]
    if padding == "SAME":
        oh, pt = om.same_padding(h, kh, sh)
        ow, pl = om.same_padding(wd, kw, sw)
    else:
        oh, ow, pt, pl = (h - kh) // sh + 1, (wd - kw) // sw + 1, 0, 0
    p = dict(in_c=c, in_h=h, in_w=wd, out_c=oc, out_h=oh, out_w=ow, k_h=kh, k_w=kw, stride_h=sh,
             stride_w=sw, pad_top=pt, pad_left=pl, groups=c if depthwise else 1)
    return p, padding


@needs_tflm
@pytest.mark.parametrize("depthwise", [False, True])
def test_tflm_conv2d_per_channel(nl, depthwise):
    rng = np.random.default_rng(10 + depthwise)
    mismatches = total = 0
    for t in range(120):
        p, padding = conv_case(rng, depthwise)
        cin_g = 1 if depthwise else p["in_c"]
        x = rng.integers(-128, 128, (p["in_c"], p["in_h"], p["in_w"])).astype(np.int8)
        w = rng.integers(-127, 128, (p["out_c"], cin_g, p["k_h"], p["k_w"])).astype(np.int8)
        b = rng.integers(-20000, 20000, p["out_c"]).astype(np.int32)
        sx = f32(rng.uniform(1e-3, 0.1))
        sw = np.float32(rng.uniform(1e-3, 0.1, p["out_c"]))
        sy = f32(sx * float(sw.mean()) * np.sqrt(cin_g * p["k_h"] * p["k_w"]) * 64 * rng.uniform(0.2, 3))
        relu = t % 3 == 0
        y_tflm = om.tflm_conv2d(x, w, b, sx, sw, sy, (p["stride_h"], p["stride_w"]), padding,
                                depthwise, relu)
        ms = [fx.tflite_output_multiplier(sx, float(s), sy) for s in sw]
        rq = fx.Requant(fx.RQ_TFLITE, tuple(m for m, _ in ms), tuple(s for _, s in ms),
                        per_channel=True, act_min=0 if relu else None)
        y_c = c_conv(nl, p, x, w, b, rq)
        np.testing.assert_array_equal(y_c.reshape(-1), qk.conv2d_fwd(p, x, w, b, rq)[0])
        mismatches += int((y_c != y_tflm).sum())
        total += y_c.size
    assert total > 1000 and mismatches == 0, f"{mismatches} of {total} differ"


@needs_tflm
@pytest.mark.parametrize("bits", [8, 16])
def test_tflm_add(nl, bits):
    rng = np.random.default_rng(20 + bits)
    lo, hi = fx.qrange(bits)
    for t in range(60):
        shape = (1, int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 6)))
        a = rng.integers(lo, hi + 1, shape).astype(fx.storage_dtype(bits))
        b = rng.integers(lo, hi + 1, shape).astype(fx.storage_dtype(bits))
        sa, sb = f32(rng.uniform(1e-3, 1)), f32(rng.uniform(1e-3, 1))
        sy = f32((sa + sb) * rng.uniform(0.3, 1.5))
        y_tflm = om.tflm_add(a, b, sa, sb, sy, bits)
        q = fx.tflite_add_params(sa, sb, sy, bits)
        qp = nl.ffi.new("tt_qadd_params *", dict(
            left_shift=q.left_shift, a_mult=q.a_mult, a_shift=q.a_shift, b_mult=q.b_mult,
            b_shift=q.b_shift, y_mult=q.y_mult, y_shift=q.y_shift, act_min=lo, act_max=hi))
        n = int(np.prod(shape))
        y = np.zeros(n, fx.storage_dtype(bits))
        strides = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1]
        nl.ok(getattr(nl.lib, f"tt_add_fwd_q{bits}")(nl.bcast(shape, strides, strides), qp,
                                                     nl.ptr(a.reshape(-1)), nl.ptr(b.reshape(-1)),
                                                     nl.ptr(y), nl.NULL))
        np.testing.assert_array_equal(y, y_tflm.reshape(-1))


@needs_tflm
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_tflm_pool(nl, kind):
    rng = np.random.default_rng(30 + len(kind))
    for t in range(80):
        c = int(rng.integers(1, 4))
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        h, wd = int(rng.integers(k[0], 9)), int(rng.integers(k[1], 9))
        padding = ["SAME", "VALID"][t % 2]
        if padding == "SAME":
            oh, pt = om.same_padding(h, k[0], stride[0])
            ow, pl = om.same_padding(wd, k[1], stride[1])
        else:
            oh, ow, pt, pl = (h - k[0]) // stride[0] + 1, (wd - k[1]) // stride[1] + 1, 0, 0
        p = dict(c=c, in_h=h, in_w=wd, out_h=oh, out_w=ow, k_h=k[0], k_w=k[1],
                 stride_h=stride[0], stride_w=stride[1], pad_top=pt, pad_left=pl,
                 count_include_pad=0)
        x = rng.integers(-128, 128, (c, h, wd)).astype(np.int8)
        y_tflm = om.tflm_pool(x, kind, k, stride, padding)
        y = np.zeros(c * oh * ow, np.int8)
        fn = nl.lib.tt_maxpool2d_fwd_q8 if kind == "max" else nl.lib.tt_avgpool2d_fwd_q8
        nl.ok(fn(nl.pool(p), nl.ptr(x.reshape(-1)), nl.ptr(y)))
        np.testing.assert_array_equal(y, y_tflm.reshape(-1))


# ---- onnxruntime: the float requantization mode ----------------------------------------------

def test_ort_qlinear_matmul(nl):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(40)
    total = 0
    for t in range(150):
        n, k, m = int(rng.integers(1, 4)), int(rng.integers(1, 64)), int(rng.integers(1, 24))
        a = rng.integers(-128, 128, (n, k)).astype(np.int8)
        w = rng.integers(-128, 128, (m, k)).astype(np.int8)
        if t % 5 == 0:                       # exact ties: power-of-two scales, small values
            a //= 8
            w //= 8
            sa, sw, sy = 0.5, 0.25, 0.125 * 2 ** int(rng.integers(1, 6))
        else:
            sa, sw = rng.uniform(1e-3, 0.1), rng.uniform(1e-3, 0.1)
            sy = sa * sw * np.sqrt(k) * 64 * rng.uniform(0.2, 3)
        y_ort = om.ort_qlinear_matmul(a, np.ascontiguousarray(w.T), sa, sw, sy)
        rq = fx.Requant(fx.RQ_FLOAT, fscale=(float(fx.ort_output_scale(sa, sw, sy)),))
        y_c = c_gemm(nl, a, w, None, rq, 8)
        np.testing.assert_array_equal(y_c, y_ort)
        acc = np.ascontiguousarray(a.astype(np.int32) @ w.T.astype(np.int32)).reshape(-1)
        y2 = np.zeros(acc.size, np.int8)
        nl.ok(nl.lib.tt_requant_float_q8(nl.ptr(acc), nl.ptr(y2), acc.size,
                                         float(fx.ort_output_scale(sa, sw, sy)), nl.NULL))
        np.testing.assert_array_equal(y2.reshape(y_ort.shape), y_ort)
        total += y_c.size
    assert total > 1000


def test_ort_ties_are_half_even_not_half_away():
    pytest.importorskip("onnxruntime")
    a = np.array([[1, 3, 5, -1, -3, -5]], np.int8).T.copy()      # acc = a * 1
    w = np.array([[1]], np.int8)
    y = om.ort_qlinear_matmul(a, w, 1.0, 1.0, 2.0)                # a / 2: all ties
    np.testing.assert_array_equal(y.reshape(-1), [0, 2, 2, 0, -2, -2])
    # the TFLite default rounds the same ties differently: multiplier 0.5 = (2^30, shift 0),
    # so the tie is decided by SaturatingRoundingDoublingHighMul, which rounds it up
    m, s = fx.tflite_output_multiplier(1.0, 1.0, 2.0)
    tfl = fx.mbqm(a.reshape(-1).astype(np.int64), m, s)
    np.testing.assert_array_equal(tfl, [1, 2, 3, 0, -1, -2])
    # ... and with multiplier 0.25 = (2^30, shift -1) by RoundingDivideByPOT: away from zero
    m, s = fx.quantize_multiplier(0.25)
    np.testing.assert_array_equal(fx.mbqm(np.array([2, 6, -2, -6]), m, s), [1, 2, -1, -2])


def test_ort_qlinear_conv(nl):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(41)
    total = 0
    for t in range(100):
        groups = int(rng.integers(1, 4))
        cin_g = 1 if t % 3 == 0 else int(rng.integers(1, 4))
        cout_g = int(rng.integers(1, 4))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        sh, sw_ = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        h, wd = int(rng.integers(3, 9)), int(rng.integers(3, 9))
        pt, pl, pb, pr = (int(rng.integers(0, k)) for k in (kh, kw, kh, kw))
        oh, ow = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw_ + 1
        p = dict(in_c=groups * cin_g, in_h=h, in_w=wd, out_c=groups * cout_g, out_h=oh, out_w=ow,
                 k_h=kh, k_w=kw, stride_h=sh, stride_w=sw_, pad_top=pt, pad_left=pl,
                 groups=groups)
        x = rng.integers(-128, 128, (p["in_c"], h, wd)).astype(np.int8)
        w = rng.integers(-128, 128, (p["out_c"], cin_g, kh, kw)).astype(np.int8)
        b = rng.integers(-9000, 9000, p["out_c"]).astype(np.int32)
        sx = rng.uniform(1e-3, 0.1)
        sw = rng.uniform(1e-3, 0.1, p["out_c"])
        sy = sx * sw.mean() * np.sqrt(cin_g * kh * kw) * 64 * rng.uniform(0.2, 3)
        y_ort = om.ort_qlinear_conv(x, w, b, sx, sw, sy, (sh, sw_), (pt, pl, pb, pr), groups)
        rq = fx.Requant(fx.RQ_FLOAT, fscale=tuple(float(fx.ort_output_scale(sx, s, sy)) for s in sw),
                        per_channel=True)
        y_c = c_conv(nl, p, x, w, b, rq)
        np.testing.assert_array_equal(y_c, y_ort)
        total += y_c.size
    assert total > 1000
