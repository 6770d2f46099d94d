"""numpy twins of the FP16 kernels (runtime_c/src/tt_*_f16.c), bit for bit.

Arrays in and out are uint16 bit patterns (binary16); everything in between is float32 with
the C's operation order (chains.py), rounded to half where the C stores. Shapes follow the C
API: batch 1, CHW, conv weights [out_c][in_c/groups][k_h][k_w]; conv / pool parameters are
dicts with the field names of tt_conv2d_params / tt_pool2d_params. Functions return new
arrays; ``init`` arguments are the previous contents for accumulate = 1 (None: start at +0).
"""
from __future__ import annotations

import numpy as np

from . import chains
from .fp16 import expf_plain, f16_to_f32 as H, f32_to_f16 as R, logf_plain
from .prng import Pcg32

F32 = np.float32


def _init(init, shape):
    return np.zeros(shape, dtype=np.float32) if init is None else H(init).reshape(shape)


# ---- GEMM / bias ----------------------------------------------------------------------------

def gemm_fwd(x, w, b, n, k, m):
    init = np.zeros((n, m), np.float32) if b is None else np.broadcast_to(H(b)[None, :], (n, m))
    return R(chains.gemm_fwd(H(x).reshape(n, k), H(w).reshape(m, k), init)).reshape(-1)


def gemm_bwd_x(gy, w, n, k, m, init=None):
    acc = chains.gemm_bwd_x(H(gy).reshape(n, m), H(w).reshape(m, k), _init(init, (n, k)))
    return R(acc).reshape(-1)


def gemm_bwd_w(gy, x, n, k, m, init=None):
    acc = chains.gemm_bwd_w(H(gy).reshape(n, m), H(x).reshape(n, k), _init(init, (m, k)))
    return R(acc).reshape(-1)


def bias_bwd(gy, outer, c, inner, init=None):
    return R(chains.bias_bwd(H(gy).reshape(outer, c, inner), _init(init, (c,)))).reshape(-1)


# ---- convolution -----------------------------------------------------------------------------

def _conv_shapes(p):
    cin_g = p["in_c"] // p["groups"]
    return ((p["in_c"], p["in_h"], p["in_w"]), (p["out_c"], cin_g, p["k_h"], p["k_w"]),
            (p["out_c"], p["out_h"], p["out_w"]))


def conv2d_fwd(p, x, w, b=None):
    xs, ws, ys = _conv_shapes(p)
    init = (np.zeros(ys, np.float32) if b is None
            else np.broadcast_to(H(b)[:, None, None], ys).astype(np.float32))
    return R(chains.conv_fwd(p, H(x).reshape(xs), H(w).reshape(ws), init)).reshape(-1)


def conv2d_bwd_x(p, gy, w, init=None):
    xs, ws, ys = _conv_shapes(p)
    return R(chains.conv_bwd_x(p, H(gy).reshape(ys), H(w).reshape(ws), _init(init, xs))).reshape(-1)


def conv2d_bwd_w(p, gy, x, init=None):
    xs, ws, ys = _conv_shapes(p)
    return R(chains.conv_bwd_w(p, H(gy).reshape(ys), H(x).reshape(xs), _init(init, ws))).reshape(-1)


# ---- ReLU ------------------------------------------------------------------------------------

def _is_neg(h):
    h = np.asarray(h, np.uint16)
    a = h & np.uint16(0x7FFF)
    return ((h & np.uint16(0x8000)) != 0) & (a != 0) & (a <= 0x7C00)


def _is_pos(h):
    h = np.asarray(h, np.uint16)
    return ((h & np.uint16(0x8000)) == 0) & (h != 0) & (h <= 0x7C00)


def relu_fwd(x):
    x = np.asarray(x, np.uint16)
    return np.where(_is_neg(x), np.uint16(0), x).astype(np.uint16)


def relu_bwd_x(gy, y, init=None):
    gy = np.asarray(gy, np.uint16)
    pos = _is_pos(y)
    if init is None:
        return np.where(pos, gy, np.uint16(0)).astype(np.uint16)
    return np.where(pos, R(H(init) + H(gy)), np.asarray(init, np.uint16)).astype(np.uint16)


# ---- pooling ---------------------------------------------------------------------------------

def _pool_x2(p, x):
    return x.reshape(p["c"], p["in_h"] * p["in_w"])


def maxpool2d_fwd(p, x):
    x2 = _pool_x2(p, np.asarray(x, np.uint16))
    a = chains.window_argmax(p, H(x2), nan_first=True)
    return np.take_along_axis(x2, a.reshape(p["c"], -1), axis=1).reshape(-1)


