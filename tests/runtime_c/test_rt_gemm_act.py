"""GEMM, bias gradient, pointwise activations and softmax against torch (float64)."""
import os

import numpy as np
import pytest
import torch

SMALL = os.environ.get("TT_RT_SANITIZE") == "1"

GEMM = [(1, 64, 32), (1, 37, 10), (1, 1, 1), (1, 3, 5), (1, 8, 4), (1, 12, 16), (3, 17, 9),
        (2, 8, 4), (4, 5, 7), (1, 100, 13)]
if SMALL:
    GEMM = GEMM[::3]


def _t(a):
    return torch.from_numpy(np.asarray(a)).double()


def _init(rng, shape, acc):
    return (rng.standard_normal(shape).astype(np.float32) if acc
            else np.full(shape, np.nan, np.float32))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n,k,m", GEMM)
def test_gemm_fwd(rt, rng, n, k, m, bias):
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    y = np.full((n, m), np.nan, np.float32)
    rt.ok(rt.lib.tt_gemm_fwd_f32(rt.f32(x), rt.f32(w), rt.f32(b) if bias else rt.null, rt.f32(y),
                                 n, k, m))
    ref = torch.nn.functional.linear(_t(x), _t(w), _t(b) if bias else None)
    rt.assert_close(y, ref.numpy())


@pytest.mark.parametrize("acc", [0, 1])
@pytest.mark.parametrize("n,k,m", GEMM)
def test_gemm_bwd(rt, rng, n, k, m, acc):
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((m, k)).astype(np.float32)
    gy = rng.standard_normal((n, m)).astype(np.float32)
    xt, wt = _t(x).requires_grad_(True), _t(w).requires_grad_(True)
    torch.nn.functional.linear(xt, wt).backward(_t(gy))
    gx0, gw0 = _init(rng, (n, k), acc), _init(rng, (m, k), acc)
    gx, gw = gx0.copy(), gw0.copy()
    rt.ok(rt.lib.tt_gemm_bwd_x_f32(rt.f32(gy), rt.f32(w), rt.f32(gx), n, k, m, acc))
    rt.ok(rt.lib.tt_gemm_bwd_w_f32(rt.f32(gy), rt.f32(x), rt.f32(gw), n, k, m, acc))
    rt.assert_close(gx, xt.grad.numpy() + (gx0 if acc else 0), what="bwd_x")
    rt.assert_close(gw, wt.grad.numpy() + (gw0 if acc else 0), what="bwd_w")


@pytest.mark.parametrize("acc", [0, 1])
@pytest.mark.parametrize("outer,c,inner", [(1, 10, 1), (3, 10, 1), (1, 6, 49), (2, 5, 7)])
def test_bias_bwd(rt, rng, outer, c, inner, acc):
    gy = rng.standard_normal((outer, c, inner)).astype(np.float32)
    gb0 = _init(rng, c, acc)
    gb = gb0.copy()
    rt.ok(rt.lib.tt_bias_bwd_f32(rt.f32(gy), rt.f32(gb), outer, c, inner, acc))
    rt.assert_close(gb, gy.astype(np.float64).sum(axis=(0, 2)) + (gb0 if acc else 0))


def test_gemm_rejects_bad_arguments(rt):
    a = np.zeros(16, np.float32)
    lib = rt.lib
    assert lib.tt_gemm_fwd_f32(rt.f32(a), rt.f32(a), rt.null, rt.f32(a), 0, 4, 4) == lib.TT_ERR_SHAPE
    assert lib.tt_gemm_fwd_f32(rt.null, rt.f32(a), rt.null, rt.f32(a), 1, 4, 4) == lib.TT_ERR_ARG
    assert lib.tt_gemm_bwd_x_f32(rt.f32(a), rt.f32(a), rt.f32(a), 1, 4, 4, 2) == lib.TT_ERR_ARG
    assert lib.tt_gemm_bwd_w_f32(rt.f32(a), rt.f32(a), rt.f32(a), 1, -4, 4, 0) == lib.TT_ERR_SHAPE
    assert lib.tt_bias_bwd_f32(rt.f32(a), rt.f32(a), 1, 4, 4, 3) == lib.TT_ERR_ARG


# ------------------------------------------------------------------ activations

def _act_input(rng, n=1000):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[:12] = [0.0, -0.0, 1e-6, -1e-6, 1e-30, -1e-30, 20.0, -20.0, 100.0, -100.0, 0.5, -0.5]
    return x


