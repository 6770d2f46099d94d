"""Gemm: y = x @ W^T + b, with x [N, K], W [M, K] (ONNX transB=1 layout), b [M] optional.

ONNX MatMul (+Add), Gemm with any transA/transB/alpha/beta are normalised to this form at import
(alpha/beta folded into the initializers), so kernels see one layout: W rows are contiguous
along K, the dot-product direction.
"""
import numpy as np

from ..errors import ShapeError
from ..ir.registry import OpDef, register_op


def _shape(s, attrs):
    x, w = s[0], s[1]
    if len(x) != 2 or len(w) != 2:
        raise ShapeError(f"Gemm wants a 2-D input and a 2-D weight, got {x} and {w}")
    if x[1] != w[1]:
        raise ShapeError(f"input has {x[1]} features but the weight expects {w[1]} "
                         f"(weight shape {w} is [out, in])")
    if len(s) > 2 and tuple(s[2]) != (w[0],):
        raise ShapeError(f"bias shape {s[2]} does not match {w[0]} outputs")
    return (x[0], w[0])


def _forward(xs, attrs):
    y = xs[0] @ xs[1].T
    if len(xs) > 2 and xs[2] is not None:
        y = y + xs[2]
    return y


def _vjp(wrt, gy, xs, y, attrs, x_shapes):
    if wrt == 0:
        return gy @ xs[1]
    if wrt == 1:
        return gy.T @ xs[0]
    return gy.sum(axis=0)


def _jvp(xs, txs, y, attrs):
    x, w = xs[0], xs[1]
    tx, tw = txs[0], txs[1]
    tb = txs[2] if len(txs) > 2 else None
    t = np.zeros_like(y)
    if tx is not None:
        t = t + tx @ w.T
    if tw is not None:
        t = t + x @ tw.T
    if tb is not None:
        t = t + tb
    return t


def _macs(s, out, attrs):
    return int(s[0][0] * s[1][0] * s[1][1])


def _vjp_macs(wrt, s, out, attrs):
    return _macs(s, out, attrs) if wrt in (0, 1) else int(out[0] * out[1])


GEMM = register_op(OpDef(
    name="Gemm", shape=_shape, forward=_forward, vjp=_vjp,
    vjp_needs={0: (1,), 1: (0,), 2: ()}, jvp=_jvp, macs=_macs, vjp_macs=_vjp_macs,
    differentiable=(0, 1, 2), param_inputs={1: "weight", 2: "bias"},
    doc="Fully connected layer y = x W^T + b (W is [out, in])."))
