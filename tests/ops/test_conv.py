"""Conv: forward, VJPs (x, W, b) and JVP against torch for 1-D/2-D, strides, asymmetric pads,
groups (dense, 2 groups, depthwise with and without a channel multiplier, pointwise), bias."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tinytrain.errors import ShapeError
from tinytrain.ir import get_op

from ._oracle import HYP, check_op


def torch_conv(strides, pads, group):
    """ONNX Conv in torch: explicit (possibly asymmetric) zero padding, then an unpadded conv."""
    nsp = len(strides)

    def fn(x, w, b=None):
        if nsp == 1:
            return F.conv1d(F.pad(x, (pads[0], pads[1])), w, b, stride=strides, groups=group)
        return F.conv2d(F.pad(x, (pads[1], pads[3], pads[0], pads[2])), w, b,
                        stride=strides, groups=group)
    return fn


def run_case(n, c, m, spatial, kernel, strides, pads, group, bias, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c) + tuple(spatial))
    w = rng.standard_normal((m, c // group) + tuple(kernel))
    xs = [x, w] + ([rng.standard_normal(m)] if bias else [])
    attrs = {"strides": tuple(strides), "pads": tuple(pads), "group": group}
    return check_op("Conv", xs, attrs, torch_conv(strides, pads, group), rng=rng)


GRID = [
    # n, c, m, spatial, kernel, strides, pads, group, bias
    (2, 3, 4, (6, 6), (3, 3), (1, 1), (1, 1, 1, 1), 1, True),        # 3x3 same
    (2, 3, 4, (7, 6), (3, 3), (2, 2), (1, 1, 1, 1), 1, False),       # stride 2
    (1, 2, 3, (8, 7), (3, 2), (3, 2), (0, 2, 1, 0), 1, True),        # asymmetric everything
    (2, 4, 6, (6, 5), (3, 3), (1, 2), (2, 0, 0, 2), 2, True),        # 2 groups
    (2, 4, 4, (6, 6), (3, 3), (1, 1), (1, 1, 1, 1), 4, True),        # depthwise
    (2, 4, 4, (7, 7), (3, 3), (2, 2), (1, 1, 1, 1), 4, False),       # depthwise stride 2
    (1, 3, 6, (5, 5), (3, 3), (1, 1), (1, 1, 1, 1), 3, True),        # depthwise multiplier 2
    (2, 5, 7, (4, 4), (1, 1), (1, 1), (0, 0, 0, 0), 1, True),        # pointwise
    (2, 4, 4, (5, 5), (1, 1), (2, 2), (0, 0, 0, 0), 1, False),       # pointwise stride 2 shortcut
    (1, 2, 2, (5, 5), (5, 5), (1, 1), (2, 2, 2, 2), 1, True),        # 5x5 kernel
    (1, 2, 3, (3, 3), (5, 5), (3, 3), (1, 2, 2, 1), 1, True),        # kernel > input, padded
    (1, 1, 2, (6, 6), (4, 4), (3, 1), (0, 0, 2, 1), 1, False),       # stride 3, end pads only
    (2, 3, 4, (9,), (3,), (1,), (1, 1), 1, True),                     # 1-D
    (2, 4, 4, (11,), (5,), (2,), (2, 0), 4, True),                    # 1-D depthwise asym
    (1, 4, 6, (7,), (2,), (3,), (0, 1), 2, False),                    # 1-D groups stride 3
    (2, 3, 5, (6,), (1,), (1,), (0, 0), 1, True),                     # 1-D pointwise
]


@pytest.mark.parametrize("case", GRID, ids=lambda c: f"{c[3]}k{c[4]}s{c[5]}p{c[6]}g{c[7]}")
def test_conv_grid(case):
    run_case(*case)


@st.composite
def conv_cases(draw):
    nsp = draw(st.sampled_from([1, 2]))
    kind = draw(st.sampled_from(["dense", "groups2", "depthwise", "pointwise"]))
    if kind == "groups2":
        group, c, m = 2, 2 * draw(st.integers(1, 2)), 2 * draw(st.integers(1, 3))
    elif kind == "depthwise":
        c = draw(st.integers(1, 4))
        group, m = c, c * draw(st.integers(1, 2))
    else:
        group, c, m = 1, draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kernel = tuple(1 if kind == "pointwise" else draw(st.integers(1, 5)) for _ in range(nsp))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    sym = draw(st.booleans())
    begin = tuple(draw(st.integers(0, 2)) for _ in range(nsp))
    end = begin if sym else tuple(draw(st.integers(0, 2)) for _ in range(nsp))
    spatial = tuple(draw(st.integers(max(1, k - b - e), 9))
                    for k, b, e in zip(kernel, begin, end))
    n = draw(st.integers(1, 3))
    return n, c, m, spatial, kernel, strides, begin + end, group, draw(st.booleans())


@settings(**HYP)
@given(conv_cases(), st.integers(0, 2**16))
def test_conv_random(case, seed):
    run_case(*case, seed=seed)


def test_conv_batch_from_gradient():
    # x_shapes may record the IR's nominal batch (1); the VJP takes N from gy.
    op = get_op("Conv")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    attrs = {"strides": (1, 1), "pads": (1, 1, 1, 1), "group": 1}
    gy = rng.standard_normal((3, 4, 5, 5))
    full = op.vjp(0, gy, [None, w], None, attrs, [x.shape, w.shape])
    nominal = op.vjp(0, gy, [None, w], None, attrs, [(1, 2, 5, 5), w.shape])
    np.testing.assert_array_equal(full, nominal)


def test_conv_macs():
    op = get_op("Conv")
    a = {"strides": (1, 1), "pads": (1, 1, 1, 1), "group": 1}
    s = [(2, 3, 8, 8), (16, 3, 3, 3), (16,)]
    out = op.shape(s, a)
    assert out == (2, 16, 8, 8)
    assert op.macs(s, out, a) == 2 * 16 * 64 * 3 * 9
    assert op.backward_macs(0, s, out, a) == op.backward_macs(1, s, out, a) == 2 * 16 * 64 * 27
    assert op.backward_macs(2, s, out, a) == 2 * 16 * 64
    dw = {"strides": (2, 2), "pads": (1, 1, 1, 1), "group": 8}
    s = [(1, 8, 8, 8), (8, 1, 3, 3)]
    assert op.macs(s, op.shape(s, dw), dw) == 8 * 16 * 9
    one = {"strides": (1,), "pads": (0, 0), "group": 1}
    s = [(1, 4, 10), (2, 4, 3)]
    assert op.macs(s, op.shape(s, one), one) == 2 * 8 * 12


@pytest.mark.parametrize("shapes, attrs, msg", [
    ([(1, 3, 8, 8), (4, 2, 3, 3)], {"group": 1}, "input channels"),
    ([(1, 4, 8, 8), (6, 2, 3, 3)], {"group": 3}, "divide"),
    ([(1, 3, 8, 8), (4, 3, 3)], {}, "same rank"),
    ([(1, 3, 2, 2), (4, 3, 3, 3)], {"pads": (0, 0, 0, 0)}, "larger than the padded input"),
    ([(1, 3, 8, 8), (4, 3, 3, 3), (5,)], {}, "bias"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"pads": (1, 1)}, "pads"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"strides": (0, 1)}, "strides"),
    ([(3, 8), (4, 3)], {}, "[N, C, L] or [N, C, H, W]"),
])
def test_conv_shape_errors(shapes, attrs, msg):
    with pytest.raises(ShapeError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        get_op("Conv").shape(shapes, attrs)
