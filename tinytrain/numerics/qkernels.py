"""numpy twins of the fixed-point kernels (runtime_c/src/tt_*_q.c), bit for bit.

``bits`` selects the family: 8 (int8 storage, int32 accumulators, the _q8 kernels) or 16
(int16 / int64, _q16). The forward kernels also take ``wbits`` (weight bits, default
``bits``): ``bits=8, wbits=16`` is the mixed w16a8 format (_w16a8: int8 activations, int16
weights, int64 accumulators and bias, TT_RQ_TFLITE by ``mbqm64``). Inputs are integer arrays;
all arithmetic is int64 with the C's rounding and saturation (fixed.py). Kernels that
saturate return ``(values, saturations)`` where saturations is the amount the C adds to its
counter. Conv / pool parameters are dicts with the field names of tt_conv2d_params /
tt_pool2d_params; ``init`` is the previous accumulator contents for accumulate = 1 (None: 0).
"""
from __future__ import annotations

import numpy as np

from . import chains
from .fixed import (INT32_MAX, INT32_MIN, I64, Requant, exp_q24_q30, grad_quant_pow2,
                    log_q30_q24, mbqm, qrange, rdbpot, requant, sat, shift_round, storage_dtype,
                    tdiv)
from .prng import Pcg32, sr_rshift

ROUND_NEAREST, ROUND_STOCHASTIC = 0, 1


def _a(x):
    return np.asarray(x, dtype=I64)


def _acc_dtype(bits):
    return np.int32 if bits == 8 else np.int64


def _init(init, shape):
    return np.zeros(shape, I64) if init is None else _a(init).reshape(shape)


def _out(v, bits):
    return np.asarray(v).astype(storage_dtype(bits))


# ---- GEMM / bias ---------------------------------------------------------------------------

def _acc64(bits, wbits):
    """Whether the accumulator is int64 (q16, w16a8), which selects mbqm64 for TT_RQ_TFLITE."""
    wbits = bits if wbits is None else wbits
    if (bits, wbits) not in ((8, 8), (16, 16), (8, 16)):
        raise ValueError(f"no kernel for {wbits}-bit weights and {bits}-bit activations")
    return wbits == 16


def gemm_fwd(x, w, b, n, k, m, rq: Requant, bits=8, wbits=None):
    """tt_gemm_fwd_q8 / _q16, or _w16a8 with bits=8, wbits=16: (y, saturations)."""
    init = np.zeros((n, m), I64) if b is None else np.broadcast_to(_a(b)[None, :], (n, m))
    acc = chains.gemm_fwd(_a(x).reshape(n, k), _a(w).reshape(m, k), init)
    y, s = requant(rq, acc, np.arange(m)[None, :], bits, acc64=_acc64(bits, wbits))
    return _out(y, bits).reshape(-1), s


def gemm_bwd_x(gy, w, n, k, m, init=None, bits=8):
    acc = chains.gemm_bwd_x(_a(gy).reshape(n, m), _a(w).reshape(m, k), _init(init, (n, k)))
    return acc.astype(_acc_dtype(bits)).reshape(-1)


def gemm_bwd_w(gy, x, n, k, m, init=None, bits=8):
    acc = chains.gemm_bwd_w(_a(gy).reshape(n, m), _a(x).reshape(n, k), _init(init, (m, k)))
    return acc.astype(_acc_dtype(bits)).reshape(-1)


def bias_bwd(gy, outer, c, inner, init=None, bits=8):
    acc = _init(init, (c,)) + _a(gy).reshape(outer, c, inner).sum(axis=(0, 2))
    return acc.astype(_acc_dtype(bits))


# ---- convolution ----------------------------------------------------------------------------

def _conv_shapes(p):
    cin_g = p["in_c"] // p["groups"]
    return ((p["in_c"], p["in_h"], p["in_w"]), (p["out_c"], cin_g, p["k_h"], p["k_w"]),
            (p["out_c"], p["out_h"], p["out_w"]))


def conv2d_fwd(p, x, w, b, rq: Requant, bits=8, wbits=None):
    """tt_conv2d_fwd_q8 / _q16, or _w16a8 with bits=8, wbits=16: (y, saturations)."""
    xs, ws, ys = _conv_shapes(p)
    init = (np.zeros(ys, I64) if b is None
            else np.broadcast_to(_a(b)[:, None, None], ys).copy())
    acc = chains.conv_fwd(p, _a(x).reshape(xs), _a(w).reshape(ws), init)
    y, s = requant(rq, acc, np.arange(p["out_c"])[:, None, None], bits,
                   acc64=_acc64(bits, wbits))
    return _out(y, bits).reshape(-1), s