def maxpool2d_bwd_x(p, gy, x, init=None):
    c = p["c"]
    a = chains.window_argmax(p, H(_pool_x2(p, np.asarray(x, np.uint16))), nan_first=True)
    gx = (np.zeros((c, p["in_h"] * p["in_w"]), np.uint16) if init is None
          else np.asarray(init, np.uint16).reshape(c, -1).copy())
    gyf = H(gy).reshape(c, p["out_h"], p["out_w"])
    rows = np.arange(c)
    for oh in range(p["out_h"]):
        for ow in range(p["out_w"]):
            idx = a[:, oh, ow]
            gx[rows, idx] = R(H(gx[rows, idx]) + gyf[:, oh, ow])
    return gx.reshape(-1)


def avgpool2d_fwd(p, x):
    s, count = chains.window_sum(p, H(_pool_x2(p, np.asarray(x, np.uint16))), np.float32(0))
    d = chains.pool_divisor(p, count).astype(np.float32)
    return R(s / d[None]).reshape(-1)


def avgpool2d_bwd_x(p, gy, init=None):
    c = p["c"]
    cells, count = chains.pool_windows(p)
    d = chains.pool_divisor(p, count).astype(np.float32)
    g = H(gy).reshape(c, p["out_h"], p["out_w"]) / d[None]
    gx = (np.zeros((c, p["in_h"] * p["in_w"]), np.uint16) if init is None
          else np.asarray(init, np.uint16).reshape(c, -1).copy())
    for oh in range(p["out_h"]):
        for ow in range(p["out_w"]):
            for valid, idx in cells:
                if valid[oh, ow]:
                    j = idx[oh, ow]
                    gx[:, j] = R(H(gx[:, j]) + g[:, oh, ow])
    return gx.reshape(-1)


def global_avgpool_fwd(x, c, hw):
    xs = H(x).reshape(c, hw)
    s = np.zeros(c, np.float32)
    for t in range(hw):
        s = s + xs[:, t]
    return R(s / F32(hw)).reshape(-1)


def global_avgpool_bwd_x(gy, c, hw, init=None):
    g = H(gy) / F32(hw)
    base = np.zeros((c, hw), np.float32) if init is None else H(init).reshape(c, hw)
    return R(base + g[:, None]).reshape(-1)


# ---- add -------------------------------------------------------------------------------------

def add_fwd(shape, a_stride, b_stride, a, b):
    oa = chains.bcast_offsets(shape, a_stride)
    ob = chains.bcast_offsets(shape, b_stride)
    return R(H(a)[oa] + H(b)[ob]).reshape(-1)


def add_bwd(shape, strides, gy, g_len, init=None):
    g0 = np.zeros(g_len, np.float32) if init is None else H(init)
    out, kept = chains.bcast_reduce(shape, strides, H(gy).reshape(shape), g0)
    res = (np.zeros(g_len, np.uint16) if init is None else np.asarray(init, np.uint16).copy())
    res[kept] = R(out[kept])
    return res


# ---- loss ------------------------------------------------------------------------------------

def softmax_xent(logits, labels, rows, cols, scale):
    """(loss float32, glogits uint16 [rows*cols], status_nan: bool)."""
    x = H(logits).reshape(rows, cols)
    labels = np.asarray(labels, np.int64)
    ar = np.arange(rows)
    m = x[:, 0].copy()
    for j in range(1, cols):
        m = np.where(x[:, j] > m, x[:, j], m)
    e = expf_plain(x - m[:, None])
    s = np.zeros(rows, np.float32)
    q = np.zeros(rows, np.float32)
    for j in range(cols):
        s = s + e[:, j]
        q = np.where(labels != j, q + e[:, j], q)
    xl = x[ar, labels] - m
    lrow = logf_plain(s) - xl
    total = F32(0)
    for r in range(rows):
        total = F32(total + lrow[r])
    f = F32(scale) / F32(rows)
    g = R((e / s[:, None]) * f)
    g[ar, labels] = R(-(q / s) * f)
    loss = F32(total / F32(rows))
    return loss, g.reshape(-1), not np.isfinite(loss)


# ---- optimizers --------------------------------------------------------------------------------

def _grad_term(g, wf, weight_decay, inv_scale):
    d = H(g) * F32(inv_scale)
    if F32(weight_decay) != 0:
        d = d + F32(weight_decay) * wf
    return d


def _finite(g):
    return bool(np.all((np.asarray(g, np.uint16) & 0x7C00) != 0x7C00))


