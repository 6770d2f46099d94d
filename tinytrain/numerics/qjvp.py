"""numpy twins of the fixed-point forward-mode (JVP) kernels (runtime_c/src/tt_jvp_q.c,
specification in runtime_c/include/tt_qjvp.h), bit for bit.

Contract (``bits`` 8: int8 data / int32 accumulators, the _q8 kernels; 16: int16 / int64,
_q16). The Gemm / Conv functions also take ``wbits`` (weight bits, default ``bits``):
``bits=8, wbits=16`` is the mixed w16a8 format of tt_gemm_fwd_w16a8 (_w16a8: int8 data and
tangent, int16 weights, so an int64 accumulator for tx W). Every function returns the values
the C writes (accumulators as int32 / int64 arrays, tangents in the storage dtype, flat) and
raises ValueError where the C returns TT_ERR_ARG or TT_ERR_SHAPE.

- Directions z are integers drawn from a :class:`~tinytrain.numerics.prng.Pcg32` positioned
  at the first value of ONE tensor, in its memory order, exactly as the zo kernels draw them
  (``qkernels._zo_z``: Rademacher +-1 from bit i % 32 of draw i // 32; Gauss = byte sum - 510,
  one draw per value). The drawing functions consume the tensor's values (ceil(size / 32) or
  size draws) and leave ``rng`` after them, as the C leaves its tt_prng.
- ``gemm_jvp`` / ``conv2d_jvp`` (tt_gemm_jvp_* / tt_conv2d_jvp_*): the tangent of a Gemm /
  Conv output, (ty, e_out). Written here AS the composition that the fused C kernels
  reproduce with O(1) memory: the raw terms A = ``gemm_acc`` / ``conv2d_acc`` of (tx, W),
  B = ``gemm_zx`` / ``conv2d_zx`` of x, C = ``zo_values`` per output channel; every int64
  accumulator (A and B for q16, A for w16a8) narrowed tensor-wide to int32
  (``fixed.grad_quant_pow2(., 32)``, the shift added to the term's exponent); then
  ``tangent_join`` (of ``bits``). ``scales`` is a :class:`JvpScales` (or a dict with
  any of its six fields, the rest 0). zw / zb (None: term absent) advance past their tensor
  only on success, as the C's generators. The spec's building blocks have no C of their own (the fused kernels
  replaced them):
- ``gemm_acc`` / ``conv2d_acc``: raw accumulators x W^T / conv(x, W) (no bias, no requant;
  int64 when ``bits`` or ``wbits`` is 16).
- ``gemm_zx`` / ``conv2d_zx``: x Z^T / conv(x, Z) with Z the weight-shaped direction
  ([m][k] / [out_c][in_c/groups][k_h][k_w], drawn in that memory order).
- ``zo_values``: the next n direction values (int32), e.g. a bias direction.
- ``tangent_join``: the sum of up to three terms v_t[i'] * mult_t * 2^(exp_t - 31) as an
  int8 / int16 tangent with exponent e_out (the exact int64 algorithm of tt_qjvp.h:
  Q_t = rdbpot(v_t * mult_t, min(E - E_t + 2, 63)), S = sum Q_t, s = grad_scale_pow2(S),
  ty = rdbpot(S, s), e_out = E + 2 + s, E = max(exp_t - 31)).
- ``maxpool2d_jvp``: tx at the cell maxpool2d_bwd_x sends the gradient to (first maximum).
- ``dot_q30``: sum g[i] * t[i] as a Python int (the loss tangent, g in Q30).

Conv / pool parameters are dicts with the fields of tt_conv2d_params / tt_pool2d_params
(``ops.geometry.CONV_FIELDS`` / ``POOL_FIELDS``, as ``conv_geometry`` builds them).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from . import chains
from .fixed import I64, grad_quant_pow2, grad_scale_pow2, rdbpot, storage_dtype
from .prng import Pcg32
from .qkernels import ZO_GAUSS, ZO_RADEMACHER, _zo_z

EXP_MAX = 1 << 24                    # TT_QJVP_EXP_MAX
DOT_NMAX = {8: 1 << 26, 16: 1 << 18}  # tt_dot_q30_*: n below this keeps the int64 sum exact


def _a(x):
    return np.asarray(x, dtype=I64)


def _acc_dtype(bits, wbits=None):
    """The accumulator of data of `bits` times weights of `wbits` (default `bits`): int32 for
    q8, int64 for q16 and w16a8 (int8 x int16 products reach 2^22)."""
    wbits = bits if wbits is None else wbits
    if (bits, wbits) not in ((8, 8), (16, 16), (8, 16)):
        raise ValueError(f"no kernel for {wbits}-bit weights and {bits}-bit data")
    return np.int32 if wbits == 8 else np.int64


def _check_dist(dist):
    if dist not in (ZO_RADEMACHER, ZO_GAUSS):
        raise ValueError(f"unknown direction distribution {dist}")


def _conv_shapes(p):
    cin_g = p["in_c"] // p["groups"]
    return ((p["in_c"], p["in_h"], p["in_w"]), (p["out_c"], cin_g, p["k_h"], p["k_w"]),
            (p["out_c"], p["out_h"], p["out_w"]))


# ---- building blocks of the fused kernels (numpy only) -----------------------------------

def gemm_acc(x, w, n, k, m, bits=8, wbits=None):
    """Term A of tt_gemm_jvp_*: acc[i][j] = sum_kk x[i][kk] * w[j][kk], flat [n*m]."""
    dt = _acc_dtype(bits, wbits)
    acc = chains.gemm_fwd(_a(x).reshape(n, k), _a(w).reshape(m, k), np.zeros((n, m), I64))
    return acc.astype(dt).reshape(-1)


def conv2d_acc(p, x, w, bits=8, wbits=None):
    """Term A of tt_conv2d_jvp_*: the accumulator of conv2d_fwd without bias / requant."""
    dt = _acc_dtype(bits, wbits)
    xs, ws, ys = _conv_shapes(p)
    acc = chains.conv_fwd(p, _a(x).reshape(xs), _a(w).reshape(ws), np.zeros(ys, I64))
    return acc.astype(dt).reshape(-1)


# ---- x . z ---------------------------------------------------------------------------------

def gemm_zx(x, n, k, m, rng: Pcg32, dist, bits=8):
    """Term B of tt_gemm_jvp_*: x Z^T with Z [m][k] the next m*k direction values."""
    dt = _acc_dtype(bits)
    _check_dist(dist)
    z = _zo_z(rng, m * k, dist).reshape(m, k)
    acc = chains.gemm_fwd(_a(x).reshape(n, k), z, np.zeros((n, m), I64))
    return acc.astype(dt).reshape(-1)


def conv2d_zx(p, x, rng: Pcg32, dist, bits=8):
    """Term B of tt_conv2d_jvp_*: conv(x, Z) with Z the next weight-sized direction."""
    dt = _acc_dtype(bits)
    _check_dist(dist)
    xs, ws, ys = _conv_shapes(p)
    z = _zo_z(rng, int(np.prod(ws)), dist).reshape(ws)
    acc = chains.conv_fwd(p, _a(x).reshape(xs), z, np.zeros(ys, I64))
    return acc.astype(dt).reshape(-1)


def zo_values(rng: Pcg32, n, dist):
    """Term C of the fused kernels (a bias direction): the next n direction values, int32."""
    _check_dist(dist)
    if n < 0:
        raise ValueError("n < 0")
    return _zo_z(rng, n, dist).astype(np.int32)


# ---- tangent join ------------------------------------------------------------------------

def tangent_join(n, inner, a, a_mult, a_exp, b, b_mult, b_exp, c, c_mult, c_exp, bits=8):
    """tt_tangent_join_q8 / _q16: (ty in the storage dtype, e_out). a, b: n int32 values or
    None; c: n // inner int32 values (index i // inner) or None. Exact int64 arithmetic."""
    _acc_dtype(bits)
    terms = [(a, a_mult, a_exp, False), (b, b_mult, b_exp, False), (c, c_mult, c_exp, True)]
    present = [t for t in terms if t[0] is not None]
    if n < 0 or not present:
        raise ValueError("tangent_join needs n >= 0 and at least one term")
    if c is not None and (inner < 1 or n % inner != 0):
        raise ValueError("c needs inner >= 1 dividing n")
    for v, mult, ex, _ in present:
        if not 0 <= int(mult) < (1 << 31) or not -EXP_MAX <= int(ex) <= EXP_MAX:
            raise ValueError(f"mult {mult} / exp {ex} out of range")
    e = max(int(ex) - 31 for _, _, ex, _ in present)
    s_acc = np.zeros(n, I64)
    for v, mult, ex, per_channel in present:
        v = _a(v).reshape(-1)
        if v.size and (v.min() < -(1 << 31) or v.max() >= (1 << 31)):
            raise ValueError("term values must be int32")
        if per_channel:
            if v.size != n // inner:
                raise ValueError(f"c has {v.size} values, expected {n // inner}")
            v = np.repeat(v, inner)
        elif v.size != n:
            raise ValueError(f"term has {v.size} values, expected {n}")
        p = v * I64(int(mult))                                   # |p| < 2^62: exact
        s_acc = s_acc + rdbpot(p, min(e - (int(ex) - 31) + 2, 63))
    s = grad_scale_pow2(s_acc, bits)
    ty = rdbpot(s_acc, s).astype(storage_dtype(bits))
    return ty, e + 2 + s


