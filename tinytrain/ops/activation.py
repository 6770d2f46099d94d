"""Pointwise activations. All may run in place; backward rules read the output where that is
enough (ReLU, Clip, Sigmoid, Tanh), so the input need not be kept for the backward pass."""
import numpy as np

from ..ir.registry import OUT, OpDef, register_op


def _same(s, attrs):
    return tuple(s[0])


def _n(s, out, attrs):
    return 0


def _elem(s, out, attrs):
    return int(np.prod(out))


def _act(name, fwd, dydx, needs, doc):
    """dydx(x, y, attrs) -> elementwise derivative, reading only what `needs` names."""
    def vjp(wrt, gy, xs, y, attrs, x_shapes):
        return gy * dydx(xs[0], y, attrs)

    def jvp(xs, txs, y, attrs):
        return txs[0] * dydx(xs[0], y, attrs)

    return register_op(OpDef(name=name, shape=_same, forward=lambda xs, a: fwd(xs[0], a),
                             vjp=vjp, vjp_needs={0: needs}, jvp=jvp, macs=_n, vjp_macs=lambda *a: _elem(*a[1:]),
                             differentiable=(0,), inplace=True, doc=doc))


def _sigmoid(x):
    # Stable on both tails: exp of a non-positive number only.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


RELU = _act("Relu", lambda x, a: np.maximum(x, 0).astype(x.dtype),
            lambda x, y, a: (y > 0).astype(y.dtype), (OUT,),
            "max(x, 0); gradient passes where the output is positive.")
CLIP = _act("Clip", lambda x, a: np.clip(x, a["min"], a["max"]).astype(x.dtype),
            lambda x, y, a: ((y > a["min"]) & (y < a["max"])).astype(y.dtype), (OUT,),
            "clip(x, min, max) (ReLU6 is Clip(0, 6)); gradient passes strictly inside the range.")
LEAKY = _act("LeakyRelu", lambda x, a: np.where(x >= 0, x, a["alpha"] * x).astype(x.dtype),
             lambda x, y, a: np.where(x >= 0, 1.0, a["alpha"]).astype(x.dtype), (0,),
             "x if x >= 0 else alpha*x; the backward pass reads the input (alpha may be negative).")
SIGMOID = _act("Sigmoid", lambda x, a: _sigmoid(x),
               lambda x, y, a: y * (1 - y), (OUT,), "1/(1+exp(-x)); derivative y(1-y).")
TANH = _act("Tanh", lambda x, a: np.tanh(x), lambda x, y, a: 1 - y * y, (OUT,),
            "tanh(x); derivative 1 - y^2.")