ACTS = {
    # name: (fwd call, bwd call, torch fn, bwd reads "x" or "y")
    "relu": (lambda rt, x, y: rt.lib.tt_relu_fwd_f32(x, y, N[0]),
             lambda rt, gy, s, gx, acc: rt.lib.tt_relu_bwd_x_f32(gy, s, gx, N[0], acc),
             torch.relu, "y"),
    "clip": (lambda rt, x, y: rt.lib.tt_clip_fwd_f32(x, y, N[0], -1.5, 2.0),
             lambda rt, gy, s, gx, acc: rt.lib.tt_clip_bwd_x_f32(gy, s, gx, N[0], -1.5, 2.0, acc),
             lambda t: torch.nn.functional.hardtanh(t, -1.5, 2.0), "y"),
    "relu6": (lambda rt, x, y: rt.lib.tt_clip_fwd_f32(x, y, N[0], 0.0, 6.0),
              lambda rt, gy, s, gx, acc: rt.lib.tt_clip_bwd_x_f32(gy, s, gx, N[0], 0.0, 6.0, acc),
              torch.nn.functional.relu6, "y"),
    "leaky_relu": (lambda rt, x, y: rt.lib.tt_leaky_relu_fwd_f32(x, y, N[0], 0.1),
                   lambda rt, gy, s, gx, acc: rt.lib.tt_leaky_relu_bwd_x_f32(gy, s, gx, N[0], 0.1, acc),
                   lambda t: torch.nn.functional.leaky_relu(t, np.float32(0.1).item()), "x"),
    "sigmoid": (lambda rt, x, y: rt.lib.tt_sigmoid_fwd_f32(x, y, N[0]),
                lambda rt, gy, s, gx, acc: rt.lib.tt_sigmoid_bwd_x_f32(gy, s, gx, N[0], acc),
                torch.sigmoid, "y"),
    "tanh": (lambda rt, x, y: rt.lib.tt_tanh_fwd_f32(x, y, N[0]),
             lambda rt, gy, s, gx, acc: rt.lib.tt_tanh_bwd_x_f32(gy, s, gx, N[0], acc),
             torch.tanh, "y"),
}
N = [1000]


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("name", list(ACTS))
def test_activation_fwd(rt, rng, name, inplace):
    fwd, _, fn, _ = ACTS[name]
    x = _act_input(rng)
    ref = fn(_t(x)).numpy()
    if inplace:
        y = x.copy()
        rt.ok(fwd(rt, rt.f32(y), rt.f32(y)))
    else:
        y = np.full_like(x, np.nan)
        rt.ok(fwd(rt, rt.f32(x), rt.f32(y)))
    rt.assert_close(y, ref)
    # pointwise relative accuracy too (sigmoid/tanh tails, tiny arguments), where float32 has
    # full precision (not subnormal)
    nz = np.abs(ref) >= np.finfo(np.float32).tiny
    assert np.max(np.abs(y[nz] - ref[nz]) / np.abs(ref[nz])) < 1e-6


@pytest.mark.parametrize("mode", ["acc0", "acc1", "inplace"])
@pytest.mark.parametrize("name", list(ACTS))
def test_activation_bwd(rt, rng, name, mode):
    fwd, bwd, fn, reads = ACTS[name]
    x = _act_input(rng)
    y = np.empty_like(x)
    rt.ok(fwd(rt, rt.f32(x), rt.f32(y)))
    gy = rng.standard_normal(x.shape).astype(np.float32)
    # reference gradient: autograd in float64, evaluated where the saved tensor says
    xt = _t(x).requires_grad_(True)
    fn(xt).backward(_t(gy))
    ref = xt.grad.numpy()
    if name == "leaky_relu":
        # the contract (and the numpy reference) use slope 1 at x == 0; torch uses alpha there
        ref = np.where(x < 0, np.float64(np.float32(0.1)), 1.0) * gy
    saved = rt.f32(x if reads == "x" else y)
    if mode == "inplace":
        g = gy.copy()
        rt.ok(bwd(rt, rt.f32(g), saved, rt.f32(g), 0))
        rt.assert_close(g, ref)
    else:
        acc = int(mode == "acc1")
        g0 = _init(rng, x.shape, acc)
        g = g0.copy()
        rt.ok(bwd(rt, rt.f32(gy), saved, rt.f32(g), acc))
        rt.assert_close(g, ref + (g0 if acc else 0))