# ---- fused Gemm / Conv tangents -------------------------------------------------------------

@dataclass(frozen=True)
class JvpScales:
    """tt_jvp_scales: term t's real factor is t_mult * 2^(t_exp - 31) (an absent term's pair
    is ignored). a: the tangent through x (tx W), b: the weight direction (x Z), c: the bias
    direction (z_b)."""
    a_mult: int = 0
    a_exp: int = 0
    b_mult: int = 0
    b_exp: int = 0
    c_mult: int = 0
    c_exp: int = 0

    @classmethod
    def of(cls, s) -> "JvpScales":
        if isinstance(s, cls):
            return s
        unknown = set(s) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown jvp scale fields {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in s.items()})


def _check_conv(p):
    """tt_conv2d_fwd_*'s geometry check (TT_ERR_SHAPE)."""
    if p is None or any(p[f] <= 0 for f in ("in_c", "in_h", "in_w", "out_c", "out_h", "out_w",
                                            "k_h", "k_w", "stride_h", "stride_w", "groups")) \
            or p["pad_top"] < 0 or p["pad_left"] < 0 or p["in_c"] % p["groups"] \
            or p["out_c"] % p["groups"]:
        raise ValueError(f"convolution geometry refused: {p}")


def conv2d_jvp_scratch(p) -> int:
    """tt_conv2d_jvp_scratch: int16 elements of the direction row (0 for a refused geometry)."""
    try:
        _check_conv(p)
    except ValueError:
        return 0
    return p["in_c"] // p["groups"] * p["k_h"] * p["k_w"]


