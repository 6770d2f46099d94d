"""Reductions in the documented order, shared by the numpy twins of the FP16 and fixed-point
kernels.

Every function takes arrays that are already widened (float32 for FP16, int64 for fixed
point) and returns the accumulators. It runs ONE sequential chain per output element,
``acc = acc + a * b``, looping in Python over the reduction index and vectorised over all
outputs, so for float32 every product and every sum is rounded exactly where the C rounds it;
for int64 the order is irrelevant and the result is exact. Taps that fall into the padding
are skipped (``np.where(valid, acc + p, acc)``), as the C skips them.
"""
from __future__ import annotations

import itertools

import numpy as np


def gemm_fwd(x, w, init):
    """y[i][j] = init[i][j] + chain over kk of x[i][kk] * w[j][kk]."""
    acc = init.copy()
    for kk in range(x.shape[1]):
        acc = acc + x[:, kk][:, None] * w[:, kk][None, :]
    return acc


def gemm_bwd_x(gy, w, init):
    """gx[i][kk] = init + chain over j of gy[i][j] * w[j][kk]."""
    acc = init.copy()
    for j in range(gy.shape[1]):
        acc = acc + gy[:, j][:, None] * w[j][None, :]
    return acc


def gemm_bwd_w(gy, x, init):
    """gw[j][kk] = init + chain over i of gy[i][j] * x[i][kk]."""
    acc = init.copy()
    for i in range(gy.shape[0]):
        acc = acc + gy[i][:, None] * x[i][None, :]
    return acc


def bias_bwd(gy3, init):
    """gb[ch] = init + chain over (o, t) of gy[o][ch][t]."""
    acc = init.copy()
    for o in range(gy3.shape[0]):
        for t in range(gy3.shape[2]):
            acc = acc + gy3[o, :, t]
    return acc


# ---- convolution ---------------------------------------------------------------------------

def conv_out_index(p):
    """Per-output-channel group bookkeeping: (cin_g, cout_g)."""
    return p["in_c"] // p["groups"], p["out_c"] // p["groups"]


