"""Reshape (also Flatten / Squeeze / Unsqueeze after import): (N, ...) -> (N, *shape)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytrain.errors import ShapeError
from tinytrain.ir import get_op

from ._oracle import HYP, check_op


def run_case(in_shape, target, seed=0):
    rng = np.random.default_rng(seed)
    check_op("Reshape", [rng.standard_normal(in_shape)], {"shape": tuple(target)},
             lambda x: x.reshape((x.shape[0],) + tuple(target)), rng=rng)


@pytest.mark.parametrize("in_shape, target", [
    ((2, 3, 4, 4), (48,)),          # Flatten
    ((2, 48), (3, 4, 4)),
    ((2, 5), (5, 1, 1)),            # Unsqueeze
    ((2, 3, 1, 1), (3,)),           # Squeeze
    ((1, 6, 2), (2, 6)),
    ((3, 7), (7,)),                 # identity
])
def test_reshape_grid(in_shape, target):
    run_case(in_shape, target)


@st.composite
def reshape_case(draw):
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    perm = draw(st.permutations(dims))
    cut = draw(st.integers(0, len(perm)))
    target = [int(np.prod(perm[:cut]))] + list(perm[cut:]) if cut else list(perm)
    return (draw(st.integers(1, 3)),) + tuple(dims), tuple(target)


@settings(**HYP)
@given(reshape_case(), st.integers(0, 2**16))
def test_reshape_random(case, seed):
    run_case(*case, seed=seed)


def test_reshape_batch_from_gradient_and_costs():
    op = get_op("Reshape")
    gy = np.arange(24.0).reshape(2, 12)
    g = op.vjp(0, gy, [None], None, {"shape": (12,)}, [(1, 3, 4)])   # nominal batch 1
    assert g.shape == (2, 3, 4)
    assert op.macs([(2, 3, 4)], (2, 12), {"shape": (12,)}) == 0
    assert op.backward_macs(0, [(2, 3, 4)], (2, 12), {"shape": (12,)}) == 0


@pytest.mark.parametrize("in_shape, target, msg", [
    ((2, 12), (5,), "12 elements"),
    ((2, 12), (-1,), "positive"),
    ((2, 12), (0, 12), "positive"),
])
def test_reshape_shape_errors(in_shape, target, msg):
    with pytest.raises(ShapeError, match=msg):
        get_op("Reshape").shape([in_shape], {"shape": target})