def _jvp(n, inner, acc_a, acc_b, n_ch, zw, zb, dist, scales, bits):
    """The composition behind both fused kernels. acc_a() / acc_b(rng) compute the raw terms
    (acc_b draws the weight direction from rng). The generators are advanced only on success:
    the work runs on copies (as the C restores its saved states on a late error)."""
    _acc_dtype(bits)
    s = JvpScales.of(scales)
    if acc_a is None and zw is None and zb is None:
        raise ValueError("jvp needs at least one of tx, zw, zb")
    if zw is not None and zw is zb:
        raise ValueError("zw and zb must be different generators")
    if zw is not None or zb is not None:
        _check_dist(dist)
    terms = ((acc_a is not None, s.a_mult, s.a_exp), (zw is not None, s.b_mult, s.b_exp),
             (zb is not None, s.c_mult, s.c_exp))
    for on, mult, ex in terms:
        if on and (not 0 <= mult < (1 << 31) or not -EXP_MAX <= ex <= EXP_MAX):
            raise ValueError(f"mult {mult} / exp {ex} out of range")
    zwc = None if zw is None else zw.copy()
    zbc = None if zb is None else zb.copy()

    def narrow(acc):                  # an int64 accumulator -> int32 tensor-wide
        if acc is None or acc.dtype == np.int32:
            return acc, 0
        return grad_quant_pow2(acc, 32)
    a, ra = narrow(None if acc_a is None else acc_a())
    b, rb = narrow(None if zw is None else acc_b(zwc))
    c = None if zb is None else zo_values(zbc, n_ch, dist)
    ty, e_out = tangent_join(n, inner, a, s.a_mult, s.a_exp + ra, b, s.b_mult, s.b_exp + rb,
                             c, s.c_mult, s.c_exp, bits)
    for g, gc in ((zw, zwc), (zb, zbc)):
        if g is not None:
            g.state, g.inc = gc.state, gc.inc
    return ty, e_out