def conv2d_bwd_x(p, gy, w, init=None, bits=8):
    xs, ws, ys = _conv_shapes(p)
    acc = chains.conv_bwd_x(p, _a(gy).reshape(ys), _a(w).reshape(ws), _init(init, xs))
    return acc.astype(_acc_dtype(bits)).reshape(-1)


def conv2d_bwd_w(p, gy, x, init=None, bits=8):
    xs, ws, ys = _conv_shapes(p)
    acc = chains.conv_bwd_w(p, _a(gy).reshape(ys), _a(x).reshape(xs), _init(init, ws))
    return acc.astype(_acc_dtype(bits)).reshape(-1)


# ---- ReLU and masks ---------------------------------------------------------------------------

def relu_fwd(x):
    x = np.asarray(x)
    return np.where(x < 0, 0, x).astype(x.dtype)


def relu_bwd_x(gy, y):
    gy = np.asarray(gy)
    return np.where(np.asarray(y) > 0, gy, 0).astype(gy.dtype)


def relu_mask_pack(y):
    """Bit i % 8 of byte i // 8 = (y[i] > 0); ceil(n/8) bytes."""
    return np.packbits(np.asarray(y).reshape(-1) > 0, bitorder="little")


def mask_unpack(mask, n):
    return np.unpackbits(np.asarray(mask, np.uint8), count=n, bitorder="little")


def relu_bwd_x_mask(gy, mask):
    gy = np.asarray(gy)
    return np.where(mask_unpack(mask, gy.size).astype(bool), gy, 0).astype(gy.dtype)


# ---- pooling --------------------------------------------------------------------------------

