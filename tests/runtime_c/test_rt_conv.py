"""tt_conv2d_{fwd,bwd_x,bwd_w}_f32 against torch (float64) on a grid of geometries."""
import functools
import os
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

SMALL = os.environ.get("TT_RT_SANITIZE") == "1"

# name: (in_c, out_c, groups, in_h, in_w, k_h, k_w, s_h, s_w, pad_top, pad_bottom, pad_left, pad_right)
# pad_bottom / pad_right are what the output size is derived from; the kernel sees them only
# through out_h / out_w (with floor division they may come out smaller, even negative).
FIXED = {
    "3x3_s1_p1": (8, 8, 1, 10, 11, 3, 3, 1, 1, 1, 1, 1, 1),
    "3x3_s1_p1_tails": (5, 7, 1, 9, 7, 3, 3, 1, 1, 1, 1, 1, 1),
    "3x3_s1_p0": (4, 8, 1, 8, 8, 3, 3, 1, 1, 0, 0, 0, 0),
    "3x3_s2_p1": (5, 6, 1, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1),
    "3x3_s2_asym": (4, 8, 1, 10, 10, 3, 3, 2, 2, 0, 1, 1, 0),
    "3x3_s2_p0_drop": (4, 4, 1, 8, 8, 3, 3, 2, 2, 0, 0, 0, 0),  # last input row/col unused
    "3x3_p2": (3, 4, 1, 6, 7, 3, 3, 1, 1, 2, 2, 2, 2),          # corner windows nearly all pad
    "3x3_asym_s1": (4, 4, 1, 7, 9, 3, 3, 1, 1, 2, 0, 0, 2),
    "3x5_rect": (4, 8, 1, 9, 12, 3, 5, 1, 2, 1, 1, 2, 2),
    "5x5_p2": (3, 8, 1, 12, 12, 5, 5, 1, 1, 2, 2, 2, 2),
    "5x5_s2_asym": (4, 5, 1, 13, 11, 5, 5, 2, 2, 2, 0, 1, 2),
    "7x7_s2_p3": (3, 4, 1, 16, 16, 7, 7, 2, 2, 3, 3, 3, 3),
    "2x2_s2": (4, 4, 1, 8, 8, 2, 2, 2, 2, 0, 0, 0, 0),
    "1x6_k6": (2, 4, 1, 3, 16, 1, 6, 1, 1, 0, 0, 2, 3),
    "pointwise": (16, 12, 1, 7, 9, 1, 1, 1, 1, 0, 0, 0, 0),
    "pointwise_tails": (6, 7, 1, 5, 5, 1, 1, 1, 1, 0, 0, 0, 0),
    "pointwise_g2": (8, 12, 2, 6, 6, 1, 1, 1, 1, 0, 0, 0, 0),
    "pointwise_pad1": (4, 4, 1, 5, 5, 1, 1, 1, 1, 1, 1, 1, 1),
    "1x1_s2": (8, 8, 1, 9, 9, 1, 1, 2, 2, 0, 0, 0, 0),          # stride > kernel
    "groups2_3x3": (8, 12, 2, 8, 9, 3, 3, 1, 1, 1, 1, 1, 1),
    "groups2_tails": (6, 6, 2, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1),
    "groups4_s2": (8, 16, 4, 9, 10, 3, 3, 2, 2, 1, 1, 1, 1),
    "depthwise_3x3": (12, 12, 12, 10, 10, 3, 3, 1, 1, 1, 1, 1, 1),
    "depthwise_3x3_s2": (8, 8, 8, 11, 11, 3, 3, 2, 2, 1, 1, 1, 1),
    "depthwise_3x3_s2_asym": (6, 6, 6, 10, 12, 3, 3, 2, 2, 0, 1, 1, 0),
    "depthwise_3x3_s2_p0": (3, 3, 3, 9, 10, 3, 3, 2, 2, 0, 0, 0, 0),
    "depthwise_3x3_s2_p2": (3, 3, 3, 9, 8, 3, 3, 2, 2, 2, 1, 2, 2),
    "depthwise_3x3_s1_p0": (3, 3, 3, 7, 9, 3, 3, 1, 1, 0, 0, 0, 0),
    "depthwise_3x3_s1_p2": (3, 3, 3, 6, 11, 3, 3, 1, 1, 2, 2, 2, 1),
    "depthwise_3x3_s21": (3, 3, 3, 9, 9, 3, 3, 2, 1, 1, 1, 1, 1),
    "depthwise_5x5_p2": (4, 4, 4, 9, 9, 5, 5, 1, 1, 2, 2, 2, 2),
    "depthwise_mult2": (4, 8, 4, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1),
    "conv1d_k3": (4, 8, 1, 1, 32, 1, 3, 1, 1, 0, 0, 1, 1),
    "conv1d_k5_s2": (3, 5, 1, 1, 40, 1, 5, 1, 2, 0, 0, 2, 1),
    "conv1d_k1": (6, 4, 1, 1, 17, 1, 1, 1, 1, 0, 0, 0, 0),
    "conv1d_depthwise": (6, 6, 6, 1, 20, 1, 3, 1, 1, 0, 0, 1, 1),
    "tiny_2x2_in": (3, 5, 1, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1),
    "in_w_1": (4, 4, 1, 5, 1, 3, 1, 1, 1, 1, 1, 0, 0),
    "single_pixel": (4, 6, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0),
}