def gemm_jvp(x, tx, w, k, m, zw: Pcg32 | None, zb: Pcg32 | None, dist, scales, bits=8,
             wbits=None):
    """tt_gemm_jvp_q8 / _q16, or _w16a8 with bits=8, wbits=16 (batch 1: x [k], w [m][k]):
    (ty [m] in the storage dtype of `bits`, e_out). tx / zw / zb None: that term absent.
    Advances zw past m*k values and zb past m."""
    _acc_dtype(bits, wbits)
    if k < 0 or m < 0:
        raise ValueError("k, m must be >= 0")
    acc_a = None if tx is None else (lambda: gemm_acc(tx, w, 1, k, m, bits, wbits))
    return _jvp(m, 1, acc_a, lambda rng: gemm_zx(x, 1, k, m, rng, dist, bits), m, zw, zb, dist,
                scales, bits)


def conv2d_jvp(p, x, tx, w, zw: Pcg32 | None, zb: Pcg32 | None, dist, scales, bits=8,
               wbits=None):
    """tt_conv2d_jvp_q8 / _q16, or _w16a8 with bits=8, wbits=16: (ty [out_c*out_h*out_w] in
    the storage dtype of `bits`, e_out). tx / zw / zb None: that term absent. Advances zw past
    the weight's size values and zb past out_c."""
    _acc_dtype(bits, wbits)
    _check_conv(p)
    inner = p["out_h"] * p["out_w"]
    acc_a = None if tx is None else (lambda: conv2d_acc(p, tx, w, bits, wbits))
    return _jvp(p["out_c"] * inner, inner, acc_a, lambda rng: conv2d_zx(p, x, rng, dist, bits),
                p["out_c"], zw, zb, dist, scales, bits)


# ---- max pool, dot ---------------------------------------------------------------------------

def maxpool2d_jvp(p, x, tx, bits=8):
    """tt_maxpool2d_jvp_q8 / _q16: tx at each window's first maximum of x."""
    c = p["c"]
    arg = chains.window_argmax(p, _a(np.asarray(x).reshape(c, -1)), nan_first=False)
    t2 = np.asarray(tx).reshape(c, -1)
    return np.take_along_axis(t2, arg.reshape(c, -1), axis=1).astype(
        storage_dtype(bits)).reshape(-1)


def dot_q30(g, t, bits=8):
    """tt_dot_q30_q8 / _q16: sum g[i] * t[i] as a Python int (exact in int64 below
    DOT_NMAX[bits] values)."""
    g, t = _a(g).reshape(-1), _a(t).reshape(-1)
    if g.size != t.size or g.size >= DOT_NMAX[bits]:
        raise ValueError("dot_q30: sizes differ or n too large for an exact int64 sum")
    return int((g * t).sum())
