"""Shared checks for op tests: one numpy op against a PyTorch function of the same inputs.

`check_op` runs, for one set of inputs and attributes:
  - the shape rule against the forward's output shape;
  - the forward (float64) against torch, and in float32 (dtype kept, close to float64);
  - every VJP against torch.autograd, handing the VJP ONLY the inputs its `vjp_needs` declares
    (the rest are None, and y is None unless OUT is declared), as the training program will;
  - the JVP against torch.func.jvp, with every tangent at once and with each one alone;
  - that the MAC counts are non-negative ints.
Errors are norm-based: |a - b| / |b| over the whole array.
"""
from __future__ import annotations

import numpy as np
import torch

from tinytrain.ir import OUT, get_op

TOL = 1e-6       # float64 against torch
TOL32 = 1e-4     # float32 against our own float64


def rel_err(a, b, floor=0.0) -> float:
    """|a - b| / max(|b|, floor) (2-norms over the whole array; absolute when |b| is 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    den = max(float(np.linalg.norm(b)), floor)
    num = float(np.linalg.norm(a - b))
    return num / den if den > 0 else num


def close32(a, b) -> bool:
    """float32 result against the float64 one: relative, with an absolute floor of 1e-6 per
    element for results that are tiny differences of O(1) terms (float32 cannot do better)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.linalg.norm(a - b) <= TOL32 * np.linalg.norm(b) + 1e-6 * np.sqrt(b.size))


def _is_float(a) -> bool:
    return a is not None and np.issubdtype(np.asarray(a).dtype, np.floating)


def _as(a, dtype):
    return np.asarray(a, dtype=dtype) if _is_float(a) else a


def _t(a):
    return torch.from_numpy(np.array(a))   # a copy: contiguous, and 0-d stays 0-d


def _masked(op, wrt, xs, y):
    needs = op.vjp_needs[wrt]
    return [x if i in needs else None for i, x in enumerate(xs)], (y if OUT in needs else None)


def check_op(name, xs, attrs, torch_fn, *, rng=None, tol=TOL, floor=0.0, f32=True):
    """torch_fn(*torch_tensors) -> torch tensor; it gets every input (float ones as float64).
    `floor` bounds the denominator of the relative error from below (see test_loss.py)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    op = get_op(name)
    xs = [_as(x, np.float64) for x in xs]
    shapes = [tuple(x.shape) for x in xs]

    y = op.forward(xs, attrs)
    assert y.dtype == np.float64, f"{name} forward turned float64 into {y.dtype}"
    assert tuple(y.shape) == tuple(op.shape(shapes, attrs)), "shape rule disagrees with forward"
    ty = torch_fn(*[_t(x) for x in xs]).detach().numpy()
    assert rel_err(y, ty, floor) <= tol, f"{name} forward: rel err {rel_err(y, ty, floor):.3g}"

    diff = [i for i in op.differentiable if i < len(xs) and xs[i] is not None]
    gy = np.asarray(rng.standard_normal(y.shape))

    # ---- VJP vs torch.autograd
    leaves = [_t(x).clone().requires_grad_(i in diff) for i, x in enumerate(xs)]
    out = torch_fn(*leaves)
    grads = torch.autograd.grad(out, [leaves[i] for i in diff], _t(gy), allow_unused=True)
    gxs = {}
    for wrt, tg in zip(diff, grads):
        tg = np.zeros(shapes[wrt]) if tg is None else tg.numpy()
        mx, my = _masked(op, wrt, xs, y)
        g = np.asarray(op.vjp(wrt, gy, mx, my, attrs, shapes))
        assert g.dtype == np.float64, f"{name} vjp wrt {wrt} gave {g.dtype}"
        assert g.shape == shapes[wrt], f"{name} vjp wrt {wrt}: shape {g.shape} != {shapes[wrt]}"
        err = rel_err(g, tg, floor)
        assert err <= tol, f"{name} vjp wrt {wrt}: rel err {err:.3g}"
        gxs[wrt] = g

    # ---- JVP vs torch.func.jvp: all tangents, then each alone
    tans = {i: rng.standard_normal(shapes[i]) for i in diff}

    def f(*d):
        full = [_t(x) for x in xs]
        for i, v in zip(diff, d):
            full[i] = v
        return torch_fn(*full)

    subsets = [diff] + ([[i] for i in diff] if len(diff) > 1 else [])
    for sub in subsets:
        tt = tuple(_t(tans[i]) if i in sub else torch.zeros(shapes[i], dtype=torch.float64)
                   for i in diff)
        _, ref = torch.func.jvp(f, tuple(_t(xs[i]) for i in diff), tt)
        txs = [tans[i] if i in sub else None for i in range(len(xs))]
        t = np.asarray(op.jvp(xs, txs, y, attrs))
        assert t.dtype == np.float64 and t.shape == y.shape, f"{name} jvp: {t.dtype} {t.shape}"
        err = rel_err(t, ref.numpy(), floor)
        assert err <= tol, f"{name} jvp with tangents on {sub}: rel err {err:.3g}"

    # ---- costs
    m = op.macs(shapes, y.shape, attrs)
    assert isinstance(m, int) and m >= 0
    for wrt in diff:
        b = op.backward_macs(wrt, shapes, y.shape, attrs)
        assert isinstance(b, int) and b >= 0

    if f32:
        _check_f32(op, xs, attrs, y, gy, gxs, tans, shapes)
    return y


def _check_f32(op, xs, attrs, y64, gy, gxs, tans, shapes):
    """float32 in -> float32 out everywhere, and close to the float64 results."""
    xs32 = [_as(x, np.float32) for x in xs]
    y = op.forward(xs32, attrs)
    assert y.dtype == np.float32, f"{op.name} forward turned float32 into {y.dtype}"
    assert close32(y, y64), f"{op.name} float32 forward far from float64"
    y = np.asarray(y)
    gy32 = np.asarray(gy, dtype=np.float32)
    for wrt, g64 in gxs.items():
        mx, my = _masked(op, wrt, xs32, y)
        g = np.asarray(op.vjp(wrt, gy32, mx, my, attrs, shapes))
        assert g.dtype == np.float32, f"{op.name} vjp wrt {wrt} turned float32 into {g.dtype}"
        assert close32(g, g64), f"{op.name} float32 vjp wrt {wrt} far from float64"
    txs = [_as(tans.get(i), np.float32) for i in range(len(xs))]
    t = np.asarray(op.jvp(xs32, txs, y, attrs))
    assert t.dtype == np.float32, f"{op.name} jvp turned float32 into {t.dtype}"
    t64 = op.jvp(xs, [tans.get(i) for i in range(len(xs))], y64, attrs)
    assert close32(t, t64), f"{op.name} float32 jvp far from float64"


HYP = dict(max_examples=25, deadline=None, derandomize=True)