def _div_round(s, d):
    """TFLite's average-pool rounding: (s > 0 ? s + d/2 : s - d/2) / d, C division."""
    s, d = _a(s), _a(d)
    return tdiv(np.where(s > 0, s + d // 2, s - d // 2), d)


def maxpool2d_fwd(p, x):
    x = np.asarray(x)
    x2 = x.reshape(p["c"], -1)
    a = chains.window_argmax(p, _a(x2), nan_first=False)
    return np.take_along_axis(x2, a.reshape(p["c"], -1), axis=1).reshape(-1)


def maxpool2d_bwd_x(p, gy, x, init=None, bits=8):
    c = p["c"]
    lo, hi = qrange(bits)
    a = chains.window_argmax(p, _a(np.asarray(x).reshape(c, -1)), nan_first=False)
    gx = _init(init, (c, p["in_h"] * p["in_w"])).copy()
    g = _a(gy).reshape(c, p["out_h"], p["out_w"])
    rows = np.arange(c)
    nsat = 0
    for oh in range(p["out_h"]):
        for ow in range(p["out_w"]):
            idx = a[:, oh, ow]
            v, n = sat(gx[rows, idx] + g[:, oh, ow], lo, hi)
            gx[rows, idx] = v
            nsat += n
    return _out(gx, bits).reshape(-1), nsat


def avgpool2d_fwd(p, x, bits=8):
    s, count = chains.window_sum(p, _a(np.asarray(x).reshape(p["c"], -1)), 0)
    d = chains.pool_divisor(p, count)
    return _out(_div_round(s, d[None]), bits).reshape(-1)


def avgpool2d_bwd_x(p, gy, frac_bits, init=None, bits=8):
    c = p["c"]
    cells, count = chains.pool_windows(p)
    d = chains.pool_divisor(p, count)
    g = _div_round(_a(gy).reshape(c, p["out_h"], p["out_w"]) << frac_bits, d[None])
    gx = _init(init, (c, p["in_h"] * p["in_w"])).copy()
    for valid, idx in cells:                 # integer: order free; per cell, sum its windows
        contrib = np.where(valid[None], g, 0).reshape(c, -1)
        np.add.at(gx, (slice(None), idx.reshape(-1)), contrib)
    return gx.astype(_acc_dtype(bits)).reshape(-1)


def global_avgpool_fwd(x, c, hw, bits=8):
    return _out(_div_round(_a(x).reshape(c, hw).sum(axis=1), hw), bits)


def global_avgpool_bwd_x(gy, c, hw, frac_bits, init=None, bits=8):
    g = _div_round(_a(gy) << frac_bits, hw)
    base = _init(init, (c, hw))
    return (base + g[:, None]).astype(_acc_dtype(bits)).reshape(-1)


# ---- add --------------------------------------------------------------------------------

def add_fwd(shape, a_stride, b_stride, a, b, q, bits=8):
    """TFLite ADD with q = fixed.AddParams, no activation clamp: (y, saturations)."""
    return add_fwd_act(shape, a_stride, b_stride, a, b, q, None, None, bits)


def add_fwd_act(shape, a_stride, b_stride, a, b, q, act_min, act_max, bits=8):
    """tt_add_fwd_q8 / _q16 (act_min / act_max None: the storage range)."""
    lo, hi = qrange(bits)
    va = _a(a)[chains.bcast_offsets(shape, a_stride)]
    vb = _a(b)[chains.bcast_offsets(shape, b_stride)]
    sa = mbqm(va << q.left_shift, q.a_mult, q.a_shift)
    sb = mbqm(vb << q.left_shift, q.b_mult, q.b_shift)
    r, n = sat(mbqm(np.clip(sa + sb, INT32_MIN, INT32_MAX), q.y_mult, q.y_shift), lo, hi)
    r = np.clip(r, lo if act_min is None else act_min, hi if act_max is None else act_max)
    return _out(r, bits).reshape(-1), n


def add_bwd(shape, strides, gy, g_len, init=None, bits=8):
    g0 = np.zeros(g_len, I64) if init is None else _a(init).copy()
    out, _ = chains.bcast_reduce(shape, strides, _a(gy).reshape(shape), g0)
    return out.astype(_acc_dtype(bits))


# ---- softmax cross-entropy ------------------------------------------------------------------

def softmax_xent(logits, labels, rows, cols, x_mult, x_shift):
    """(loss_q24 int, glogits_q30 int32 [rows*cols])."""
    x = _a(logits).reshape(rows, cols)
    labels = _a(labels)
    ar = np.arange(rows)
    mx = x.max(axis=1, keepdims=True)
    z = np.clip(shift_round((x - mx) * x_mult, x_shift - 7), INT32_MIN, INT32_MAX)
    e = exp_q24_q30(z)
    s = e.sum(axis=1)
    lrow = np.clip(log_q30_q24(s) - z[ar, labels], INT32_MIN, INT32_MAX)
    total = int(lrow.sum())
    loss = int(np.clip(_div_round(total, rows), INT32_MIN, INT32_MAX))
    p = ((e << 30) + (s // 2)[:, None]) // s[:, None]
    p[ar, labels] -= 1 << 30
    return loss, p.astype(np.int32).reshape(-1)


# ---- optimizers ----------------------------------------------------------------------------

def _round_shift(d, r, rounding, rng: Pcg32 | None):
    if rounding == ROUND_STOCHASTIC:
        return sr_rshift(d, r, rng.u32(d.size))
    return rdbpot(d, r)


def sgd_upd(w, g, mult, shift, rounding, rng=None, bits=8):
    """(new w, saturations). bits 8 / 16 / 32 (the _q32 bias variant)."""
    lo, hi = qrange(bits)
    delta = _round_shift(_a(g) * mult, 31 - shift, rounding, rng)
    v, n = sat(_a(w) - delta, lo, hi)
    return _out(v, bits), n


def momentum_upd(w, g, v, lr_mult, lr_shift, beta_mult, g_shift, rounding, rng=None, bits=8):
    """(new w, new v int32, saturations)."""
    lo, hi = qrange(bits)
    gv = shift_round(_a(g), g_shift)
    vd = rdbpot(_a(v) * beta_mult, 31)
    v_new, n1 = sat(vd + gv, INT32_MIN, INT32_MAX)
    delta = _round_shift(v_new * lr_mult, 31 - lr_shift, rounding, rng)
    w_new, n2 = sat(_a(w) - delta, lo, hi)
    return _out(w_new, bits), v_new.astype(np.int32), n1 + n2


# ---- forward gradient (SPSA) --------------------------------------------------------------

ZO_RADEMACHER, ZO_GAUSS = 0, 1


def _zo_z(rng: Pcg32, n: int, dist: int) -> np.ndarray:
    return (rng.rademacher(n) if dist == ZO_RADEMACHER else rng.gauss(n)).astype(I64)


def _sat_wide(x, lo, hi, bits):
    """sat() that is also exact for int64 storage (bits 64: Python integers, as the C adds
    with saturation instead of wrapping)."""
    if bits < 64:
        return sat(x, lo, hi)
    xs = [int(v) for v in np.asarray(x).reshape(-1)]
    n = sum(1 for v in xs if v < lo or v > hi)
    return np.array([min(max(v, lo), hi) for v in xs], dtype=np.int64).reshape(np.shape(x)), n


def zo_perturb(w, rng: Pcg32, eps: int, dist: int, bits=8):
    """tt_zo_perturb_q8 / _q16 / _q32 / _q64: (sat(w + eps * z), saturations); advances rng."""
    lo, hi = qrange(bits)
    z = _zo_z(rng, np.size(w), dist)
    x = (np.asarray(w).astype(object) + eps * z.astype(object)) if bits == 64 else _a(w) + eps * z
    v, n = _sat_wide(x, lo, hi, bits)
    return _out(v, bits), n


def zo_accum(g, rng: Pcg32, d: int, shift: int, dist: int):
    """tt_zo_accum_q32: (sat32(g + shift_round(d * z, shift)), saturations)."""
    z = _zo_z(rng, np.size(g), dist)
    v, n = sat(_a(g) + shift_round(z * d, shift), INT32_MIN, INT32_MAX)
    return v.astype(np.int32), n


ZO_C_MAX = 1 << 40


def zo_update(w, rng: Pcg32, dist: int, c: int, frac_bits: int, rounding: int,
              rrng: Pcg32 | None, lo: int, hi: int, bits=8):
    """tt_zo_update_q8 / _q16 / _q32 / _q64: (clamp(w - R(c * z, frac_bits), lo, hi),
    saturations) with
    R = rdbpot (nearest) or sr_rshift with one rrng draw per element (stochastic); z drawn
    from rng exactly as zo_perturb draws it. Advances rng (and rrng). ValueError where the C
    returns TT_ERR_ARG."""
    qlo, qhi = qrange(bits)
    if (dist not in (ZO_RADEMACHER, ZO_GAUSS) or abs(int(c)) > ZO_C_MAX
            or not 0 <= frac_bits <= 62 or lo < qlo or hi > qhi or lo > hi
            or rounding not in (ROUND_NEAREST, ROUND_STOCHASTIC)
            or (rounding == ROUND_STOCHASTIC and (rrng is None or rrng is rng))):
        raise ValueError("invalid zo_update arguments")
    d = _zo_z(rng, np.size(w), dist).reshape(np.shape(w)) * int(c)
    delta = _round_shift(d, frac_bits, rounding, rrng)
    x = (np.asarray(w).astype(object) - delta.astype(object)) if bits == 64 else _a(w) - delta
    v, n = _sat_wide(x, lo, hi, bits)
    return _out(v, bits), n


def zo_coef(d: int, mult: int, shift: int, frac_bits: int):
    """tt_zo_coef: (c, saturations), c = round(d * mult * 2^(shift - 31 + frac_bits)) ties
    away from zero, clamped to [-2^40, 2^40]."""
    e = int(shift) - 31 + int(frac_bits)
    if e < -63:
        return 0, 0
    c = int(shift_round(np.int64(int(d) * int(mult)), min(e, 62)))
    if abs(c) > ZO_C_MAX:
        return (ZO_C_MAX if c > 0 else -ZO_C_MAX), 1
    return c, 0


# ---- training-step glue (tt_train_q.c) -----------------------------------------------------

_RNE_MAGIC = np.float32(12582912.0)
_CLAMP = np.float32(4194304.0)


def _channel_of(n, channels, inner):
    return (np.arange(n) // inner) % channels


def quantize_f32(x, bits, inv_scale, channels=1, inner=1):
    """tt_quantize_f32: (values as the storage dtype, saturations). Raises ValueError on NaN
    (the C returns TT_ERR_NAN and writes nothing)."""
    x = np.asarray(x, np.float32).reshape(-1)
    if np.isnan(x).any():
        raise ValueError("NaN input")
    inv = np.asarray(inv_scale, np.float32).reshape(-1)[_channel_of(x.size, channels, inner)]
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.clip(x * inv, -_CLAMP, _CLAMP)
    if bits >= 32:
        with np.errstate(over="ignore", invalid="ignore"):
            d = (x * inv).astype(np.float64)
        lim = float(1 << (bits - 2))
        n = int(np.count_nonzero(np.abs(d) > lim))
        d = np.clip(d, -lim, lim)
        d = np.where(d >= 0, d + 0.5, d - 0.5)
        return np.trunc(d).astype(I64).astype(storage_dtype(bits) if bits == 32 else I64), n
    r = ((v + _RNE_MAGIC) - _RNE_MAGIC).astype(I64)
    v, n = sat(r, *qrange(bits))
    return _out(v, bits), n


def dequantize_f32(q, scale, channels=1, inner=1):
    """tt_dequantize_f32: (float)q * scale[ch] in float32 (int64 -> float rounds to nearest)."""
    q = np.asarray(q).reshape(-1)
    s = np.asarray(scale, np.float32).reshape(-1)[_channel_of(q.size, channels, inner)]
    return q.astype(np.float32) * s


def _sgd_upd_q64(w, g, mult, shift, rounding, rng):
    d = _a(g) * mult
    delta = _round_shift(d, 31 - shift, rounding, rng)
    wide = _a(w).astype(object) - delta.astype(object)
    lo, hi = -(1 << 63), (1 << 63) - 1
    n = sum(1 for v in wide if v < lo or v > hi)
    return np.array([min(max(v, lo), hi) for v in wide], dtype=np.int64), n


def sgd_upd_pc(w, wbits, g, channels, inner, mult, shift, e, rounding, rng=None):
    """tt_sgd_upd_pc: (new w, saturations). w: flat storage array of wbits (8/16/32/64)."""
    w = np.asarray(w).reshape(-1).copy()
    g = _a(g).reshape(-1)
    nsat = 0
    for c in range(channels):
        sl = slice(c * inner, (c + 1) * inner)
        sh = int(shift[c]) + int(e)
        if sh < -31 or int(mult[c]) == 0:
            continue
        if sh > 31:
            nsat += inner
            sh = 31
        if wbits == 64:
            w[sl], n = _sgd_upd_q64(w[sl], g[sl], int(mult[c]), sh, rounding, rng)
        else:
            w[sl], n = sgd_upd(w[sl], g[sl], int(mult[c]), sh, rounding, rng, wbits)
        nsat += n
    return w, nsat


def grad_join(a, ea, b, eb, bits):
    """tt_grad_join_q8 / _q16: (values, new exponent, saturations)."""
    e = max(int(ea), int(eb))
    da, db = max(int(ea) - e + 16, -62), max(int(eb) - e + 16, -62)
    s = shift_round(_a(a), da) + shift_round(_a(b), db)
    m = int(np.abs(s).max()) if s.size else 0
    qmax = (1 << (bits - 1)) - 1
    rs = 0
    while rs < 62 and (m if rs == 0 else (m + (1 << (rs - 1))) >> rs) > qmax:
        rs += 1
    v, n = sat(rdbpot(s, rs), *qrange(bits))
    return _out(v, bits), e - 16 + rs, n


MOM_FRAC = 16


def momentum_upd_pc(w, wbits, g, v, channels, inner, mult, shift, e, beta_mult, rounding,
                    rng=None):
    """tt_momentum_upd_pc: (new w, new v int32, saturations)."""
    w = np.asarray(w).reshape(-1).copy()
    g = _a(g).reshape(-1)
    v = _a(v).reshape(-1).copy()
    nsat = 0
    lo, hi = qrange(wbits)
    for c in range(channels):
        sl = slice(c * inner, (c + 1) * inner)
        sh = int(shift[c]) + int(e) + MOM_FRAC - 31
        sh = max(sh, -62)
        if sh > 0:
            nsat += inner
            sh = 0
        gv = shift_round(g[sl] * int(mult[c]), sh)
        vd = rdbpot(v[sl] * int(beta_mult), 31)
        nv, n1 = sat(vd + gv, INT32_MIN, INT32_MAX)
        v[sl] = nv
        d = _round_shift(nv, MOM_FRAC, rounding, rng)   # one draw per element, in order
        x = (w[sl].astype(object) - d.astype(object)) if wbits == 64 else _a(w[sl]) - d
        w[sl], n2 = _sat_wide(x, lo, hi, wbits)
        nsat += n1 + n2
    return w, v.astype(np.int32), nsat


# ---- width conversions (per-layer precision) ---------------------------------------------

def act_convert(x, xbits, ybits, mult, shift):
    """tt_act_convert_q: (values as the ybits storage dtype, saturations)."""
    v, n = sat(mbqm(_a(x), int(mult), int(shift)), *qrange(ybits))
    return _out(v, ybits), n


def grad_widen_q8_q16(x):
    """tt_grad_widen_q8_q16: x * 256 as int16 (exponent - 8)."""
    return (_a(x) * 256).astype(np.int16)


def grad_quant_pow2_q16_q8(g):
    """tt_grad_quant_pow2_q16_q8: (int8 values, rshift)."""
    v, rs = grad_quant_pow2(_a(g), 8)
    return v, rs
