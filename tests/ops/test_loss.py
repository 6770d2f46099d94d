"""The two losses against torch: SoftmaxCrossEntropy vs F.cross_entropy (mean) and MSE vs
F.mse_loss (mean). Only the prediction is differentiable; labels and targets are data."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tinytrain.errors import ShapeError
from tinytrain.ir import get_op

from ._oracle import HYP, check_op


def xent_case(n, k, scale, seed=0):
    rng = np.random.default_rng(seed)
    z = scale * rng.standard_normal((n, k))
    lab = rng.integers(0, k, size=n)
    # A confident, correct prediction has a gradient p - 1 ~ 1e-12 computed as a difference of
    # O(1) numbers, in torch as here: only its absolute error (~1e-16) is meaningful, so the
    # relative error is taken against at least 1e-9.
    check_op("SoftmaxCrossEntropy", [z, lab], {}, lambda z, l: F.cross_entropy(z, l), rng=rng,
             floor=1e-9)


def mse_case(shape, seed=0):
    rng = np.random.default_rng(seed)
    check_op("MSE", [rng.standard_normal(shape), rng.standard_normal(shape)], {},
             lambda p, t: F.mse_loss(p, t), rng=rng)


@pytest.mark.parametrize("n, k, scale", [(1, 10, 1.0), (8, 10, 1.0), (5, 3, 10.0), (4, 2, 0.1)])
def test_cross_entropy_grid(n, k, scale):
    xent_case(n, k, scale)


@settings(**HYP)
@given(st.integers(1, 8), st.integers(2, 12), st.floats(0.1, 30.0), st.integers(0, 2**16))
def test_cross_entropy_random(n, k, scale, seed):
    xent_case(n, k, scale, seed)


def test_cross_entropy_extreme_logits():
    op = get_op("SoftmaxCrossEntropy")
    z = np.array([[1000.0, -1000.0, 0.0], [-100.0, 100.0, 100.0]], dtype=np.float32)
    lab = np.array([1, 0])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        loss = op.forward([z, lab], {})
        g = op.vjp(0, np.float32(1.0), [z, lab], None, {}, [z.shape, lab.shape])
    ref = F.cross_entropy(torch.from_numpy(z.astype(np.float64)), torch.from_numpy(lab))
    assert loss.dtype == g.dtype == np.float32
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-6)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("shape", [(4, 10), (1, 1), (3, 2, 5)])
def test_mse_grid(shape):
    mse_case(shape)


@settings(**HYP)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(0, 2**16))
def test_mse_random(shape, seed):
    mse_case((2,) + tuple(shape), seed)


@pytest.mark.parametrize("name, shapes, msg", [
    ("SoftmaxCrossEntropy", [(4, 10), (3,)], "labels"),
    ("SoftmaxCrossEntropy", [(4, 10, 2), (4,)], "logits"),
    ("MSE", [(4, 10), (4, 9)], "one shape"),
])
def test_loss_shape_errors(name, shapes, msg):
    with pytest.raises(ShapeError, match=msg):
        get_op(name).shape(shapes, {})


def test_cross_entropy_bad_label():
    with pytest.raises(ShapeError, match="class indices"):
        get_op("SoftmaxCrossEntropy").forward([np.zeros((2, 3)), np.array([0, 3])], {})
