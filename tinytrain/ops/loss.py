"""Losses. Forward gives the mean loss over the batch (a 0-d array); the VJP w.r.t. the
prediction (wrt=0) is the gradient of that mean, so a batch of N in numpy and N accumulated
single-sample steps in C (each scaled by 1/N) give the same parameter gradients."""
import numpy as np

from ..errors import ShapeError
from ..ir.registry import OpDef, register_op


def _xent_shape(s, attrs):
    logits, labels = s
    if len(logits) != 2:
        raise ShapeError(f"softmax cross-entropy wants logits [batch, classes], got {logits}")
    if tuple(labels) != (logits[0],):
        raise ShapeError(f"labels shape {labels} does not match batch {logits[0]}")
    return ()


def _log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _xent_fwd(xs, attrs):
    z, lab = xs
    lab = np.asarray(lab).astype(np.int64)
    if lab.min(initial=0) < 0 or lab.max(initial=0) >= z.shape[1]:
        raise ShapeError(f"labels must be class indices in [0, {z.shape[1]}), got "
                         f"min {lab.min()} max {lab.max()}")
    ls = _log_softmax(z)
    return np.asarray(-ls[np.arange(z.shape[0]), lab].mean(), dtype=z.dtype)


def _xent_grad(z, lab):
    p = np.exp(_log_softmax(z))
    p[np.arange(z.shape[0]), np.asarray(lab).astype(np.int64)] -= 1
    return (p / z.shape[0]).astype(z.dtype)


def _xent_vjp(wrt, gy, xs, y, attrs, x_shapes):
    return (np.asarray(gy, dtype=xs[0].dtype) * _xent_grad(xs[0], xs[1])).astype(xs[0].dtype)


def _xent_jvp(xs, txs, y, attrs):
    return np.asarray((_xent_grad(xs[0], xs[1]) * txs[0]).sum(), dtype=xs[0].dtype)


SOFTMAX_XENT = register_op(OpDef(
    name="SoftmaxCrossEntropy", shape=_xent_shape, forward=_xent_fwd, vjp=_xent_vjp,
    vjp_needs={0: (0, 1)}, jvp=_xent_jvp, macs=lambda s, o, a: 0,
    vjp_macs=lambda w, s, o, a: int(np.prod(s[0])), differentiable=(0,),
    doc="mean over the batch of -log softmax(logits)[label]; labels are int class indices."))


def _mse_shape(s, attrs):
    if tuple(s[0]) != tuple(s[1]):
        raise ShapeError(f"MSE wants prediction and target of one shape, got {s[0]} and {s[1]}")
    return ()


def _mse_vjp(wrt, gy, xs, y, attrs, x_shapes):
    d = xs[0] - xs[1]
    return (np.asarray(gy, dtype=d.dtype) * 2 * d / d.size).astype(d.dtype)


MSE = register_op(OpDef(
    name="MSE", shape=_mse_shape,
    forward=lambda xs, a: np.asarray(((xs[0] - xs[1]) ** 2).mean(), dtype=xs[0].dtype),
    vjp=_mse_vjp, vjp_needs={0: (0, 1)},
    jvp=lambda xs, txs, y, a: np.asarray((2 * (xs[0] - xs[1]) * txs[0]).mean(), dtype=xs[0].dtype),
    macs=lambda s, o, a: 0, vjp_macs=lambda w, s, o, a: int(np.prod(s[0])), differentiable=(0,),
    doc="mean squared error over every element of the batch."))

LOSSES = {"cross_entropy": "SoftmaxCrossEntropy", "mse": "MSE"}
