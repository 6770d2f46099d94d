"""Conv: y = conv(x, W) + b, 1-D or 2-D, any stride, asymmetric padding and groups.

x is [N, C, H, W] (or [N, C, L]); W is [M, C/group, kh, kw] (or [M, C/group, k]); b is [M].
attrs: ``strides`` (one per spatial dim), ``pads`` in ONNX order (begin_h, begin_w, end_h, end_w)
or (begin, end), ``group``. Dilation is always 1 (the importer refuses anything else).

The numpy reference lowers every case to 2-D (a 1-D conv is a 2-D conv with a 1-row kernel) and
to im2col + one batched matmul per group, so regular, grouped, depthwise and pointwise
convolutions share one code path. The helpers ``spatial_attrs``/``pad4``/``windows``/
``unwindow`` are shared with the pooling ops.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ShapeError
from ..ir.registry import OpDef, register_op


# ---- shared 2-D window helpers (also used by pool.py) ------------------------------------------

def spatial_attrs(op, nsp, attrs, kernel):
    """(strides, pads) of an op with `nsp` spatial dims, lifted to 2-D: a 1-D op becomes a 2-D
    op over a height-1 input. Pads come back as (begin_h, begin_w, end_h, end_w)."""
    strides = tuple(int(s) for s in attrs.get("strides", (1,) * nsp))
    pads = tuple(int(p) for p in attrs.get("pads", (0,) * (2 * nsp)))
    if len(strides) != nsp:
        raise ShapeError(f"{op} over {nsp} spatial dim(s) wants {nsp} strides, got {strides}")
    if len(pads) != 2 * nsp:
        raise ShapeError(f"{op} over {nsp} spatial dim(s) wants {2 * nsp} pads "
                         f"(all begins, then all ends), got {pads}")
    if min(strides) < 1:
        raise ShapeError(f"{op} strides must be >= 1, got {strides}")
    if min(pads) < 0:
        raise ShapeError(f"{op} pads must be >= 0, got {pads}")
    if nsp == 1:
        return (1,) + strides, (0, pads[0], 0, pads[1]), (1,) + tuple(kernel)
    return strides, pads, tuple(kernel)


def as4d(a):
    """View a 1-D-spatial [N, C, L] array as [N, C, 1, L]; 2-D arrays pass through."""
    return a[:, :, None, :] if a.ndim == 3 else a


def pad4(x, pads, value=0, extra=(0, 0)):
    """Pad [N, C, H, W] by (begin_h, begin_w, end_h, end_w) (+ `extra` more at the ends)."""
    bh, bw, eh, ew = pads
    eh, ew = eh + extra[0], ew + extra[1]
    if not (bh or bw or eh or ew):
        return x
    return np.pad(x, ((0, 0), (0, 0), (bh, eh), (bw, ew)), constant_values=value)


def windows(xp, kernel, strides, out_hw):
    """[N, C, Ho, Wo, kh, kw] view (no copy) of the windows of a padded [N, C, Hp, Wp] array."""
    (sh, sw), (ho, wo) = strides, out_hw
    v = sliding_window_view(xp, tuple(kernel), axis=(2, 3))
    return v[:, :, :(ho - 1) * sh + 1:sh, :(wo - 1) * sw + 1:sw]


def unwindow(gw, padded_hw, strides):
    """Adjoint of ``windows``: scatter-add window values [N, C, Ho, Wo, kh, kw] (a broadcast view
    is fine) into a zero [N, C, Hp, Wp] array. One strided add per kernel offset: within one
    offset the target cells are distinct, so plain += is exact."""
    n, c, ho, wo, kh, kw = gw.shape
    sh, sw = strides
    g = np.zeros((n, c) + tuple(padded_hw), dtype=gw.dtype)
    for i in range(kh):
        for j in range(kw):
            g[:, :, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw] += gw[..., i, j]
    return g


def crop4(gp, pads, hw):
    """Inverse of pad4 for gradients: the cells of the unpadded input."""
    bh, bw = pads[0], pads[1]
    return np.ascontiguousarray(gp[:, :, bh:bh + hw[0], bw:bw + hw[1]])


def out_len(n, k, s, begin, end):
    return (n + begin + end - k) // s + 1


# ---- Conv ---------------------------------------------------------------------------------

def _geom(x_shape, w_shape, attrs):
    """Everything the kernels need, in 2-D form, from shapes only."""
    nsp = len(x_shape) - 2
    strides, pads, kernel = spatial_attrs("Conv", nsp, attrs, w_shape[2:])
    hw = (1,) + tuple(x_shape[2:]) if nsp == 1 else tuple(x_shape[2:])
    out = tuple(out_len(hw[d], kernel[d], strides[d], pads[d], pads[d + 2]) for d in range(2))
    return nsp, strides, pads, kernel, hw, out


def _shape(s, attrs):
    x, w = tuple(s[0]), tuple(s[1])
    if len(x) not in (3, 4):
        raise ShapeError(f"Conv wants an input [N, C, L] or [N, C, H, W], got {x}")
    if len(w) != len(x):
        raise ShapeError(f"Conv weight {w} must have the same rank as the input {x} "
                         f"([out_channels, in_channels/group, *kernel])")
    group = int(attrs.get("group", 1))
    c, m = x[1], w[0]
    if group < 1 or c % group or m % group:
        raise ShapeError(f"group={group} must divide both the input channels ({c}) and the "
                         f"output channels ({m})")
    if w[1] != c // group:
        raise ShapeError(f"weight {w} expects {w[1]} input channels per group but the input has "
                         f"{c} channels in {group} group(s), i.e. {c // group} per group")
    if len(s) > 2 and s[2] is not None and tuple(s[2]) != (m,):
        raise ShapeError(f"bias shape {tuple(s[2])} does not match {m} output channels")
    _, strides, pads, kernel, hw, out = _geom(x, w, attrs)
    if min(kernel) < 1:
        raise ShapeError(f"Conv kernel {tuple(w[2:])} has an empty dimension")
    if min(out) < 1:
        raise ShapeError(f"Conv kernel {tuple(w[2:])} is larger than the padded input "
                         f"{tuple(x[2:])} (pads {tuple(attrs.get('pads', ()))})")
    return (x[0], m) + (out[1:] if len(x) == 3 else out)


def _cols(x4, group, strides, pads, kernel, out):
    """im2col: [G, N*Ho*Wo, C/G*kh*kw] (the one copy the forward pass makes)."""
    n, c = x4.shape[:2]
    win = windows(pad4(x4, pads), kernel, strides, out)
    win = win.reshape(n, group, c // group, out[0], out[1], kernel[0], kernel[1])
    return win.transpose(1, 0, 3, 4, 2, 5, 6).reshape(group, n * out[0] * out[1], -1)


def _conv(x, w, attrs):
    nsp, strides, pads, kernel, _, out = _geom(x.shape, w.shape, attrs)
    group = int(attrs.get("group", 1))
    n, m = x.shape[0], w.shape[0]
    cols = _cols(as4d(x), group, strides, pads, kernel, out)
    wg = w.reshape(group, m // group, -1)
    y = np.matmul(cols, wg.transpose(0, 2, 1))                    # [G, N*Ho*Wo, M/G]
    y = y.reshape(group, n, out[0], out[1], m // group).transpose(1, 0, 4, 2, 3)
    y = y.reshape(n, m, *(out if nsp == 2 else out[1:]))
    return y.astype(x.dtype, copy=False)


def _forward(xs, attrs):
    y = _conv(xs[0], xs[1], attrs)
    if len(xs) > 2 and xs[2] is not None:
        y += xs[2].reshape((-1,) + (1,) * (y.ndim - 2)).astype(y.dtype, copy=False)
    return y


def _gy_groups(gy, group):
    """gy [N, M, *out] -> [G, M/G, N*Ho*Wo]."""
    n, m = gy.shape[:2]
    g = gy.reshape(n, group, m // group, -1).transpose(1, 2, 0, 3)
    return g.reshape(group, m // group, -1)


def _vjp(wrt, gy, xs, y, attrs, x_shapes):
    group = int(attrs.get("group", 1))
    if wrt == 2:
        return gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))
    # Batch size from gy: x_shapes may carry the IR's nominal batch.
    x_shape = (gy.shape[0],) + tuple(x_shapes[0][1:])
    w_shape = tuple(x_shapes[1])
    _, strides, pads, kernel, hw, out = _geom(x_shape, w_shape, attrs)
    g = _gy_groups(gy, group)                                     # [G, M/G, N*Ho*Wo]
    if wrt == 1:
        cols = _cols(as4d(xs[0]), group, strides, pads, kernel, out)
        return np.matmul(g, cols).reshape(w_shape).astype(gy.dtype, copy=False)
    # wrt == 0: col2im of gy^T W.
    n, c = x_shape[:2]
    w = xs[1]
    gcols = np.matmul(g.transpose(0, 2, 1), w.reshape(group, w_shape[0] // group, -1))
    gcols = gcols.reshape(group, n, out[0], out[1], c // group, kernel[0], kernel[1])
    gcols = gcols.transpose(1, 0, 4, 2, 3, 5, 6).reshape(n, c, out[0], out[1], *kernel)
    gp = unwindow(gcols, (hw[0] + pads[0] + pads[2], hw[1] + pads[1] + pads[3]), strides)
    gx = crop4(gp, pads, hw)
    return gx.reshape(x_shape).astype(gy.dtype, copy=False)


def _jvp(xs, txs, y, attrs):
    x, w = xs[0], xs[1]
    tx, tw = txs[0], txs[1]
    tb = txs[2] if len(txs) > 2 else None
    t = np.zeros_like(y)
    if tx is not None:
        t += _conv(tx, w, attrs)
    if tw is not None:
        t += _conv(x, tw, attrs)
    if tb is not None:
        t += tb.reshape((-1,) + (1,) * (y.ndim - 2)).astype(y.dtype, copy=False)
    return t


def _macs(s, out, attrs):
    # One MAC per (output element, weight element of its group): N * M * prod(out) * C/G * k.
    return int(np.prod(out, dtype=np.int64) * np.prod(s[1][1:], dtype=np.int64))


def _vjp_macs(wrt, s, out, attrs):
    # bwd_x and bwd_w each redo the forward's MACs; the bias gradient is a sum over N*Ho*Wo.
    return _macs(s, out, attrs) if wrt in (0, 1) else int(np.prod(out, dtype=np.int64))


CONV = register_op(OpDef(
    name="Conv", shape=_shape, forward=_forward, vjp=_vjp,
    vjp_needs={0: (1,), 1: (0,), 2: ()}, jvp=_jvp, macs=_macs, vjp_macs=_vjp_macs,
    differentiable=(0, 1, 2), param_inputs={1: "weight", 2: "bias"},
    doc="1-D/2-D convolution with strides, asymmetric pads and groups (W is [M, C/group, *k])."))
