"""Broadcasting Add / Mul (forward, reduce-sum backward) against torch (float64)."""
import os

import numpy as np
import pytest
import torch

SMALL = os.environ.get("TT_RT_SANITIZE") == "1"

# name: (shape of a, shape of b), numpy broadcasting
PATTERNS = {
    "same_4d": ((2, 3, 4, 5), (2, 3, 4, 5)),
    "same_1d": ((37,), (37,)),
    "channel_bias": ((6, 4, 5), (6, 1, 1)),
    "channel_bias_batch": ((1, 6, 4, 5), (6, 1, 1)),
    "scalar": ((3, 4, 5), ()),
    "scalar_1": ((3, 4, 5), (1,)),
    "scalar_first": ((1,), (2, 3, 4)),
    "row": ((3, 4, 7), (7,)),
    "row_2d": ((3, 8), (8,)),
    "column": ((3, 8), (3, 1)),
    "outer": ((3, 1), (1, 8)),
    "both_broadcast_3d": ((5, 1, 7), (1, 4, 1)),
    "middle": ((2, 3, 4, 5), (2, 1, 4, 1)),
    "a_broadcast": ((4, 1), (3, 4, 6)),
    "ones": ((1, 1, 1, 1), (1, 1, 1, 1)),
}


def _random_patterns(n, seed=3):
    r = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        rank = int(r.integers(1, 5))
        y = [int(v) for v in r.integers(1, 5, rank)]

        def operand():
            s = [1 if r.random() < 0.4 else d for d in y]
            return tuple(s[int(r.integers(0, rank + 1)):])  # maybe drop leading dims
        out[f"rand{i}"] = (operand(), tuple(y) if r.random() < 0.3 else operand())
    return out


PATTERNS.update(_random_patterns(16))
ALL_PATTERNS = PATTERNS
if SMALL:
    PATTERNS = {k: v for i, (k, v) in enumerate(ALL_PATTERNS.items()) if i % 3 == 0}


def descriptor(a_shape, b_shape):
    """tt_bcast4 fields, exactly as the code generator builds them."""
    y = np.broadcast_shapes(a_shape, b_shape)
    y4 = [1] * (4 - len(y)) + list(y)

    def strides(shape):
        s4 = [1] * (4 - len(shape)) + list(shape)
        st, acc = [0] * 4, 1
        for i in range(3, -1, -1):
            st[i] = 0 if (s4[i] == 1 and y4[i] != 1) else acc
            acc *= s4[i]
        return st
    return y, y4, strides(a_shape), strides(b_shape)


def _data(rng, name):
    sa, sb = ALL_PATTERNS[name]
    a = np.asarray(rng.standard_normal(sa), dtype=np.float32).reshape(sa)
    b = np.asarray(rng.standard_normal(sb), dtype=np.float32).reshape(sb)
    y_shape, y4, sa4, sb4 = descriptor(sa, sb)
    gy = rng.standard_normal(y_shape).astype(np.float32).reshape(y_shape)
    return a, b, gy, y4, sa4, sb4


def _t(a):
    return torch.from_numpy(a.copy()).double().requires_grad_(True)


OPS = {"add": (lambda a, b: a + b), "mul": (lambda a, b: a * b)}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("name", list(PATTERNS))
def test_binary_fwd(rt, rng, name, op):
    a, b, gy, y4, sa4, sb4 = _data(rng, name)
    d = rt.bcast(y4, sa4, sb4)
    ref = OPS[op](a.astype(np.float64), b.astype(np.float64))
    y = np.full(ref.shape, np.nan, np.float32)
    fwd = rt.lib.tt_add_fwd_f32 if op == "add" else rt.lib.tt_mul_fwd_f32
    rt.ok(fwd(d, rt.f32(a), rt.f32(b), rt.f32(y)))
    rt.assert_close(y, ref)
    # in place over a full-shape operand (residual joins)
    for which, src in ((0, a), (1, b)):
        if src.shape == ref.shape:
            y = src.copy()
            args = (y, b) if which == 0 else (a, y)
            rt.ok(fwd(d, rt.f32(args[0]), rt.f32(args[1]), rt.f32(y)))
            rt.assert_close(y, ref, what=f"in place over operand {which}")


