"""Pooling: MaxPool, AveragePool (1-D and 2-D, ONNX semantics) and GlobalAveragePool.

attrs of MaxPool / AveragePool: ``kernel_shape``, ``strides``, ``pads`` (ONNX order: all begins,
then all ends; asymmetric allowed), ``ceil_mode`` (0/1); AveragePool also ``count_include_pad``.

Output length per spatial dim (ONNX, = PyTorch for symmetric pads), with L = in + begin + end:
  floor mode: (L - k) // s + 1
  ceil mode:  ceil((L - k) / s) + 1, minus one if that last window would start at or beyond
              in + begin (i.e. in the end padding): every window starts inside the input or the
              begin padding.
A ceil-mode window may run past the end padding; those overflow cells are not part of the
window at all (MaxPool ignores them, AveragePool neither sums nor counts them). The padding
cells themselves are -inf for MaxPool; for AveragePool they are zeros that count in the divisor
only when count_include_pad=1. So the divisor of a window is
  count_include_pad=1: its cells inside [-begin, in + end)  (less than kh*kw for a ceil-mode
                       window that overruns the end padding)
  count_include_pad=0: its cells inside [0, in)
Pads must be smaller than the kernel, so no window lies wholly in padding.

onnx.reference (1.23) gets some of these cases wrong where onnxruntime and PyTorch agree with
the above; tests/ops/test_pool.py (reference_is_wrong) lists them.
"""
import numpy as np

from ..errors import ShapeError
from ..ir.registry import OpDef, register_op
from .conv import as4d, crop4, pad4, spatial_attrs, unwindow, windows