def sgd_upd(w, g, master, lr, weight_decay, inv_scale):
    """(w16, master or None, ok). Not ok: nothing changes (the C zeroes g either way)."""
    if not _finite(g):
        return np.asarray(w, np.uint16).copy(), None if master is None else master.copy(), False
    wf = H(w) if master is None else np.asarray(master, np.float32)
    wf = wf - F32(lr) * _grad_term(g, wf, weight_decay, inv_scale)
    return R(wf), (None if master is None else wf), True


def momentum_upd(w, g, v, master, lr, momentum, weight_decay, inv_scale, v32: bool):
    """(w16, v (uint16 or float32), master or None, ok)."""
    if not _finite(g):
        return (np.asarray(w, np.uint16).copy(), np.array(v, copy=True),
                None if master is None else master.copy(), False)
    wf = H(w) if master is None else np.asarray(master, np.float32)
    d = _grad_term(g, wf, weight_decay, inv_scale)
    vf = F32(momentum) * (np.asarray(v, np.float32) if v32 else H(v))
    vf = vf + d
    if v32:
        v_new, v_used = vf, vf
    else:
        v_new = R(vf)
        v_used = H(v_new)
    wf = wf - F32(lr) * v_used
    return R(wf), v_new, (None if master is None else wf), True


# ---- zeroth order (SPSA) with fp32 master weights (tt_zo_f16.c) -------------------------------
ZO_RADEMACHER, ZO_GAUSS = 0, 1
ZO_GAUSS_SCALE = F32(1 / np.sqrt(21845))   # == 0.00676587503f in tt_zo_f32.c / tt_zo_f16.c


def zo_z(gen, n: int, dist: int) -> np.ndarray:
    """z of one tensor (float32), drawn from gen (a prng.Pcg32, advanced) as tt_zo_f16.c and
    tt_zo_axpy_f32 draw it."""
    if dist == ZO_RADEMACHER:
        return gen.rademacher(int(n)).astype(np.float32)
    if dist == ZO_GAUSS:
        return gen.gauss(int(n)).astype(np.float32) * ZO_GAUSS_SCALE
    raise ValueError(f"unknown zo distribution {dist!r}")


def zo_perturb(master, gen, a, dist) -> np.ndarray:
    """tt_zo_perturb_f16: the halves half(master + a*z)."""
    m = np.asarray(master, np.float32).reshape(-1)
    return R(m + F32(a) * zo_z(gen, m.size, dist))


def zo_update(master, gen, a, dist):
    """tt_zo_update_f16: (master + a*z, its halves)."""
    m = np.asarray(master, np.float32).reshape(-1)
    m = m + F32(a) * zo_z(gen, m.size, dist)
    return m, R(m)


def zo_mom_acc(v, gen, mu, a, dist, v32: bool) -> np.ndarray:
    """tt_zo_mom_acc_f16_v32 (v32, float state) / tt_zo_mom_acc_f16 (half state):
    mu*v + a*z, stored as float or rounded to half."""
    vf = np.asarray(v, np.float32).reshape(-1) if v32 else H(v).reshape(-1)
    out = F32(mu) * vf + F32(a) * zo_z(gen, vf.size, dist)
    return out if v32 else R(out)


def zo_mom_upd(master, v, a, v32: bool):
    """tt_zo_mom_upd_f16_v32 / _f16: (master + a*v, its halves)."""
    vf = np.asarray(v, np.float32).reshape(-1) if v32 else H(v).reshape(-1)
    m = np.asarray(master, np.float32).reshape(-1) + F32(a) * vf
    return m, R(m)


# ---- forward mode (JVP): tt_jvp_f16.c ----------------------------------------------------------
# Tangents are halves like the activations; each output is one float32 chain, rounded to half
# once (tt_fp16.h, "forward mode"). The C loops are output-stationary and re-draw weight
# tangents from copies of the generator state; the values and their order in every chain are
# those of the tensor drawn once in memory order, which is what these twins use.