@pytest.mark.parametrize("acc", [0, 1])
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("name", list(PATTERNS))
def test_binary_bwd(rt, rng, name, op, acc):
    a, b, gy, y4, sa4, sb4 = _data(rng, name)
    d = rt.bcast(y4, sa4, sb4)
    at, bt = _t(a), _t(b)
    OPS[op](at, bt).backward(torch.from_numpy(gy).double())
    for which, (src, ref) in enumerate(((a, at.grad.numpy()), (b, bt.grad.numpy()))):
        g0 = (rng.standard_normal(src.shape).astype(np.float32).reshape(src.shape) if acc
              else np.full(src.shape, np.nan, np.float32))
        g = g0.copy()
        if op == "add":
            rt.ok(rt.lib.tt_add_bwd_f32(d, rt.f32(gy), rt.f32(g), which, acc))
        else:
            other = b if which == 0 else a
            rt.ok(rt.lib.tt_mul_bwd_f32(d, rt.f32(gy), rt.f32(other), rt.f32(g), which, acc))
        rt.assert_close(g, ref + (g0 if acc else 0), what=f"grad of operand {which}")


@pytest.mark.parametrize("op", list(OPS))
def test_binary_bwd_in_place_over_gy(rt, rng, op):
    # the memory planner writes the gradient of a full-shape operand over gy
    a, b, gy, y4, sa4, sb4 = _data(rng, "channel_bias")
    d = rt.bcast(y4, sa4, sb4)
    at, bt = _t(a), _t(b)
    OPS[op](at, bt).backward(torch.from_numpy(gy).double())
    g = gy.copy()
    if op == "add":
        rt.ok(rt.lib.tt_add_bwd_f32(d, rt.f32(g), rt.f32(g), 0, 0))
    else:
        rt.ok(rt.lib.tt_mul_bwd_f32(d, rt.f32(g), rt.f32(b), rt.f32(g), 0, 0))
    rt.assert_close(g, at.grad.numpy())


def test_reshape_accumulate_descriptor(rt, rng):
    # the code generator accumulates a reshape's gradient with shape {1,1,1,n}, strides {0,0,0,1}
    n = 50
    gy = rng.standard_normal(n).astype(np.float32)
    g0 = rng.standard_normal(n).astype(np.float32)
    g = g0.copy()
    rt.ok(rt.lib.tt_add_bwd_f32(rt.bcast([1, 1, 1, n], [0, 0, 0, 1], [0, 0, 0, 1]), rt.f32(gy),
                                rt.f32(g), 0, 1))
    rt.assert_close(g, gy.astype(np.float64) + g0)


def test_binary_rejects_bad_arguments(rt):
    lib = rt.lib
    x = np.zeros(8, np.float32)
    assert lib.tt_add_fwd_f32(rt.bcast([1, 1, 2, 0], [0, 0, 1, 1], [0, 0, 1, 1]), rt.f32(x), rt.f32(x),
                              rt.f32(x)) == lib.TT_ERR_SHAPE
    assert lib.tt_add_fwd_f32(rt.bcast([1, 1, 2, 4], [0, 0, 4, -1], [0, 0, 4, 1]), rt.f32(x), rt.f32(x),
                              rt.f32(x)) == lib.TT_ERR_SHAPE
    d = rt.bcast([1, 1, 2, 4], [0, 0, 4, 1], [0, 0, 4, 1])
    assert lib.tt_mul_fwd_f32(d, rt.null, rt.f32(x), rt.f32(x)) == lib.TT_ERR_ARG
    assert lib.tt_add_bwd_f32(d, rt.f32(x), rt.f32(x), 2, 0) == lib.TT_ERR_ARG
    assert lib.tt_mul_bwd_f32(d, rt.f32(x), rt.null, rt.f32(x), 0, 0) == lib.TT_ERR_ARG
    assert lib.tt_mul_bwd_f32(d, rt.f32(x), rt.f32(x), rt.f32(x), 0, 7) == lib.TT_ERR_ARG
