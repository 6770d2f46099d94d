"""Reshape: y = x viewed as (N, *shape). ONNX Reshape, Flatten, Squeeze and Unsqueeze all import
as this op, with ``shape`` the per-sample target shape (batch dim excluded; the importer has
already resolved -1 and 0). No arithmetic: in C the output aliases the input's bytes."""
import numpy as np

from ..errors import ShapeError
from ..ir.registry import OpDef, register_op


def _target(attrs):
    shape = tuple(int(d) for d in attrs["shape"])
    if any(d < 1 for d in shape):
        raise ShapeError(f"Reshape target shape {shape} must be positive sizes (the batch dim is "
                         "excluded; -1 and 0 are resolved at import)")
    return shape


def _shape(s, attrs):
    x, shape = tuple(s[0]), _target(attrs)
    if not x:
        raise ShapeError("Reshape wants an input with a batch dimension, got a scalar")
    have, want = int(np.prod(x[1:], dtype=np.int64)), int(np.prod(shape, dtype=np.int64))
    if have != want:
        raise ShapeError(f"cannot reshape {x} to (batch, {', '.join(map(str, shape))}): a sample "
                         f"has {have} elements but the target holds {want}")
    return (x[0],) + shape


RESHAPE = register_op(OpDef(
    name="Reshape", shape=_shape,
    forward=lambda xs, a: xs[0].reshape((xs[0].shape[0],) + _target(a)),
    vjp=lambda wrt, gy, xs, y, a, x_shapes: gy.reshape((gy.shape[0],) + tuple(x_shapes[0][1:])),
    vjp_needs={0: ()},
    jvp=lambda xs, txs, y, a: txs[0].reshape(y.shape),
    macs=lambda s, o, a: 0, vjp_macs=lambda w, s, o, a: 0,
    differentiable=(0,), inplace=True,
    doc="(N, ...) -> (N, *shape), same elements in row-major order (Flatten, Squeeze, Unsqueeze)."))
