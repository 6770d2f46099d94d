"""Softmax over the last axis. The backward and tangent rules read only the output:
  vjp: gx = y * (gy - sum(gy * y))      jvp: ty = y * (tx - sum(tx * y))
(sums over the last axis), so the input need not be kept and the op may run in place."""
import numpy as np

from ..errors import ShapeError
from ..ir.registry import OUT, OpDef, register_op


def _shape(s, attrs):
    x = tuple(s[0])
    axis = int(attrs.get("axis", -1))
    if len(x) < 2:
        raise ShapeError(f"Softmax wants an input [batch, ..., classes], got {x}")
    if axis not in (-1, len(x) - 1):
        raise ShapeError(f"Softmax is supported over the last axis only; got axis={axis} for an "
                         f"input of rank {len(x)}")
    return x


def _forward(xs, attrs):
    x = xs[0]
    # Shift by the row max: exp never overflows and the largest term is exactly 1.
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _contract(t, y):
    return y * (t - (t * y).sum(axis=-1, keepdims=True))


def _macs(s, out, attrs):
    # Sum of the exponentials, then one scale per element (exp itself not counted).
    return 2 * int(np.prod(out, dtype=np.int64))


SOFTMAX = register_op(OpDef(
    name="Softmax", shape=_shape, forward=_forward,
    vjp=lambda wrt, gy, xs, y, a, x_shapes: _contract(gy, y), vjp_needs={0: (OUT,)},
    jvp=lambda xs, txs, y, a: _contract(txs[0], y),
    macs=_macs, vjp_macs=lambda w, s, o, a: _macs(s, o, a),
    differentiable=(0,), inplace=False,
    doc="exp(x - max) / sum over the last axis; backward reads only the output."))
