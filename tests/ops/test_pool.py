"""MaxPool, AveragePool and GlobalAveragePool against torch (forward, VJP, JVP) and, for the
ceil_mode / count_include_pad / asymmetric-pad cases, the forward against onnx.reference and
onnxruntime on a one-node ONNX model."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tinytrain.errors import ShapeError
from tinytrain.ir import get_op

from ._oracle import HYP, check_op, rel_err


# ---- torch oracles ------------------------------------------------------------------------

def onnx_out_len(n, k, s, b, e, ceil):
    """ONNX output length (the spec's formula, written out independently of pool.py)."""
    span = n + b + e - k
    if not ceil:
        return span // s + 1
    o = int(np.ceil(span / s)) + 1
    return o - 1 if (o - 1) * s >= n + b else o


def _geometry(spatial, kernel, strides, pads, ceil):
    nsp = len(spatial)
    outs = [onnx_out_len(spatial[d], kernel[d], strides[d], pads[d], pads[nsp + d], ceil)
            for d in range(nsp)]
    # Length the windows span, from the start of the begin padding.
    need = [(o - 1) * s + k for o, s, k in zip(outs, strides, kernel)]
    return outs, need


def _fpad(begin_end):
    """[(begin, end) per spatial dim] -> F.pad's last-dim-first list."""
    return [v for be in reversed(begin_end) for v in be]


def torch_maxpool(spatial, kernel, strides, pads, ceil):
    """-inf padding out to exactly the cells the windows cover, then an unpadded max pool."""
    nsp = len(spatial)
    _, need = _geometry(spatial, kernel, strides, pads, ceil)
    pad = _fpad([(pads[d], need[d] - spatial[d] - pads[d]) for d in range(nsp)])
    pool = F.max_pool1d if nsp == 1 else F.max_pool2d
    return lambda x: pool(F.pad(x, pad, value=-np.inf), kernel, strides)


def torch_avgpool(spatial, kernel, strides, pads, ceil, cip):
    """Window sums of the zero-padded input divided by window sums of a mask that marks the
    cells that count (the input, plus the explicit padding when count_include_pad)."""
    nsp = len(spatial)
    _, need = _geometry(spatial, kernel, strides, pads, ceil)
    conv = F.conv1d if nsp == 1 else F.conv2d
    pad = _fpad([(pads[d], need[d] - spatial[d] - pads[d]) for d in range(nsp)])
    ones = torch.ones(tuple(spatial), dtype=torch.float64)[None, None]
    if cip:
        mask = F.pad(F.pad(ones, _fpad([(pads[d], pads[nsp + d]) for d in range(nsp)]), value=1.0),
                     _fpad([(0, need[d] - spatial[d] - pads[d] - pads[nsp + d])
                            for d in range(nsp)]))
    else:
        mask = F.pad(ones, pad)
    box = torch.ones((1, 1) + tuple(kernel), dtype=torch.float64)
    count = conv(mask, box, stride=strides)

    def fn(x):
        c = x.shape[1]
        sums = conv(F.pad(x, pad), box.expand((c,) + box.shape[1:]), stride=strides, groups=c)
        return sums / count
    return fn


def torch_native(op, spatial, kernel, strides, pads, ceil, cip):
    """torch's own pooling where it can express the case (symmetric pads <= kernel / 2)."""
    nsp = len(spatial)
    if pads[:nsp] != pads[nsp:] or any(2 * p > k for p, k in zip(pads, kernel)):
        return None
    p = tuple(pads[:nsp])
    if op == "MaxPool":
        pool = F.max_pool1d if nsp == 1 else F.max_pool2d
        return lambda x: pool(x, kernel, strides, p, ceil_mode=bool(ceil))
    pool = F.avg_pool1d if nsp == 1 else F.avg_pool2d
    return lambda x: pool(x, kernel, strides, p, ceil_mode=bool(ceil), count_include_pad=bool(cip))


# ---- ONNX oracles -------------------------------------------------------------------------

def onnx_pool(op, x, attrs, reference=True):
    """(onnx.reference output or None, onnxruntime output or None) of a one-node model on
    float32 x."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    kw = {k: (list(v) if isinstance(v, tuple) else int(v)) for k, v in attrs.items()}
    node = helper.make_node(op, ["x"], ["y"], **kw)
    graph = helper.make_graph(
        [node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0] if reference else None
    try:
        import onnxruntime as ort
    except ImportError:
        return ref, None
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return ref, sess.run(None, {"x": x})[0]


def reference_is_wrong(op, spatial, kernel, strides, pads, ceil):
    """Cases where onnx.reference (1.23) departs from the ONNX spec; onnxruntime and torch
    agree with each other (and with us) on all of them:
    - AveragePool, ceil_mode: the padding added for windows that overrun the end padding is
      split between begin and end, shifting the input a cell when the overrun is >= 2.
    - MaxPool with every stride 1 and some padding takes an older code path that reads 2-D pads
      as (top, bottom, left, right) instead of (top, left, bottom, right), ignores 1-D pads
      and, with ceil_mode, counts the pads twice in the output size."""
    nsp = len(spatial)
    if op == "AveragePool":
        if not ceil:
            return False
        _, need = _geometry(spatial, kernel, strides, pads, ceil)
        return any(need[d] - spatial[d] - pads[d] - pads[nsp + d] >= 2 for d in range(nsp))
    if any(s != 1 for s in strides) or not any(pads):
        return False
    return nsp == 1 or pads[1] != pads[2] or bool(ceil)


def check_against_onnx(op, x, attrs, spatial, kernel, strides, pads, ceil):
    x32 = x.astype(np.float32)
    ours = get_op(op).forward([x32], attrs)
    ref, rt = onnx_pool(op, x32, attrs,
                        reference=not reference_is_wrong(op, spatial, kernel, strides, pads, ceil))
    if ref is not None:
        assert ref.shape == ours.shape and rel_err(ours, ref) <= 1e-6, "onnx.reference differs"
    if rt is not None:
        assert rt.shape == ours.shape and rel_err(ours, rt) <= 1e-6, "onnxruntime differs"


# ---- the cases ----------------------------------------------------------------------------

def run_case(op, n, c, spatial, kernel, strides, pads, ceil, cip, seed=0, onnx=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c) + tuple(spatial))
    attrs = {"kernel_shape": tuple(kernel), "strides": tuple(strides), "pads": tuple(pads),
             "ceil_mode": int(ceil)}
    if op == "AveragePool":
        attrs["count_include_pad"] = int(cip)
        ours = torch_avgpool(spatial, kernel, strides, pads, ceil, cip)
    else:
        ours = torch_maxpool(spatial, kernel, strides, pads, ceil)
    native = torch_native(op, spatial, kernel, strides, pads, ceil, cip)
    y = check_op(op, [x], attrs, native or ours, rng=rng)
    if native is not None:   # the explicit-padding oracle agrees with torch's own pooling
        assert rel_err(ours(torch.from_numpy(x)).numpy(), y) <= 1e-12
    if onnx:
        check_against_onnx(op, x, attrs, spatial, kernel, strides, pads, ceil)


GRID = [
    # spatial, kernel, strides, pads, ceil, cip
    ((8, 8), (2, 2), (2, 2), (0, 0, 0, 0), 0, 0),          # the common 2x2/2
    ((7, 7), (3, 3), (2, 2), (1, 1, 1, 1), 0, 0),
    ((7, 7), (3, 3), (2, 2), (1, 1, 1, 1), 0, 1),
    ((7, 6), (2, 2), (2, 2), (0, 0, 0, 0), 1, 0),          # ceil: last window half outside
    ((6, 6), (3, 3), (2, 2), (1, 1, 1, 1), 1, 1),          # ceil + count_include_pad
    ((6, 6), (3, 3), (2, 2), (1, 1, 1, 1), 1, 0),
    ((7, 7), (3, 3), (3, 3), (0, 0, 0, 0), 1, 0),          # ceil overrun of 2 cells
    ((7, 8), (3, 3), (3, 3), (1, 1, 1, 1), 1, 1),
    ((5, 6), (3, 2), (1, 2), (2, 0, 0, 1), 0, 1),          # asymmetric pads
    ((5, 6), (3, 2), (2, 3), (0, 1, 2, 1), 1, 0),
    ((5, 6), (3, 2), (2, 3), (0, 1, 2, 1), 1, 1),
    ((4, 4), (2, 2), (1, 1), (1, 1, 1, 1), 0, 0),          # overlapping windows (stride < k)
    ((4, 4), (4, 4), (4, 4), (0, 0, 0, 0), 0, 0),          # whole image
    ((9,), (3,), (2,), (1, 1), 0, 0),                       # 1-D
    ((9,), (3,), (2,), (1, 1), 1, 1),
    ((4,), (3,), (2,), (0, 2), 1, 0),                       # ceil: window in end pad dropped
    ((4,), (3,), (2,), (0, 2), 1, 1),
    ((10,), (4,), (3,), (2, 0), 1, 0),
]


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("case", GRID, ids=lambda c: f"{c[0]}k{c[1]}s{c[2]}p{c[3]}c{c[4]}i{c[5]}")
def test_pool_grid(op, case):
    run_case(op, 2, 3, *case)


@st.composite
def pool_cases(draw):
    nsp = draw(st.sampled_from([1, 2]))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    begin = tuple(draw(st.integers(0, min(2, k - 1))) for k in kernel)
    end = tuple(draw(st.integers(0, min(2, k - 1))) for k in kernel)
    spatial = tuple(draw(st.integers(max(1, k - b - e), 8))
                    for k, b, e in zip(kernel, begin, end))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), spatial, kernel, strides,
            begin + end, draw(st.integers(0, 1)), draw(st.integers(0, 1)))


@settings(**HYP)
@given(st.sampled_from(["MaxPool", "AveragePool"]), pool_cases(), st.integers(0, 2**16))
def test_pool_random(op, case, seed):
    run_case(op, *case, seed=seed)


def test_maxpool_ties_first_maximum():
    """With ties the first maximum in row-major window order gets the whole gradient, and
    overlapping windows that pick one cell add up."""
    op = get_op("MaxPool")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(2, 2, 5, 5)).astype(np.float64)
    attrs = {"kernel_shape": (3, 3), "strides": (1, 2), "pads": (1, 1, 0, 1), "ceil_mode": 0}
    y = op.forward([x], attrs)
    gy = rng.standard_normal(y.shape)
    g = op.vjp(0, gy, [x], None, attrs, [x.shape])
    want = np.zeros_like(x)
    for n, c, i, j in itertools.product(*map(range, y.shape)):
        best = None
        for di, dj in itertools.product(range(3), range(3)):
            h, w = i * 1 + di - 1, j * 2 + dj - 1
            inside = 0 <= h < 5 and 0 <= w < 5
            if inside and (best is None or x[n, c, h, w] > x[n, c, best[0], best[1]]):
                best = (h, w)
        assert y[n, c, i, j] == x[n, c, best[0], best[1]]
        want[n, c, best[0], best[1]] += gy[n, c, i, j]
    np.testing.assert_allclose(g, want, rtol=0, atol=1e-12)
    # torch's CPU kernel breaks ties the same way
    check_op("MaxPool", [x], attrs, torch_maxpool((5, 5), (3, 3), (1, 2), (1, 1, 0, 1), 0))


def test_maxpool_all_equal_window():
    op = get_op("MaxPool")
    x = np.ones((1, 1, 2, 2))
    a = {"kernel_shape": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0), "ceil_mode": 0}
    g = op.vjp(0, np.array([[[[5.0]]]]), [x], None, a, [x.shape])
    np.testing.assert_array_equal(g, [[[[5.0, 0.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 4, 7), (1, 2, 1, 1)])
def test_global_average_pool(shape):
    rng = np.random.default_rng(0)
    dims = tuple(range(2, len(shape)))
    check_op("GlobalAveragePool", [rng.standard_normal(shape)], {},
             lambda x: x.mean(dim=dims, keepdim=True), rng=rng)


def test_pool_batch_from_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 6, 6))
    a = {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "ceil_mode": 1,
         "count_include_pad": 0}
    for name in ("AveragePool", "GlobalAveragePool"):
        op = get_op(name)
        y = op.forward([x], a)
        gy = rng.standard_normal(y.shape)
        np.testing.assert_array_equal(op.vjp(0, gy, [None], None, a, [x.shape]),
                                      op.vjp(0, gy, [None], None, a, [(1,) + x.shape[1:]]))


def test_pool_macs():
    a = {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1), "ceil_mode": 0,
         "count_include_pad": 1}
    s = [(2, 4, 8, 8)]
    op = get_op("AveragePool")
    out = op.shape(s, a)
    assert out == (2, 4, 4, 4)
    assert op.macs(s, out, a) == op.backward_macs(0, s, out, a) == 2 * 4 * 16 * 9
    assert get_op("MaxPool").macs(s, out, a) == 0
    gap = get_op("GlobalAveragePool")
    assert gap.shape(s, {}) == (2, 4, 1, 1)
    assert gap.macs(s, (2, 4, 1, 1), {}) == 2 * 4 * 64


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("shape, attrs, msg", [
    ((1, 1, 4, 4), {"kernel_shape": (2, 2), "pads": (2, 0, 0, 0)}, "smaller than the kernel"),
    ((1, 1, 2, 2), {"kernel_shape": (3, 3)}, "larger than the padded input"),
    ((1, 1, 4, 4), {"kernel_shape": (2,)}, "kernel_shape"),
    ((1, 1, 4, 4), {"kernel_shape": (2, 2), "strides": (1,)}, "strides"),
    ((1, 4), {"kernel_shape": (2,)}, "wants an input"),
])
def test_pool_shape_errors(op, shape, attrs, msg):
    with pytest.raises(ShapeError, match=msg):
        get_op(op).shape([shape], attrs)
