"""Gemm y = x W^T + b against torch.nn.functional.linear."""
import numpy as np
import pytest
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from tinytrain.errors import ShapeError
from tinytrain.ir import get_op

from ._oracle import HYP, check_op


def run_case(n, k, m, bias, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((n, k)), rng.standard_normal((m, k))]
    if bias:
        xs.append(rng.standard_normal(m))
    check_op("Gemm", xs, {}, lambda x, w, b=None: F.linear(x, w, b), rng=rng)


@pytest.mark.parametrize("n, k, m, bias", [
    (1, 64, 32, True), (8, 64, 32, True), (5, 32, 10, False), (3, 1, 1, True), (2, 7, 3, False),
])
def test_gemm_grid(n, k, m, bias):
    run_case(n, k, m, bias)


@settings(**HYP)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 20), st.booleans(),
       st.integers(0, 2**16))
def test_gemm_random(n, k, m, bias, seed):
    run_case(n, k, m, bias, seed)


def test_gemm_macs():
    op = get_op("Gemm")
    s = [(4, 64, ), (32, 64), (32,)]
    out = op.shape(s, {})
    assert out == (4, 32)
    assert op.macs(s, out, {}) == op.backward_macs(0, s, out, {}) == 4 * 32 * 64
    assert op.backward_macs(1, s, out, {}) == 4 * 32 * 64
    assert op.backward_macs(2, s, out, {}) == 4 * 32


@pytest.mark.parametrize("shapes, msg", [
    ([(4, 10), (3, 9)], "features"),
    ([(4, 10, 1), (3, 10)], "2-D"),
    ([(4, 10), (3, 10), (4,)], "bias"),
])
def test_gemm_shape_errors(shapes, msg):
    with pytest.raises(ShapeError, match=msg):
        get_op("Gemm").shape(shapes, {})