def _random_cases(n, seed=7):
    r = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        kind = r.choice(["dense", "groups", "depthwise", "conv1d"])
        kh, kw = (int(r.choice([1, 3, 5])) for _ in range(2))
        sh, sw = (int(r.integers(1, 3)) for _ in range(2))
        pt, pb, pl, pr = (int(r.integers(0, 3)) for _ in range(4))
        if kind == "conv1d":
            kh, sh, pt, pb = 1, 1, 0, 0
        if kind == "depthwise":
            g = int(r.integers(1, 7))
            cin, cout = g, g * int(r.integers(1, 3))
        elif kind == "groups":
            g = int(r.integers(2, 4))
            cin, cout = g * int(r.integers(1, 5)), g * int(r.integers(1, 6))
        else:
            g, cin, cout = 1, int(r.integers(1, 7)), int(r.integers(1, 10))
        ih = 1 if kind == "conv1d" else int(r.integers(max(1, kh - pt - pb), 12))
        iw = int(r.integers(max(1, kw - pl - pr), 14))
        out[f"rand{i}_{kind}"] = (cin, cout, g, ih, iw, kh, kw, sh, sw, pt, pb, pl, pr)
    return out


ALL_CASES = dict(FIXED, **_random_cases(24))
CASES = ALL_CASES
if SMALL:
    CASES = {k: v for i, (k, v) in enumerate(ALL_CASES.items()) if i % 4 == 0}


def geometry(case):
    in_c, out_c, g, ih, iw, kh, kw, sh, sw, pt, pb, pl, pr = case
    return dict(in_c=in_c, in_h=ih, in_w=iw, out_c=out_c,
                out_h=(ih + pt + pb - kh) // sh + 1, out_w=(iw + pl + pr - kw) // sw + 1,
                k_h=kh, k_w=kw, stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl, groups=g)


def torch_conv(P, x, w, b):
    """The convolution the kernel computes, in torch: pad (or crop) to the implied extent."""
    pb = (P["out_h"] - 1) * P["stride_h"] + P["k_h"] - P["in_h"] - P["pad_top"]
    pr = (P["out_w"] - 1) * P["stride_w"] + P["k_w"] - P["in_w"] - P["pad_left"]
    xp = F.pad(x[None], (P["pad_left"], pr, P["pad_top"], pb))
    return F.conv2d(xp, w, b, stride=(P["stride_h"], P["stride_w"]), groups=P["groups"])[0]


