"""Softmax over the last axis against torch; extreme logits must not overflow."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tinytrain.errors import ShapeError
from tinytrain.ir import get_op

from ._oracle import HYP, check_op


def run_case(shape, scale, seed=0):
    rng = np.random.default_rng(seed)
    check_op("Softmax", [scale * rng.standard_normal(shape)], {"axis": -1},
             lambda x: F.softmax(x, dim=-1), rng=rng)


@pytest.mark.parametrize("shape, scale", [((4, 10), 1.0), ((2, 3, 5), 3.0), ((1, 2), 0.1),
                                          ((3, 1), 1.0)])
def test_softmax_grid(shape, scale):
    run_case(shape, scale)


@settings(**HYP)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=3), st.floats(0.1, 5.0),
       st.integers(0, 2**16))
def test_softmax_random(shape, scale, seed):
    run_case(tuple(shape), scale, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_extreme_logits(dtype):
    op = get_op("Softmax")
    x = np.array([[1000.0, -1000.0, 0.0], [-100.0, 100.0, 100.0]], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y = op.forward([x], {"axis": -1})
        g = op.vjp(0, np.ones_like(y), [None], y, {"axis": -1}, [x.shape])
    assert y.dtype == g.dtype == dtype and np.all(np.isfinite(g))
    want = F.softmax(torch.from_numpy(x.astype(np.float64)), -1).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-30)


def test_softmax_costs_and_inplace():
    op = get_op("Softmax")
    # not in place: the C softmax reads its whole input row after writing outputs
    assert not op.inplace and op.macs([(4, 10)], (4, 10), {"axis": -1}) == 80


@pytest.mark.parametrize("shape, axis, msg", [((4, 10), 0, "last axis"), ((10,), -1, "batch")])
def test_softmax_shape_errors(shape, axis, msg):
    with pytest.raises(ShapeError, match=msg):
        get_op("Softmax").shape([shape], {"axis": axis})