def test_activation_edge_semantics(rt):
    lib = rt.lib
    x = np.array([np.nan, -2.0, 0.0, 3.0], np.float32)
    y = np.empty_like(x)
    rt.ok(lib.tt_relu_fwd_f32(rt.f32(x), rt.f32(y), 4))
    assert np.isnan(y[0]) and list(y[1:]) == [0.0, 0.0, 3.0]
    rt.ok(lib.tt_clip_fwd_f32(rt.f32(x), rt.f32(y), 4, -1.0, 1.0))
    assert np.isnan(y[0]) and list(y[1:]) == [-1.0, 0.0, 1.0]
    assert lib.tt_clip_fwd_f32(rt.f32(x), rt.f32(y), 4, 1.0, -1.0) == lib.TT_ERR_ARG
    # unbounded clip (the code generator passes TT_INF)
    rt.ok(lib.tt_clip_fwd_f32(rt.f32(x[1:]), rt.f32(y[1:]), 3, 0.0, float("inf")))
    assert list(y[1:]) == [0.0, 0.0, 3.0]
    # leaky relu: slope alpha for x < 0 only, alpha may be negative
    g = np.ones(4, np.float32)
    gx = np.empty_like(g)
    rt.ok(lib.tt_leaky_relu_bwd_x_f32(rt.f32(g), rt.f32(x), rt.f32(gx), 4, -0.5, 0))
    assert list(gx[1:]) == [-0.5, 1.0, 1.0]
    # clip/relu gradients pass strictly inside the range
    yb = np.array([-1.0, -0.999, 0.999, 1.0], np.float32)
    rt.ok(lib.tt_clip_bwd_x_f32(rt.f32(g), rt.f32(yb), rt.f32(gx), 4, -1.0, 1.0, 0))
    assert list(gx) == [0.0, 1.0, 1.0, 0.0]
    # saturation: no overflow, no NaN
    big = np.array([-1e30, -100.0, 100.0, 1e30], np.float32)
    rt.ok(lib.tt_sigmoid_fwd_f32(rt.f32(big), rt.f32(y), 4))
    assert list(y) == [0.0, pytest.approx(np.exp(-100.0), rel=1e-6), 1.0, 1.0]
    rt.ok(lib.tt_tanh_fwd_f32(rt.f32(big), rt.f32(y), 4))
    assert list(y) == [-1.0, -1.0, 1.0, 1.0]
    assert lib.tt_relu_fwd_f32(rt.null, rt.f32(y), 4) == lib.TT_ERR_ARG
    assert lib.tt_relu_fwd_f32(rt.f32(x), rt.f32(y), -1) == lib.TT_ERR_ARG
    rt.ok(lib.tt_relu_fwd_f32(rt.null, rt.null, 0))


# ------------------------------------------------------------------ softmax

@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("rows,cols", [(1, 10), (3, 7), (1, 1), (2, 100)])
def test_softmax_fwd(rt, rng, rows, cols, inplace):
    x = (rng.standard_normal((rows, cols)) * 4).astype(np.float32)
    ref = torch.softmax(_t(x), dim=-1).numpy()
    y = x.copy() if inplace else np.full_like(x, np.nan)
    rt.ok(rt.lib.tt_softmax_fwd_f32(rt.f32(x if not inplace else y), rt.f32(y), rows, cols))
    rt.assert_close(y, ref)
    # large logits: no overflow
    x2 = x + np.float32(1000.0)
    rt.ok(rt.lib.tt_softmax_fwd_f32(rt.f32(x2), rt.f32(y), rows, cols))
    rt.assert_close(y, torch.softmax(_t(x2), dim=-1).numpy())


@pytest.mark.parametrize("mode", ["acc0", "acc1", "inplace"])
@pytest.mark.parametrize("rows,cols", [(1, 10), (3, 7), (2, 33)])
def test_softmax_bwd(rt, rng, rows, cols, mode):
    x = (rng.standard_normal((rows, cols)) * 2).astype(np.float32)
    y = np.empty_like(x)
    rt.ok(rt.lib.tt_softmax_fwd_f32(rt.f32(x), rt.f32(y), rows, cols))
    gy = rng.standard_normal(x.shape).astype(np.float32)
    # reference: the exact VJP of softmax at the float32 output y (in float64)
    yd, gd = y.astype(np.float64), gy.astype(np.float64)
    ref = yd * (gd - (gd * yd).sum(axis=-1, keepdims=True))
    if mode == "inplace":
        g = gy.copy()
        rt.ok(rt.lib.tt_softmax_bwd_x_f32(rt.f32(g), rt.f32(y), rt.f32(g), rows, cols, 0))
        rt.assert_close(g, ref)
    else:
        acc = int(mode == "acc1")
        g0 = _init(rng, x.shape, acc)
        g = g0.copy()
        rt.ok(rt.lib.tt_softmax_bwd_x_f32(rt.f32(gy), rt.f32(y), rt.f32(g), rows, cols, acc))
        rt.assert_close(g, ref + (g0 if acc else 0))
    # and it is the gradient torch computes through softmax
    xt = _t(x).requires_grad_(True)
    torch.softmax(xt, dim=-1).backward(_t(gy))
    rt.assert_close(ref, xt.grad.numpy(), rtol=1e-5)
