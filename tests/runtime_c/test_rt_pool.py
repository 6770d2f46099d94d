"""Max / average / global average pooling against torch (float64)."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

SMALL = os.environ.get("TT_RT_SANITIZE") == "1"

# name: (c, in_h, in_w, k_h, k_w, s_h, s_w, pad_top, pad_bottom, pad_left, pad_right)
POOLS = {
    "2x2_s2": (3, 8, 8, 2, 2, 2, 2, 0, 0, 0, 0),
    "2x2_s2_odd": (2, 7, 9, 2, 2, 2, 2, 0, 0, 0, 0),       # last row/col dropped
    "3x3_s2_p1": (4, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1),
    "3x3_s1_p1": (2, 6, 7, 3, 3, 1, 1, 1, 1, 1, 1),
    "3x3_s2_asym": (3, 8, 10, 3, 3, 2, 2, 0, 1, 1, 0),
    "3x3_s2_asym2": (2, 10, 8, 3, 3, 2, 2, 2, 0, 0, 2),
    "5x5_s1_p2": (2, 7, 7, 5, 5, 1, 1, 2, 2, 2, 2),
    "3x2_rect": (2, 9, 8, 3, 2, 3, 2, 1, 0, 1, 1),
    "overlap_3x3_s1": (1, 5, 5, 3, 3, 1, 1, 0, 0, 0, 0),
    "1d_k3_s2": (4, 1, 20, 1, 3, 1, 2, 0, 0, 1, 1),
    "global_like": (3, 5, 5, 5, 5, 1, 1, 0, 0, 0, 0),
}
if SMALL:
    POOLS = {k: v for i, (k, v) in enumerate(POOLS.items()) if i % 3 == 0}


def geometry(case, cip=0):
    c, ih, iw, kh, kw, sh, sw, pt, pb, pl, pr = case
    return dict(c=c, in_h=ih, in_w=iw, out_h=(ih + pt + pb - kh) // sh + 1,
                out_w=(iw + pl + pr - kw) // sw + 1, k_h=kh, k_w=kw, stride_h=sh, stride_w=sw,
                pad_top=pt, pad_left=pl, count_include_pad=cip)


def _pads(P):
    pb = (P["out_h"] - 1) * P["stride_h"] + P["k_h"] - P["in_h"] - P["pad_top"]
    pr = (P["out_w"] - 1) * P["stride_w"] + P["k_w"] - P["in_w"] - P["pad_left"]
    return (P["pad_left"], pr, P["pad_top"], pb)


def torch_pool(kind, P, x):
    k, s = (P["k_h"], P["k_w"]), (P["stride_h"], P["stride_w"])
    if kind == "max":
        return F.max_pool2d(F.pad(x[None], _pads(P), value=-float("inf")), k, s)[0]
    xp = F.pad(x[None], _pads(P))
    if P["count_include_pad"]:
        return F.avg_pool2d(xp, k, s)[0]
    ones = F.pad(torch.ones_like(x)[None], _pads(P))
    return (F.avg_pool2d(xp, k, s, divisor_override=1) /
            F.avg_pool2d(ones, k, s, divisor_override=1))[0]


KINDS = [("max", 0), ("avg", 0), ("avg", 1)]


@pytest.mark.parametrize("kind,cip", KINDS)
@pytest.mark.parametrize("name", list(POOLS))
def test_pool(rt, rng, name, kind, cip):
    P = geometry(POOLS[name], cip)
    x = rng.standard_normal((P["c"], P["in_h"], P["in_w"])).astype(np.float32)
    gy = rng.standard_normal((P["c"], P["out_h"], P["out_w"])).astype(np.float32)
    xt = torch.from_numpy(x).double().requires_grad_(True)
    y_ref = torch_pool(kind, P, xt)
    y_ref.backward(torch.from_numpy(gy).double())
    pp = rt.pool_params(**P)
    lib = rt.lib
    y = np.full(y_ref.shape, np.nan, np.float32)
    fwd = lib.tt_maxpool2d_fwd_f32 if kind == "max" else lib.tt_avgpool2d_fwd_f32
    rt.ok(fwd(pp, rt.f32(x), rt.f32(y)))
    rt.assert_close(y, y_ref.detach().numpy(), what="fwd")
    if kind == "max":
        assert np.array_equal(y, y_ref.detach().numpy().astype(np.float32))  # a max is exact
    for acc in (0, 1):
        g0 = rng.standard_normal(x.shape).astype(np.float32) if acc else np.full(x.shape, np.nan, np.float32)
        gx = g0.copy()
        if kind == "max":
            rt.ok(lib.tt_maxpool2d_bwd_x_f32(pp, rt.f32(gy), rt.f32(x), rt.f32(gx), acc))
        else:
            rt.ok(lib.tt_avgpool2d_bwd_x_f32(pp, rt.f32(gy), rt.f32(gx), acc))
        rt.assert_close(gx, xt.grad.numpy() + (g0 if acc else 0), what=f"bwd acc={acc}")


def test_maxpool_first_maximum_wins(rt):
    # a window full of equal values routes the gradient to its first (row-major) cell
    P = geometry((1, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0))
    x = np.ones((1, 4, 4), np.float32)
    gy = np.array([[[1, 2], [3, 4]]], np.float32)
    gx = np.zeros_like(x)
    rt.ok(rt.lib.tt_maxpool2d_bwd_x_f32(rt.pool_params(**P), rt.f32(gy), rt.f32(x), rt.f32(gx), 0))
    exp = np.zeros_like(x)
    exp[0, 0, 0], exp[0, 0, 2], exp[0, 2, 0], exp[0, 2, 2] = 1, 2, 3, 4
    assert np.array_equal(gx, exp)
    # a NaN in the window makes the output NaN (as torch)
    x[0, 1, 1] = np.nan
    y = np.zeros((1, 2, 2), np.float32)
    rt.ok(rt.lib.tt_maxpool2d_fwd_f32(rt.pool_params(**P), rt.f32(x), rt.f32(y)))
    assert np.isnan(y[0, 0, 0]) and not np.isnan(y[0, 1, 1])


def test_pool_rejects_bad_geometry(rt):
    x = np.zeros(64, np.float32)
    lib = rt.lib
    good = geometry((1, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1))
    rt.ok(lib.tt_maxpool2d_fwd_f32(rt.pool_params(**good), rt.f32(x), rt.f32(x[:16].copy())))
    for field, value in [("pad_top", 3), ("out_h", 6), ("stride_w", 0), ("count_include_pad", 2),
                         ("k_h", 0)]:
        bad = rt.pool_params(**dict(good, **{field: value}))
        assert lib.tt_avgpool2d_fwd_f32(bad, rt.f32(x), rt.f32(x)) == lib.TT_ERR_SHAPE, field
    assert lib.tt_maxpool2d_fwd_f32(rt.null, rt.f32(x), rt.f32(x)) == lib.TT_ERR_ARG
    assert lib.tt_avgpool2d_bwd_x_f32(rt.pool_params(**good), rt.f32(x), rt.f32(x), 5) == lib.TT_ERR_ARG


@pytest.mark.parametrize("c,hw", [(1, 1), (8, 49), (5, 3)])
def test_global_avgpool(rt, rng, c, hw):
    x = rng.standard_normal((c, hw)).astype(np.float32)
    y = np.full(c, np.nan, np.float32)
    rt.ok(rt.lib.tt_global_avgpool_fwd_f32(rt.f32(x), rt.f32(y), c, hw))
    rt.assert_close(y, x.astype(np.float64).mean(axis=1))
    gy = rng.standard_normal(c).astype(np.float32)
    gx = np.full_like(x, np.nan)
    rt.ok(rt.lib.tt_global_avgpool_bwd_x_f32(rt.f32(gy), rt.f32(gx), c, hw, 0))
    ref = np.repeat(gy.astype(np.float64)[:, None] / hw, hw, axis=1)
    rt.assert_close(gx, ref)
    g0 = rng.standard_normal(x.shape).astype(np.float32)
    gx = g0.copy()
    rt.ok(rt.lib.tt_global_avgpool_bwd_x_f32(rt.f32(gy), rt.f32(gx), c, hw, 1))
    rt.assert_close(gx, ref + g0)