class TangentGen:
    """tt_tangent_f16: the parameter-tangent generator, positioned at (seed, stream) plus `skip`
    draws. ``take(n)`` returns the next n values (float32) and advances exactly as the C."""

    def __init__(self, seed: int, stream: int, skip: int, dist: int):
        if dist not in (ZO_RADEMACHER, ZO_GAUSS):
            raise ValueError(f"unknown tangent distribution {dist!r}")
        self.gen = Pcg32(seed, stream)
        self.gen.advance(int(skip))
        self.dist = dist
        self.word = 0       # rademacher: the draw being consumed, already shifted
        self.bits = 0       # rademacher: its bits left

    def take(self, n: int) -> np.ndarray:
        n = int(n)
        if self.dist == ZO_GAUSS:
            return self.gen.gauss(n).astype(np.float32) * ZO_GAUSS_SCALE
        lead = min(n, self.bits)
        first = (self.word >> np.arange(lead, dtype=np.uint64)) & 1
        self.word >>= lead
        self.bits -= lead
        rest = n - lead
        if rest == 0:
            bits = first
        else:
            draws = (rest + 31) // 32
            u = self.gen.u32(draws)
            more = ((u[:, None] >> np.arange(32, dtype=np.uint32)[None, :]) & 1).reshape(-1)
            bits = np.concatenate([first, more[:rest].astype(np.uint64)])
            used = rest - 32 * (draws - 1)
            self.word = int(u[-1]) >> used if used < 32 else 0
            self.bits = 32 - used
        return np.where(bits != 0, F32(-1.0), F32(1.0)).astype(np.float32)


def tangent_fill(gen: TangentGen, n: int) -> np.ndarray:
    """tt_tangent_fill_f16: the next n tangent values as halves."""
    return R(gen.take(n))


def gemm_jvp(x, tx, w, n, k, m, vw: TangentGen | None, vb: TangentGen | None) -> np.ndarray:
    """tt_gemm_jvp_f16: half(chain tx . w, then chain x . v_w, then + v_b)."""
    acc = np.zeros((n, m), np.float32)
    if tx is not None:
        acc = chains.gemm_fwd(H(tx).reshape(n, k), H(w).reshape(m, k), acc)
    if vw is not None:
        acc = chains.gemm_fwd(H(x).reshape(n, k), vw.take(m * k).reshape(m, k), acc)
    if vb is not None:
        acc = acc + vb.take(m)[None, :]
    return R(acc).reshape(-1)


def conv2d_jvp(p, x, tx, w, vw: TangentGen | None, vb: TangentGen | None) -> np.ndarray:
    """tt_conv2d_jvp_f16: per output, half(taps of tx * w, then taps of x * v_w, then + v_b)."""
    xs, ws, ys = _conv_shapes(p)
    acc = np.zeros(ys, np.float32)
    if tx is not None:
        acc = chains.conv_fwd(p, H(tx).reshape(xs), H(w).reshape(ws), acc)
    if vw is not None:
        acc = chains.conv_fwd(p, H(x).reshape(xs), vw.take(int(np.prod(ws))).reshape(ws), acc)
    if vb is not None:
        acc = acc + vb.take(p["out_c"])[:, None, None]
    return R(acc).reshape(-1)


def maxpool2d_jvp(p, x, tx) -> np.ndarray:
    """tt_maxpool2d_jvp_f16: tx at the forward pass's argmax (bit copies)."""
    a = chains.window_argmax(p, H(_pool_x2(p, np.asarray(x, np.uint16))), nan_first=True)
    t2 = _pool_x2(p, np.asarray(tx, np.uint16))
    return np.take_along_axis(t2, a.reshape(p["c"], -1), axis=1).reshape(-1)


def add_jvp(shape, a_stride, b_stride, ta, tb) -> np.ndarray:
    """tt_add_jvp_f16: ta + tb (tt_add_fwd_f16), or the one given tangent broadcast (bits)."""
    if ta is not None and tb is not None:
        return add_fwd(shape, a_stride, b_stride, ta, tb)
    src, st = (ta, a_stride) if ta is not None else (tb, b_stride)
    return np.asarray(src, np.uint16)[chains.bcast_offsets(shape, st)].reshape(-1)


def softmax_xent_jvp(logits, labels, rows, cols, tlogits):
    """tt_softmax_xent_jvp_f16: (dL.t float32, status_nan)."""
    x = H(logits).reshape(rows, cols)
    t = H(tlogits).reshape(rows, cols)
    labels = np.asarray(labels, np.int64)
    ar = np.arange(rows)
    m = x[:, 0].copy()
    for j in range(1, cols):
        m = np.where(x[:, j] > m, x[:, j], m)
    e = expf_plain(x - m[:, None])
    s = np.zeros(rows, np.float32)
    q = np.zeros(rows, np.float32)
    for j in range(cols):
        s = s + e[:, j]
        q = np.where(labels != j, q + e[:, j], q)
    f = F32(1.0) / F32(rows)
    g = (e / s[:, None]) * f
    g[ar, labels] = -(q / s) * f
    acc = F32(0)
    for r in range(rows):
        for j in range(cols):
            acc = F32(acc + F32(g[r, j] * t[r, j]))
    return acc, not np.isfinite(acc)