def conv_fwd(p, x, w, init):
    """x [in_c][in_h][in_w], w [out_c][cin_g][k_h][k_w], init [out_c][out_h][out_w]:
    chain over (icg, kh, kw) ascending."""
    cin_g, cout_g = conv_out_index(p)
    oc = np.arange(p["out_c"])
    oh = np.arange(p["out_h"])
    ow = np.arange(p["out_w"])
    acc = init.copy()
    for icg in range(cin_g):
        ic = (oc // cout_g) * cin_g + icg
        for kh in range(p["k_h"]):
            ih = oh * p["stride_h"] - p["pad_top"] + kh
            vh = (ih >= 0) & (ih < p["in_h"])
            ihc = np.clip(ih, 0, p["in_h"] - 1)
            for kw in range(p["k_w"]):
                iw = ow * p["stride_w"] - p["pad_left"] + kw
                vw = (iw >= 0) & (iw < p["in_w"])
                iwc = np.clip(iw, 0, p["in_w"] - 1)
                xs = x[ic[:, None, None], ihc[None, :, None], iwc[None, None, :]]
                prod = xs * w[:, icg, kh, kw][:, None, None]
                valid = (vh[:, None] & vw[None, :])[None]
                acc = np.where(valid, acc + prod, acc)
    return acc


def conv_bwd_x(p, gy, w, init):
    """gx[ic][ih][iw] = init + chain over (oc of the group, kh, kw) ascending of
    gy[oc][oh][ow] * w[oc][icg][kh][kw] where ih = oh*s - pad + kh (and the same for w)."""
    cin_g, cout_g = conv_out_index(p)
    ic = np.arange(p["in_c"])
    g, icg = ic // cin_g, ic % cin_g
    ih = np.arange(p["in_h"])
    iw = np.arange(p["in_w"])
    acc = init.copy()
    for ocg in range(cout_g):
        oc = g * cout_g + ocg
        for kh in range(p["k_h"]):
            th = ih + p["pad_top"] - kh
            oh = th // p["stride_h"]
            vh = (th >= 0) & (th % p["stride_h"] == 0) & (oh < p["out_h"])
            ohc = np.clip(oh, 0, p["out_h"] - 1)
            for kw in range(p["k_w"]):
                tw = iw + p["pad_left"] - kw
                ow = tw // p["stride_w"]
                vw = (tw >= 0) & (tw % p["stride_w"] == 0) & (ow < p["out_w"])
                owc = np.clip(ow, 0, p["out_w"] - 1)
                gys = gy[oc[:, None, None], ohc[None, :, None], owc[None, None, :]]
                prod = gys * w[oc, icg, kh, kw][:, None, None]
                valid = (vh[:, None] & vw[None, :])[None]
                acc = np.where(valid, acc + prod, acc)
    return acc


def conv_bwd_w(p, gy, x, init):
    """gw[oc][icg][kh][kw] = init + chain over (oh, ow) ascending of gy[oc][oh][ow] * x[...]."""
    cin_g, cout_g = conv_out_index(p)
    oc = np.arange(p["out_c"])
    icg = np.arange(cin_g)
    ic = (oc // cout_g)[:, None] * cin_g + icg[None, :]            # [out_c][cin_g]
    kh = np.arange(p["k_h"])
    kw = np.arange(p["k_w"])
    acc = init.copy()
    for oh in range(p["out_h"]):
        ih = oh * p["stride_h"] - p["pad_top"] + kh
        vh = (ih >= 0) & (ih < p["in_h"])
        ihc = np.clip(ih, 0, p["in_h"] - 1)
        for ow in range(p["out_w"]):
            iw = ow * p["stride_w"] - p["pad_left"] + kw
            vw = (iw >= 0) & (iw < p["in_w"])
            iwc = np.clip(iw, 0, p["in_w"] - 1)
            xs = x[ic[:, :, None, None], ihc[None, None, :, None], iwc[None, None, None, :]]
            prod = gy[:, oh, ow][:, None, None, None] * xs
            valid = (vh[:, None] & vw[None, :])[None, None]
            acc = np.where(valid, acc + prod, acc)
    return acc


# ---- pooling -------------------------------------------------------------------------------

def pool_windows(p):
    """For every output (oh, ow): the window cells in row-major order as a list of
    (valid [out_h][out_w], flat index [out_h][out_w]) plus the valid-cell count."""
    oh = np.arange(p["out_h"])[:, None]
    ow = np.arange(p["out_w"])[None, :]
    hs = oh * p["stride_h"] - p["pad_top"]
    ws = ow * p["stride_w"] - p["pad_left"]
    cells = []
    count = np.zeros((p["out_h"], p["out_w"]), dtype=np.int64)
    for kh in range(p["k_h"]):
        for kw in range(p["k_w"]):
            ih, iw = hs + kh, ws + kw
            valid = (ih >= 0) & (ih < p["in_h"]) & (iw >= 0) & (iw < p["in_w"])
            idx = np.clip(ih, 0, p["in_h"] - 1) * p["in_w"] + np.clip(iw, 0, p["in_w"] - 1)
            valid, idx = np.broadcast_arrays(valid, idx)
            cells.append((valid, idx))
            count += valid
    return cells, count


def window_argmax(p, x2, nan_first: bool):
    """x2 [c][in_h*in_w] -> flat argmax [c][out_h][out_w]: the first valid NaN (if nan_first)
    else the first maximum (strict >, starting from the first valid cell)."""
    cells, _ = pool_windows(p)
    c = x2.shape[0]
    shape = (c, p["out_h"], p["out_w"])
    best = np.full(shape, -1, dtype=np.int64)
    m = np.zeros(shape, dtype=x2.dtype)
    nan_idx = np.full(shape, -1, dtype=np.int64)
    for valid, idx in cells:
        v = x2[:, idx]
        fresh = valid[None] & (best < 0)
        better = valid[None] & (best >= 0) & (v > m)
        take = fresh | better
        best = np.where(take, idx[None], best)
        m = np.where(take, v, m)
        if nan_first:
            isn = valid[None] & np.isnan(v) & (nan_idx < 0)
            nan_idx = np.where(isn, idx[None], nan_idx)
    if nan_first:
        best = np.where(nan_idx >= 0, nan_idx, best)
    return best


def window_sum(p, x2, zero):
    """Chain over the valid cells in row-major order: [c][out_h][out_w]."""
    cells, count = pool_windows(p)
    acc = np.full((x2.shape[0], p["out_h"], p["out_w"]), zero, dtype=x2.dtype)
    for valid, idx in cells:
        acc = np.where(valid[None], acc + x2[:, idx], acc)
    return acc, count


def pool_divisor(p, count):
    return np.full_like(count, p["k_h"] * p["k_w"]) if p["count_include_pad"] else count


# ---- broadcasting --------------------------------------------------------------------------

def bcast_offsets(shape, strides):
    """Element offsets (in the operand) of every output position, [shape] int64."""
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum(g * st for g, st in zip(grids, strides)).astype(np.int64)


def bcast_reduce(shape, strides, gy4, g_init):
    """Operand gradient: for each operand element, chain over the output positions that
    read it (dims with stride 0 and extent > 1) in ascending row-major order.
    gy4: [shape], g_init: flat operand array (widened). Returns the new flat operand array."""
    red = [st == 0 and ext > 1 for st, ext in zip(strides, shape)]
    kext = [1 if r else e for r, e in zip(red, shape)]
    kept_off = bcast_offsets(kext, strides).reshape(-1)
    acc = g_init[kept_off].copy()
    rdims = [range(e) if r else range(1) for r, e in zip(red, shape)]
    for combo in itertools.product(*rdims):
        sl = tuple(slice(c, c + 1) if r else slice(None) for c, r in zip(combo, red))
        acc = acc + gy4[sl].reshape(-1)
    out = g_init.copy()
    out[kept_off] = acc
    return out, kept_off
