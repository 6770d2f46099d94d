"""Add and Mul with numpy/ONNX broadcasting against torch: the VJP of a broadcast input is
the output gradient summed back to that input's shape."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytrain.errors import ShapeError
from tinytrain.ir import get_op

from ._oracle import HYP, check_op

FNS = {"Add": lambda a, b: a + b, "Mul": lambda a, b: a * b}

PATTERNS = [
    ((2, 3, 4, 4), (3, 1, 1)),        # per-channel bias / scale parameter
    ((3, 1, 1), (2, 3, 4, 4)),        # ... as the first input
    ((2, 3, 4, 4), (2, 3, 4, 4)),     # residual join
    ((2, 3, 4, 4), (1, 3, 1, 1)),
    ((2, 1, 4, 4), (2, 3, 1, 1)),     # both broadcast
    ((4, 10), (10,)),
    ((4, 10), (1,)),
    ((2, 3, 5), ()),                  # scalar constant
    ((2, 6), (2, 1)),
]


def run_case(name, sa, sb, seed=0):
    rng = np.random.default_rng(seed)
    check_op(name, [rng.standard_normal(sa), rng.standard_normal(sb)], {}, FNS[name], rng=rng)


@pytest.mark.parametrize("name", list(FNS))
@pytest.mark.parametrize("sa, sb", PATTERNS, ids=str)
def test_elementwise_grid(name, sa, sb):
    run_case(name, sa, sb)


@st.composite
def broadcast_pair(draw):
    base = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))

    def derive():
        kept = base[len(base) - draw(st.integers(0, len(base))):]
        return tuple(d if draw(st.booleans()) else 1 for d in kept)
    full = tuple(base)
    pair = [full, derive()] if draw(st.booleans()) else [derive(), derive()]
    if draw(st.booleans()):
        pair.reverse()
    return tuple(pair)


@settings(**HYP)
@given(st.sampled_from(list(FNS)), broadcast_pair(), st.integers(0, 2**16))
def test_elementwise_random(name, pair, seed):
    run_case(name, *pair, seed)


def test_float64_constant_keeps_float32_activation():
    x = np.ones((2, 3, 4, 4), dtype=np.float32)
    c = np.full((3, 1, 1), 0.5)
    for name in FNS:
        op = get_op(name)
        assert op.forward([x, c], {}).dtype == np.float32
        assert op.forward([c, x], {}).dtype == np.float32
        assert op.inplace


def test_elementwise_macs():
    add, mul = get_op("Add"), get_op("Mul")
    s = [(2, 3, 4, 4), (3, 1, 1)]
    out = add.shape(s, {})
    assert out == (2, 3, 4, 4)
    assert add.macs(s, out, {}) == mul.macs(s, out, {}) == 96
    assert add.backward_macs(0, s, out, {}) == 0          # pass-through
    assert add.backward_macs(1, s, out, {}) == 96         # sum over N, H, W
    assert mul.backward_macs(0, s, out, {}) == mul.backward_macs(1, s, out, {}) == 96


@pytest.mark.parametrize("name", list(FNS))
def test_elementwise_shape_error(name):
    with pytest.raises(ShapeError, match="cannot broadcast"):
        get_op(name).shape([(2, 3), (4,)], {})