@functools.lru_cache(maxsize=None)
def case_data(name):
    """(P, x, w, b, gy, y_ref, gx_ref, gw_ref) for a case: one torch forward + backward,
    shared by the fwd / bwd_x / bwd_w tests."""
    P = geometry(ALL_CASES[name])
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal((P["in_c"], P["in_h"], P["in_w"])).astype(np.float32)
    w = rng.standard_normal((P["out_c"], P["in_c"] // P["groups"], P["k_h"], P["k_w"]))
    w = w.astype(np.float32)
    b = rng.standard_normal(P["out_c"]).astype(np.float32)
    gy = rng.standard_normal((P["out_c"], P["out_h"], P["out_w"])).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: threading only costs time
    try:
        xt = torch.from_numpy(x).double().requires_grad_(True)
        wt = torch.from_numpy(w).double().requires_grad_(True)
        y = torch_conv(P, xt, wt, torch.from_numpy(b).double())
        y.backward(torch.from_numpy(gy).double())
    finally:
        torch.set_num_threads(threads)
    return P, x, w, b, gy, y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


@pytest.mark.parametrize("name", list(CASES))
def test_conv_fwd(rt, rt_pairs, name):
    P, x, w, b, gy, y_ref, _, _ = case_data(name)
    y = np.full(y_ref.shape, np.nan, np.float32)   # NaN: every element must be written
    rt.ok(rt.lib.tt_conv2d_fwd_f32(rt.conv_params(**P), rt.f32(x), rt.f32(w), rt.f32(b), rt.f32(y)))
    rt.assert_close(y, y_ref, what="fwd with bias")
    y2 = np.empty_like(y)
    rt_pairs.ok(rt_pairs.lib.tt_conv2d_fwd_f32(rt_pairs.conv_params(**P), rt_pairs.f32(x),
                                               rt_pairs.f32(w), rt_pairs.f32(b), rt_pairs.f32(y2)))
    assert np.array_equal(y, y2)
    y[...] = np.nan
    rt.ok(rt.lib.tt_conv2d_fwd_f32(rt.conv_params(**P), rt.f32(x), rt.f32(w), rt.null, rt.f32(y)))
    rt.assert_close(y, y_ref - b[:, None, None].astype(np.float64), what="fwd without bias")


@pytest.mark.parametrize("acc", [0, 1])
@pytest.mark.parametrize("name", list(CASES))
def test_conv_bwd_x(rt, rt_pairs, rng, name, acc):
    P, x, w, b, gy, _, gx_ref, _ = case_data(name)
    init = rng.standard_normal(x.shape).astype(np.float32) if acc else np.full(x.shape, np.nan, np.float32)
    gx = init.copy()
    rt.ok(rt.lib.tt_conv2d_bwd_x_f32(rt.conv_params(**P), rt.f32(gy), rt.f32(w), rt.f32(gx), acc))
    rt.assert_close(gx, gx_ref + (init.astype(np.float64) if acc else 0.0), what="bwd_x")
    gx2 = init.copy()
    rt_pairs.ok(rt_pairs.lib.tt_conv2d_bwd_x_f32(rt_pairs.conv_params(**P), rt_pairs.f32(gy),
                                                 rt_pairs.f32(w), rt_pairs.f32(gx2), acc))
    assert np.array_equal(gx, gx2, equal_nan=True)


@pytest.mark.parametrize("acc", [0, 1])
@pytest.mark.parametrize("name", list(CASES))
def test_conv_bwd_w(rt, rt_pairs, rng, name, acc):
    P, x, w, b, gy, _, _, gw_ref = case_data(name)
    init = rng.standard_normal(w.shape).astype(np.float32) if acc else np.full(w.shape, np.nan, np.float32)
    gw = init.copy()
    rt.ok(rt.lib.tt_conv2d_bwd_w_f32(rt.conv_params(**P), rt.f32(gy), rt.f32(x), rt.f32(gw), acc))
    rt.assert_close(gw, gw_ref + (init.astype(np.float64) if acc else 0.0), what="bwd_w")
    # the RV32 loop variant computes the same chains: same bits
    gw2 = init.copy()
    rt_pairs.ok(rt_pairs.lib.tt_conv2d_bwd_w_f32(rt_pairs.conv_params(**P), rt_pairs.f32(gy),
                                                 rt_pairs.f32(x), rt_pairs.f32(gw2), acc))
    assert np.array_equal(gw, gw2)


def test_conv_bias_grad_via_bias_bwd(rt, rng):
    P = geometry(FIXED["3x3_s2_p1"])
    gy = rng.standard_normal((P["out_c"], P["out_h"], P["out_w"])).astype(np.float32)
    gb = np.full(P["out_c"], np.nan, np.float32)
    rt.ok(rt.lib.tt_bias_bwd_f32(rt.f32(gy), rt.f32(gb), 1, P["out_c"], P["out_h"] * P["out_w"], 0))
    rt.assert_close(gb, gy.astype(np.float64).sum(axis=(1, 2)))


def test_conv_rejects_bad_parameters(rt, rng):
    lib = rt.lib
    P, x, w, b, gy = case_data("groups2_3x3")[:5]
    y = np.zeros((P["out_c"], P["out_h"], P["out_w"]), np.float32)
    for field, value in [("groups", 3), ("k_w", 0), ("stride_h", 0), ("pad_top", -1),
                         ("in_c", 7), ("out_h", 0)]:
        bad = dict(P, **{field: value})
        assert lib.tt_conv2d_fwd_f32(rt.conv_params(**bad), rt.f32(x), rt.f32(w), rt.null,
                                     rt.f32(y)) == lib.TT_ERR_SHAPE, field
    pp = rt.conv_params(**P)
    assert lib.tt_conv2d_fwd_f32(rt.null, rt.f32(x), rt.f32(w), rt.null, rt.f32(y)) == lib.TT_ERR_ARG
    assert lib.tt_conv2d_fwd_f32(pp, rt.null, rt.f32(w), rt.null, rt.f32(y)) == lib.TT_ERR_ARG
    gx = np.zeros_like(x)
    assert lib.tt_conv2d_bwd_x_f32(pp, rt.f32(gy), rt.f32(w), rt.f32(gx), 2) == lib.TT_ERR_ARG
    gw = np.zeros_like(w)
    assert lib.tt_conv2d_bwd_w_f32(pp, rt.f32(gy), rt.f32(x), rt.f32(gw), -1) == lib.TT_ERR_ARG
    assert not gx.any() and not gw.any() and not y.any()