def _geom(op, x_shape, attrs):
    """2-D geometry: strides, pads, kernel, input hw, output hw, extra end padding (ceil mode)."""
    nsp = len(x_shape) - 2
    if nsp not in (1, 2):
        raise ShapeError(f"{op} wants an input [N, C, L] or [N, C, H, W], got {tuple(x_shape)}")
    ks = tuple(int(k) for k in attrs["kernel_shape"])
    if len(ks) != nsp:
        raise ShapeError(f"{op} over {nsp} spatial dim(s) wants a kernel_shape of {nsp} sizes, "
                         f"got {ks}")
    if min(ks) < 1:
        raise ShapeError(f"{op} kernel_shape {ks} has an empty dimension")
    strides, pads, kernel = spatial_attrs(op, nsp, attrs, ks)
    hw = (1,) + tuple(x_shape[2:]) if nsp == 1 else tuple(x_shape[2:])
    ceil = bool(attrs.get("ceil_mode", 0))
    given = tuple(attrs.get("pads", (0,) * (2 * nsp)))
    out, extra = [], []
    for d in range(2):
        n, k, s, b, e = hw[d], kernel[d], strides[d], pads[d], pads[d + 2]
        if b >= k or e >= k:
            raise ShapeError(f"{op} pads {given} must be smaller than the "
                             f"kernel {ks}: a window would lie entirely in the padding")
        span = n + b + e - k
        if span < 0:
            raise ShapeError(f"{op} kernel {ks} is larger than the padded input "
                             f"{tuple(x_shape[2:])} (pads {given})")
        o = span // s + 1
        if ceil:
            o = -(-span // s) + 1
            if (o - 1) * s >= n + b:
                o -= 1
        out.append(o)
        extra.append(max(0, (o - 1) * s + k - (n + b + e)))
    return nsp, strides, pads, kernel, hw, tuple(out), tuple(extra)


def _out_shape(x_shape, nsp, out):
    return tuple(x_shape[:2]) + (out if nsp == 2 else out[1:])


def _pool_shape(op):
    def shape(s, attrs):
        x = tuple(s[0])
        nsp, *_, out, _ = _geom(op, x, attrs)
        return _out_shape(x, nsp, out)
    return shape


def _avg_macs(s, out, attrs):
    # One accumulate per window cell (forward: sum; backward: spread the scaled gradient).
    return int(np.prod(out, dtype=np.int64) * np.prod(attrs["kernel_shape"], dtype=np.int64))


# ---- MaxPool --------------------------------------------------------------------------------

def _max_fwd(xs, attrs):
    x = xs[0]
    nsp, strides, pads, kernel, _, out, extra = _geom("MaxPool", x.shape, attrs)
    xp = pad4(as4d(x), pads, -np.inf, extra)
    y = windows(xp, kernel, strides, out).max(axis=(-2, -1))
    return y.reshape(_out_shape(x.shape, nsp, out))


def _argmax(x, attrs):
    """Flat indices into the padded [N, C, Hp, Wp] input of each window's maximum, plus that
    padded shape and the padding used. Ties go to the first maximum in row-major window order
    (np.argmax; a NaN counts as the largest), the same rule as tt_maxpool2d's `>` scan."""
    _, strides, pads, kernel, hw, out, extra = _geom("MaxPool", x.shape, attrs)
    xp = pad4(as4d(x), pads, -np.inf, extra)
    n, c, hp, wp = xp.shape
    win = windows(xp, kernel, strides, out)
    a = win.reshape(win.shape[:4] + (-1,)).argmax(axis=-1)
    h = np.arange(out[0])[:, None] * strides[0] + a // kernel[1]
    w = np.arange(out[1])[None, :] * strides[1] + a % kernel[1]
    nc = np.arange(n * c).reshape(n, c, 1, 1)
    return (nc * hp + h) * wp + w, (n, c, hp, wp), pads, hw, extra


def _max_vjp(wrt, gy, xs, y, attrs, x_shapes):
    x = xs[0]
    flat, pshape, pads, hw, _ = _argmax(x, attrs)
    gp = np.zeros(pshape, dtype=gy.dtype)
    # Overlapping windows (stride < kernel) can pick the same cell: accumulate.
    np.add.at(gp.reshape(-1), flat.reshape(-1), gy.reshape(-1))
    return crop4(gp, pads, hw).reshape(x.shape)


def _max_jvp(xs, txs, y, attrs):
    flat, _, pads, _, extra = _argmax(xs[0], attrs)
    tp = pad4(as4d(txs[0]), pads, 0, extra)
    return tp.reshape(-1)[flat].reshape(y.shape)


MAXPOOL = register_op(OpDef(
    name="MaxPool", shape=_pool_shape("MaxPool"), forward=_max_fwd, vjp=_max_vjp,
    vjp_needs={0: (0,)}, jvp=_max_jvp,
    # Comparisons, not MACs; the backward pass re-scans each window for its argmax.
    macs=lambda s, o, a: 0, vjp_macs=lambda w, s, o, a: 0,
    differentiable=(0,),
    doc="Max over each window (padding is -inf); the gradient goes to the first maximum."))


# ---- AveragePool ----------------------------------------------------------------------------

def _divisor(attrs, hw, pads, kernel, strides, out, dtype):
    """[Ho, Wo] window sizes (see the module docstring); separable, so an outer product."""
    cip = bool(attrs.get("count_include_pad", 0))
    counts = []
    for d in range(2):
        start = np.arange(out[d]) * strides[d]                    # padded coordinates
        lo, hi = (0, hw[d] + pads[d] + pads[d + 2]) if cip else (pads[d], pads[d] + hw[d])
        counts.append(np.minimum(start + kernel[d], hi) - np.maximum(start, lo))
    return np.multiply.outer(counts[0], counts[1]).astype(dtype)


def _avg_fwd(xs, attrs):
    x = xs[0]
    nsp, strides, pads, kernel, hw, out, extra = _geom("AveragePool", x.shape, attrs)
    xp = pad4(as4d(x), pads, 0, extra)
    s = windows(xp, kernel, strides, out).sum(axis=(-2, -1))
    y = s / _divisor(attrs, hw, pads, kernel, strides, out, x.dtype)
    return y.reshape(_out_shape(x.shape, nsp, out))


def _avg_vjp(wrt, gy, xs, y, attrs, x_shapes):
    x_shape = (gy.shape[0],) + tuple(x_shapes[0][1:])
    _, strides, pads, kernel, hw, out, extra = _geom("AveragePool", x_shape, attrs)
    g = as4d(gy) / _divisor(attrs, hw, pads, kernel, strides, out, gy.dtype)
    gw = np.broadcast_to(g[..., None, None], g.shape + tuple(kernel))
    padded = (hw[0] + pads[0] + pads[2] + extra[0], hw[1] + pads[1] + pads[3] + extra[1])
    return crop4(unwindow(gw, padded, strides), pads, hw).reshape(x_shape)


AVGPOOL = register_op(OpDef(
    name="AveragePool", shape=_pool_shape("AveragePool"), forward=_avg_fwd, vjp=_avg_vjp,
    vjp_needs={0: ()}, jvp=lambda xs, txs, y, a: _avg_fwd([txs[0]], a),
    macs=_avg_macs, vjp_macs=lambda w, s, o, a: _avg_macs(s, o, a),
    differentiable=(0,),
    doc="Mean over each window (ONNX ceil_mode / count_include_pad semantics); linear."))


# ---- GlobalAveragePool ----------------------------------------------------------------------

def _gap_shape(s, attrs):
    x = tuple(s[0])
    if len(x) not in (3, 4):
        raise ShapeError(f"GlobalAveragePool wants an input [N, C, L] or [N, C, H, W], got {x}")
    return x[:2] + (1,) * (len(x) - 2)


def _gap_fwd(xs, attrs):
    x = xs[0]
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=x.dtype)


def _gap_vjp(wrt, gy, xs, y, attrs, x_shapes):
    x_shape = (gy.shape[0],) + tuple(x_shapes[0][1:])
    count = int(np.prod(x_shape[2:]))
    return np.broadcast_to(gy / gy.dtype.type(count), x_shape).copy()


def _gap_macs(s, out, attrs):
    return int(np.prod(s[0], dtype=np.int64))


GAP = register_op(OpDef(
    name="GlobalAveragePool", shape=_gap_shape, forward=_gap_fwd, vjp=_gap_vjp,
    vjp_needs={0: ()}, jvp=lambda xs, txs, y, a: _gap_fwd([txs[0]], a),
    macs=_gap_macs, vjp_macs=lambda w, s, o, a: _gap_macs(s, o, a), differentiable=(0,),
    doc="Mean over all spatial positions: [N, C, H, W] -> [N, C, 1, 1], [N, C, L] -> [N, C, 1]."))
