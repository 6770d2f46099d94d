"""Pointwise activations against torch; Sigmoid/Tanh must stay quiet on extreme inputs."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tinytrain.ir import get_op

from ._oracle import HYP, check_op

ACTS = {
    "Relu": ({}, torch.relu),
    "Clip": ({"min": 0.0, "max": 6.0}, lambda x: torch.clamp(x, 0.0, 6.0)),     # ReLU6
    "LeakyRelu": ({"alpha": 0.1}, lambda x: F.leaky_relu(x, 0.1)),
    "Sigmoid": ({}, torch.sigmoid),
    "Tanh": ({}, torch.tanh),
}


def _input(rng, shape):
    # Spread wide enough to reach both sides of ReLU6 and the flat tails of Sigmoid/Tanh.
    # Random normals never land exactly on a kink (0, 6), where subgradient conventions differ.
    return 4 * rng.standard_normal(shape)


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("shape", [(4, 10), (2, 3, 5, 5), (3, 2, 7)])
def test_activation_grid(name, shape):
    rng = np.random.default_rng(0)
    attrs, fn = ACTS[name]
    check_op(name, [_input(rng, shape)], attrs, fn, rng=rng)


@pytest.mark.parametrize("alpha", [0.01, 0.3, -0.5, 2.0])
def test_leaky_relu_alphas(alpha):
    rng = np.random.default_rng(1)
    check_op("LeakyRelu", [_input(rng, (3, 8))], {"alpha": alpha},
             lambda x: F.leaky_relu(x, alpha), rng=rng)


@pytest.mark.parametrize("lo, hi", [(0.0, 6.0), (-1.0, 1.0), (-2.5, 0.5)])
def test_clip_ranges(lo, hi):
    rng = np.random.default_rng(2)
    check_op("Clip", [_input(rng, (3, 8))], {"min": lo, "max": hi},
             lambda x: torch.clamp(x, lo, hi), rng=rng)


@settings(**HYP)
@given(st.sampled_from(list(ACTS)),
       st.lists(st.integers(1, 5), min_size=2, max_size=4), st.integers(0, 2**16))
def test_activation_random(name, shape, seed):
    rng = np.random.default_rng(seed)
    attrs, fn = ACTS[name]
    check_op(name, [_input(rng, tuple(shape))], attrs, fn, rng=rng)


@pytest.mark.parametrize("name", ["Sigmoid", "Tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_do_not_overflow(name, dtype):
    op = get_op(name)
    x = np.array([[-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0]], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y = op.forward([x], {})
        g = op.vjp(0, np.ones_like(y), [None], y, {}, [x.shape])
        t = op.jvp([x], [np.ones_like(x)], y, {})
    assert y.dtype == g.dtype == t.dtype == dtype
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(g)) and np.all(np.isfinite(t))
    fn = torch.sigmoid if name == "Sigmoid" else torch.tanh
    # against float64 torch; atol covers float32 subnormals such as sigmoid(-100) ~ 3.7e-44
    want = fn(torch.from_numpy(x.astype(np.float64))).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-40)
    assert y[0, 0] >= (0 if name == "Sigmoid" else -1) and y[0, -1] == 1


def test_activation_costs():
    s = [(2, 3, 4, 4)]
    for name in ACTS:
        op = get_op(name)
        assert op.inplace and op.macs(s, s[0], {}) == 0
        assert op.backward_macs(0, s, s[0], {}) == 96
