"""The documented summation order is part of the kernel contract (tt_kernels.h): every output
is one sequential fmaf chain in a fixed order, whatever blocking the kernel uses. These tests
rebuild the chains in numpy with an exact float32 fma and require BIT equality, so a change
of order (or an optimised arch/ kernel that does not keep it) is caught here, not on a board.
"""
import ctypes
import os

import numpy as np
import pytest

F32, F64 = np.float32, np.float64
SMALL = os.environ.get("TT_RT_SANITIZE") == "1"


def fmaf(a, b, c):
    """Correctly rounded float32 fma, vectorised: the product of two float32 is exact in
    float64; the sum is computed in float64 with round-to-odd (TwoSum error term), after which
    rounding to float32 is correct (53 >= 24 + 2)."""
    a, b, c = (np.asarray(v, F32) for v in (a, b, c))
    p = a.astype(F64) * b.astype(F64)
    cc = c.astype(F64)
    s = p + cc
    bb = s - p
    err = (p - (s - bb)) + (cc - bb)
    even = (s.view(np.int64) & 1) == 0
    s = np.where((err != 0) & even, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(F32)


def test_vectorised_fmaf_is_exact(rng):
    libm = ctypes.CDLL(None)
    f = libm.fmaf
    f.restype = ctypes.c_float
    f.argtypes = [ctypes.c_float] * 3
    a = rng.standard_normal(3000).astype(F32)
    b = (rng.standard_normal(3000) * np.exp2(rng.integers(-30, 30, 3000))).astype(F32)
    c = (rng.standard_normal(3000) * np.exp2(rng.integers(-40, 40, 3000))).astype(F32)
    c[:1000] = -(a[:1000].astype(F64) * b[:1000]).astype(F32)  # heavy cancellation
    want = np.array([f(float(x), float(y), float(z)) for x, y, z in zip(a, b, c)], F32)
    assert np.array_equal(fmaf(a, b, c), want)


# ------------------------------------------------------------------ convolution chains

def conv_fwd_chain(P, x, w, b):
    g, cin_g, cout_g = P["groups"], P["in_c"] // P["groups"], P["out_c"] // P["groups"]
    oh = np.arange(P["out_h"])[:, None]
    ow = np.arange(P["out_w"])[None, :]
    y = np.zeros((P["out_c"], P["out_h"], P["out_w"]), F32)
    for oc in range(P["out_c"]):
        acc = np.full((P["out_h"], P["out_w"]), b[oc] if b is not None else 0, F32)
        for icg in range(cin_g):
            ic = (oc // cout_g) * cin_g + icg
            for kh in range(P["k_h"]):
                for kw in range(P["k_w"]):
                    ih = oh * P["stride_h"] - P["pad_top"] + kh
                    iw = ow * P["stride_w"] - P["pad_left"] + kw
                    ok = (ih >= 0) & (ih < P["in_h"]) & (iw >= 0) & (iw < P["in_w"])
                    xv = x[ic][np.clip(ih, 0, P["in_h"] - 1), np.clip(iw, 0, P["in_w"] - 1)]
                    acc = np.where(ok, fmaf(xv, w[oc, icg, kh, kw], acc), acc)
        y[oc] = acc
    return y


def conv_bwd_x_chain(P, gy, w, init):
    cin_g, cout_g = P["in_c"] // P["groups"], P["out_c"] // P["groups"]
    ih = np.arange(P["in_h"])[:, None]
    iw = np.arange(P["in_w"])[None, :]
    gx = init.copy()
    for ic in range(P["in_c"]):
        g, icg = divmod(ic, cin_g)
        acc = gx[ic]
        for ocg in range(cout_g):
            oc = g * cout_g + ocg
            for kh in range(P["k_h"]):
                for kw in range(P["k_w"]):
                    th, tw = ih + P["pad_top"] - kh, iw + P["pad_left"] - kw
                    oh, ow = th // P["stride_h"], tw // P["stride_w"]
                    ok = ((th >= 0) & (th % P["stride_h"] == 0) & (oh < P["out_h"]) &
                          (tw >= 0) & (tw % P["stride_w"] == 0) & (ow < P["out_w"]))
                    gv = gy[oc][np.clip(oh, 0, P["out_h"] - 1), np.clip(ow, 0, P["out_w"] - 1)]
                    acc = np.where(ok, fmaf(gv, w[oc, icg, kh, kw], acc), acc)
        gx[ic] = acc
    return gx


def conv_bwd_w_chain(P, gy, x, init):
    cin_g, cout_g = P["in_c"] // P["groups"], P["out_c"] // P["groups"]
    oc = np.arange(P["out_c"])[:, None, None, None]
    ic = (oc // cout_g) * cin_g + np.arange(cin_g)[None, :, None, None]
    kh = np.arange(P["k_h"])[None, None, :, None]
    kw = np.arange(P["k_w"])[None, None, None, :]
    acc = init.copy()
    for oh in range(P["out_h"]):
        for ow in range(P["out_w"]):
            ih = oh * P["stride_h"] - P["pad_top"] + kh
            iw = ow * P["stride_w"] - P["pad_left"] + kw
            ok = (ih >= 0) & (ih < P["in_h"]) & (iw >= 0) & (iw < P["in_w"])
            xv = x[ic, np.clip(ih, 0, P["in_h"] - 1), np.clip(iw, 0, P["in_w"] - 1)]
            acc = np.where(ok, fmaf(gy[oc, oh, ow], xv, acc), acc)
    return acc


# (in_c, out_c, groups, in_h, in_w, k_h, k_w, s_h, s_w, pad_top, pad_left, out_h, out_w)
CONTRACT_CASES = {
    "3x3_p1_tails": (5, 6, 1, 7, 9, 3, 3, 1, 1, 1, 1, 7, 9),
    "3x3_s2_asym": (4, 5, 1, 8, 9, 3, 3, 2, 2, 0, 1, 4, 5),
    "5x5_s2_p2": (3, 4, 1, 9, 10, 5, 5, 2, 2, 2, 2, 5, 5),
    "pointwise_tails": (6, 5, 1, 3, 5, 1, 1, 1, 1, 0, 0, 3, 5),
    "depthwise_s2": (4, 4, 4, 9, 8, 3, 3, 2, 2, 1, 1, 5, 4),
    "depthwise_s2_p0": (2, 2, 2, 9, 10, 3, 3, 2, 2, 0, 0, 4, 4),
    "depthwise_s2_p2": (2, 2, 2, 8, 9, 3, 3, 2, 2, 2, 2, 5, 6),
    "depthwise_s1": (3, 3, 3, 9, 13, 3, 3, 1, 1, 1, 1, 9, 13),
    "groups2": (6, 10, 2, 5, 6, 3, 3, 1, 1, 1, 1, 5, 6),
    "conv1d_k5": (3, 5, 1, 1, 19, 1, 5, 1, 1, 0, 2, 1, 19),
    "1x1_s2": (5, 4, 1, 7, 7, 1, 1, 2, 2, 0, 0, 4, 4),
}
if SMALL:
    CONTRACT_CASES = dict(list(CONTRACT_CASES.items())[::3])


@pytest.mark.parametrize("name", list(CONTRACT_CASES))
def test_conv_chains_are_bit_exact(rt_any, rng, name):
    rt = rt_any
    c = CONTRACT_CASES[name]
    keys = ["in_c", "out_c", "groups", "in_h", "in_w", "k_h", "k_w", "stride_h", "stride_w",
            "pad_top", "pad_left", "out_h", "out_w"]
    P = dict(zip(keys, c))
    pp = rt.conv_params(**P)
    x = rng.standard_normal((P["in_c"], P["in_h"], P["in_w"])).astype(F32)
    w = rng.standard_normal((P["out_c"], P["in_c"] // P["groups"], P["k_h"], P["k_w"])).astype(F32)
    b = rng.standard_normal(P["out_c"]).astype(F32)
    gy = rng.standard_normal((P["out_c"], P["out_h"], P["out_w"])).astype(F32)
    y = np.empty_like(gy)
    rt.ok(rt.lib.tt_conv2d_fwd_f32(pp, rt.f32(x), rt.f32(w), rt.f32(b), rt.f32(y)))
    assert np.array_equal(y, conv_fwd_chain(P, x, w, b))
    for acc in (0, 1):
        init_x = rng.standard_normal(x.shape).astype(F32) if acc else np.zeros_like(x)
        gx = init_x.copy()
        rt.ok(rt.lib.tt_conv2d_bwd_x_f32(pp, rt.f32(gy), rt.f32(w), rt.f32(gx), acc))
        assert np.array_equal(gx, conv_bwd_x_chain(P, gy, w, init_x)), f"bwd_x acc={acc}"
        init_w = rng.standard_normal(w.shape).astype(F32) if acc else np.zeros_like(w)
        gw = init_w.copy()
        rt.ok(rt.lib.tt_conv2d_bwd_w_f32(pp, rt.f32(gy), rt.f32(x), rt.f32(gw), acc))
        assert np.array_equal(gw, conv_bwd_w_chain(P, gy, x, init_w)), f"bwd_w acc={acc}"


# ------------------------------------------------------------------ GEMM and bias chains

@pytest.mark.parametrize("n,k,m", [(1, 13, 7), (2, 9, 11), (1, 32, 8)])
def test_gemm_chains_are_bit_exact(rt, rng, n, k, m):
    x = rng.standard_normal((n, k)).astype(F32)
    w = rng.standard_normal((m, k)).astype(F32)
    b = rng.standard_normal(m).astype(F32)
    gy = rng.standard_normal((n, m)).astype(F32)
    y = np.empty((n, m), F32)
    rt.ok(rt.lib.tt_gemm_fwd_f32(rt.f32(x), rt.f32(w), rt.f32(b), rt.f32(y), n, k, m))
    acc = np.broadcast_to(b, (n, m)).copy()
    for kk in range(k):
        acc = fmaf(x[:, kk:kk + 1], w[:, kk][None, :], acc)
    assert np.array_equal(y, acc)
    for a in (0, 1):
        gx0 = rng.standard_normal((n, k)).astype(F32) if a else np.zeros((n, k), F32)
        gx = gx0.copy()
        rt.ok(rt.lib.tt_gemm_bwd_x_f32(rt.f32(gy), rt.f32(w), rt.f32(gx), n, k, m, a))
        acc = gx0.copy()
        for j in range(m):
            acc = fmaf(gy[:, j:j + 1], w[j][None, :], acc)
        assert np.array_equal(gx, acc)
        gw0 = rng.standard_normal((m, k)).astype(F32) if a else np.zeros((m, k), F32)
        gw = gw0.copy()
        rt.ok(rt.lib.tt_gemm_bwd_w_f32(rt.f32(gy), rt.f32(x), rt.f32(gw), n, k, m, a))
        acc = gw0.copy()
        for i in range(n):
            acc = fmaf(gy[i][:, None], x[i][None, :], acc)
        assert np.array_equal(gw, acc)


def test_bias_and_pool_sums_are_sequential(rt, rng):
    gy = rng.standard_normal((2, 3, 50)).astype(F32)
    gb = np.empty(3, F32)
    rt.ok(rt.lib.tt_bias_bwd_f32(rt.f32(gy), rt.f32(gb), 2, 3, 50, 0))
    acc = np.zeros(3, F32)
    for o in range(2):
        for t in range(50):
            acc = acc + gy[o, :, t]
    assert np.array_equal(gb, acc)
    x = rng.standard_normal((3, 40)).astype(F32)
    y = np.empty(3, F32)
    rt.ok(rt.lib.tt_global_avgpool_fwd_f32(rt.f32(x), rt.f32(y), 3, 40))
    acc = np.zeros(3, F32)
    for t in range(40):
        acc = acc + x[:, t]
    assert np.array_equal(y, acc / F32(40))
