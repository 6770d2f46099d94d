"""Binary elementwise ops with numpy/ONNX multidirectional broadcasting: Add, Mul.

Either input may be a parameter or a constant of a broadcastable shape (a [C, 1, 1] bias or
scale against [N, C, H, W]); a residual join is Add of two activations of one shape. The VJP
sums the output gradient over every dimension an input was broadcast along, so it comes back
in that input's own shape (``x_shapes``).
"""
import numpy as np

from ..errors import ShapeError
from ..ir.registry import OpDef, register_op


def _shape_rule(op):
    def shape(s, attrs):
        a, b = tuple(s[0]), tuple(s[1])
        try:
            return tuple(np.broadcast_shapes(a, b))
        except ValueError:
            raise ShapeError(f"{op} cannot broadcast {a} with {b}: aligned from the right, each "
                             "pair of dimensions must be equal or one of them 1") from None
    return shape


def _dtype(xs):
    # The activation (the input with the most dims; input 0 on a tie) decides the dtype, so a
    # float64 constant never promotes a float32 graph.
    a, b = xs[0], xs[1]
    return a.dtype if np.ndim(a) >= np.ndim(b) else b.dtype


def unbroadcast(g, shape):
    """Sum g down to `shape`, the adjoint of numpy broadcasting `shape` to g.shape."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def _elems(out):
    return int(np.prod(out, dtype=np.int64))


# ---- Add ----------------------------------------------------------------------------------

def _add_vjp(wrt, gy, xs, y, attrs, x_shapes):
    return unbroadcast(gy, x_shapes[wrt])


def _add_jvp(xs, txs, y, attrs):
    t = np.zeros_like(y)
    for tx in txs[:2]:
        if tx is not None:
            t += tx
    return t


def _add_vjp_macs(wrt, s, out, attrs):
    # Pass-through unless the input was broadcast, then one accumulate per output element.
    return 0 if tuple(s[wrt]) == tuple(out) else _elems(out)


ADD = register_op(OpDef(
    name="Add", shape=_shape_rule("Add"),
    forward=lambda xs, a: np.add(xs[0], xs[1], dtype=_dtype(xs)),
    vjp=_add_vjp, vjp_needs={0: (), 1: ()}, jvp=_add_jvp,
    macs=lambda s, o, a: _elems(o), vjp_macs=_add_vjp_macs,
    differentiable=(0, 1), inplace=True,
    doc="a + b with numpy broadcasting (bias add, residual join)."))


# ---- Mul ----------------------------------------------------------------------------------

def _mul_vjp(wrt, gy, xs, y, attrs, x_shapes):
    other = xs[1 - wrt]
    return unbroadcast(gy * other, x_shapes[wrt]).astype(gy.dtype, copy=False)


def _mul_jvp(xs, txs, y, attrs):
    t = np.zeros_like(y)
    if txs[0] is not None:
        t += txs[0] * xs[1]
    if txs[1] is not None:
        t += xs[0] * txs[1]
    return t


MUL = register_op(OpDef(
    name="Mul", shape=_shape_rule("Mul"),
    forward=lambda xs, a: np.multiply(xs[0], xs[1], dtype=_dtype(xs)),
    vjp=_mul_vjp, vjp_needs={0: (1,), 1: (0,)}, jvp=_mul_jvp,
    macs=lambda s, o, a: _elems(o), vjp_macs=lambda w, s, o, a: _elems(o),
    differentiable=(0, 1), inplace=True,
    doc="a * b with numpy broadcasting (per-channel scale, gating)."))
