"""Fixed-point Sigmoid and Tanh: table builders and numpy twins of runtime_c/src/tt_act_lut_q.c
(declarations: runtime_c/include/tt_qact.h), bit for bit.

Numerics contract
=================

Output scale (fixed by the function, never calibrated)
    y real = y_q * 2^-(bits-1)    (``y_exponent(bits)``: -7 for int8, -15 for int16)
    sigmoid: y_q = clamp(round(sigmoid(x) * 2^(bits-1)), 0, 2^(bits-1) - 1)
    tanh:    y_q = clamp(round(tanh(x) * 2^(bits-1)), -2^(bits-1), 2^(bits-1) - 1)
    round = to nearest, ties away from zero; the clamps are the storage range (qrange) with
    sigmoid's lower end at 0; they are part of the function and not counted as saturations.
    Only the top end loses anything: sigmoid / tanh -> 1 is stored as 127 / 32767.

int8 forward: a 256-entry int8 table, y = table[x + 128]
    ``build_act_table(fn, s_x, 8)`` evaluates the rule above in float64 at x = s_x * x_q for
    every x_q; the kernel is a gather, so C and numpy agree trivially. Error: <= 0.5 LSB, and
    <= 1 LSB where the top clamp applies.

int16 forward: a small table with integer linear interpolation
    Both functions are written as y = base + sign(x) * 2^A * g(|x|) with g increasing from 0
    to 1: tanh: g(u) = tanh(u), A = 15, base = 0; sigmoid: g(u) = tanh(u / 2) = 2 sigmoid(u) - 1,
    A = 14, base = 2^14. The table holds g in Q16 on n_seg equal segments of [0, X] (real
    units): table[j] = clamp(round(2^16 (g(u_j) - g''(u_j) h^2 / 16)), 0, 65535), u_j = j h,
    h = X / n_seg (uint16, n_seg + 1 entries; the -g'' h^2/16 term centres the chord error
    of linear interpolation). X = min(X_sat, 32768 s_x) with X_sat the input where
    1 - g < 2^-17 (tanh 6.24, sigmoid 12.48): the table ends where the function is saturated
    or where the int16 input ends, whichever comes first. Per element (all integer):
        u   = |x|                                   (int32, 0 .. 32768)
        p   = (u * mult) >> shift                   (int64; position in Q15 segments)
        j   = p >> 15;  f = p & 0x7FFF
        v   = table[n_seg] << 15                                       if j >= n_seg
            = table[j] * (2^15 - f) + table[j + 1] * f                 otherwise (< 2^31)
        m   = (v + 2^(s - 1)) >> s,  s = 31 - A     (16 for tanh, 17 for sigmoid)
        y   = clamp(base + m or base - m (x < 0), lo, hi)
    mult / shift encode n_seg * 2^15 * s_x / X (mult normalised to [2^30, 2^31); a scale so
    large that every |x| >= 1 is saturated gives mult = 2^31 - 1, shift = 0).
    Error against float64, exhaustive over all 65536 inputs for s_x from 2^-16 to 2^4:
    <= 1 output LSB (``FWD_MAX_ERR_LSB``) with the default n_seg = 512 (1026 bytes of flash
    per function and input scale): 1.0 only at the top clamp, elsewhere 0.73 (sigmoid) /
    0.96 (tanh). n_seg = 256 halves the table: 1.07 / 1.62 LSB.

Backward from the saved OUTPUT (the input is not kept)
    sigmoid' = y (1 - y), tanh' = 1 - y^2, exactly in integers from y_q (Y = 2^(bits-1)):
        sigmoid: d = y_q * (Y - y_q)     tanh: d = Y^2 - y_q^2
    so d = f' * 2^(2 (bits-1)) with no rounding at all, and gx_acc[i] = gy[i] * d[i] in int32
    (q8; |gx_acc| <= 2^21) or int64 (q16; <= 2^45). Real value: gx_acc * 2^(e_gy + E) with the
    constant ``bwd_exponent(fn, bits)`` = E = -14 (int8) / -30 (int16) for both functions;
    narrow with grad_quant (tt_grad_quant_pow2_*) and add E to the exponent. The only error is
    that of the forward output y (|dy| <= 1 LSB): |d 2^E - f'(x)| <= |1 - 2y| |dy| <=
    2^-(bits-1) for sigmoid and |2y| |dy| <= 2^-(bits-2) for tanh (``bwd_max_err``; measured
    0.99 / 1.99 times 2^-(bits-1)). RMS under N(0, 1): int8 1.5e-3 (sigmoid) / 3.3e-3 (tanh),
    int16 5.0e-6 / 2.2e-5.

Few-Bit Backward (Novikov et al., ICML 2022, arXiv 2202.00441)
    The forward stores a k-bit code per element (k in 1..4) instead of y; the backward is
    gx_acc[i] = gy[i] * level[code[i]] (int32 / int64, exponent ``bwd_exponent`` as above).
    sigmoid' and tanh' are even and decrease in |x|, so the level sets of the best 2^k-level
    piecewise-constant approximation are intervals in |x|: codes are intervals of u = |x_q|,
        code = #{j : u >= thr[j]}   (2^k - 1 ascending int32 thresholds, found by the binary
                                     search c = 0; for b = 2^(k-1) .. 1: if u >= thr[c+b-1]:
                                     c += b -- the C and the twin run exactly this)
    i.e. 2^(k+1) - 1 intervals on the x axis sharing levels symmetrically (the paper's DP with
    its parity option). ``build_act_codes`` picks thresholds and levels minimising
    sum_x w(x) (f'(s_x x) - level(x))^2 over the integer inputs x, w the standard normal
    density at s_x x (or the histogram of calibration samples): an exact dynamic programme
    over all 128 cut points (int8); int16: a DP over 1024 candidate cuts, then coordinate
    descent on the integer cuts (each moved to its best place between its neighbours until
    none moves: no single cut move can improve). Levels = the weighted means of f' per
    interval, rounded to 2^E.
    int8 keeps a 256-entry uint8 code table (code_table[x + 128], only the low k bits are
    used) so the code forward is a gather; int16 compares u with the thresholds.
    Weighted RMS error of the approximation of f' under N(0, 1) (``ActCodes.rms``, real units;
    int16 inputs with s_x = 2^-12, i.e. the continuous limit; ``FEWBIT_RMS``), and relative to
    the RMS of f' itself (sigmoid 0.212, tanh 0.681):
        k                1          2          3          4
        sigmoid     2.40e-2    1.23e-2    6.23e-3    3.14e-3     (11.4, 5.8, 2.9, 1.5 %)
        tanh        1.45e-1    7.05e-2    3.48e-2    1.73e-2     (21.3, 10.3, 5.1, 2.5 %)
    Each extra bit halves the error (2^k pieces of a smooth function: error ~ 2^-k), the
    behaviour the paper's DP relies on; an independent dense-grid Lloyd-Max in the tests finds
    the same optimum. For comparison, saving y in int8 (8 bits) gives 1.5e-3 / 3.3e-3: k = 4
    codes cost half the memory for 2x (sigmoid) / 5x (tanh) the derivative error.

Code packing (``act_code_pack`` / ``act_code_unpack``; packed size ``code_bytes(n, k)`` =
ceil(n k / 8) bytes)
    A little-endian bit stream: code i occupies stream bits [i k, i k + k), least significant
    bit first, stream bit b is bit b % 8 of byte b // 8. For k in {1, 2, 4} this is element i at
    bits (i k) % 8 of byte (i k) // 8; for k = 3 a code may straddle two bytes (no padding: 3
    bits per element). Unused high bits of the last byte are written as 0. Every 8 codes take
    exactly k bytes, which is how the C walks the stream.

Memory per element saved for the backward pass
    saved            int8 model   int16 model   vs. y int8   vs. y int16
    y (output)       8 bits       16 bits       1            1
    code, k = 4      4 bits       4 bits        1/2          1/4
    code, k = 3      3 bits       3 bits        3/8          3/16
    code, k = 2      2 bits       2 bits        1/4          1/8
    code, k = 1      1 bit        1 bit         1/8          1/16
    plus flash: int8 forward 256 B table (+ 256 B code table), int16 2 (n_seg + 1) B table
    (+ 4 (2^k - 1) B thresholds), levels 4 * 2^k B.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fixed import I64, qrange

FNS = ("sigmoid", "tanh")
LUT_FRAC = 15                      # fraction bits of the int16 interpolation position
N_SEG_DEFAULT = 512
N_SEG_MAX = 4096
G_SAT = 2.0 ** -17                 # the table ends where 1 - g < G_SAT (half a Q16 LSB)
LEVEL_MAX_Q8 = 1 << 23             # |level| bound of the q8 code backward (int32 products)
DP_CANDIDATES = 1024               # int16 few-bit DP: candidate cut points on |x_q|
FWD_MAX_ERR_LSB = 1.0              # |y_q - f(x) 2^(bits-1)|, int8 and int16 (n_seg 512)
FEWBIT_RMS = {"sigmoid": (2.40e-2, 1.23e-2, 6.23e-3, 3.14e-3),      # k = 1..4, N(0, 1)
              "tanh": (1.45e-1, 7.05e-2, 3.48e-2, 1.73e-2)}


def _check(fn: str, bits: int):
    if fn not in FNS:
        raise ValueError(f"no fixed-point table for {fn!r} (have {FNS})")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, not {bits}")


def y_exponent(bits: int) -> int:
    """Output exponent: y real = y_q * 2^y_exponent (both functions)."""
    return -(bits - 1)


def bwd_exponent(fn: str, bits: int) -> int:
    """E with gx real = gx_acc * 2^(e_gy + E), for the backward from y and from codes."""
    _check(fn, bits)
    return -2 * (bits - 1)


def bwd_max_err(fn: str, bits: int) -> float:
    """Bound on |d 2^E - f'(x)| of the backward from y (one LSB of forward error)."""
    _check(fn, bits)
    return (1.0 if fn == "sigmoid" else 2.0) * 2.0 ** -(bits - 1)


def code_bytes(n: int, k: int) -> int:
    """Bytes of n packed k-bit codes."""
    if not 1 <= k <= 4:
        raise ValueError(f"code bits k must be in 1..4, not {k}")
    return (n * k + 7) // 8


# ---- float64 references ---------------------------------------------------------------------

def act_ref(fn: str, x):
    """sigmoid / tanh in float64."""
    x = np.asarray(x, np.float64)
    return np.tanh(x) if fn == "tanh" else 0.5 + 0.5 * np.tanh(0.5 * x)


def deriv_ref(fn: str, x):
    """f'(x) in float64."""
    x = np.asarray(x, np.float64)
    if fn == "tanh":
        t = np.tanh(x)
        return 1.0 - t * t
    t = np.tanh(0.5 * x)
    return 0.25 * (1.0 - t * t)


def _round_away(v):
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _amp_bits(fn: str) -> int:
    """A: y = base + sign * 2^A g(|x|)."""
    return 15 if fn == "tanh" else 14


def _g(fn: str, u):
    """Normalised odd part on u >= 0: tanh(u) or tanh(u / 2), and its second derivative."""
    c = 1.0 if fn == "tanh" else 0.5
    t = np.tanh(c * np.asarray(u, np.float64))
    return t, -2.0 * c * c * t * (1.0 - t * t)


def _x_sat(fn: str) -> float:
    """The u beyond which 1 - g(u) < G_SAT."""
    v = math.atanh(1.0 - G_SAT)
    return v if fn == "tanh" else 2.0 * v


# ---- forward tables --------------------------------------------------------------------------

@dataclass(frozen=True)
class ActTable:
    """A forward table of ``fn`` for inputs of scale ``s_x``.

    bits 8:  ``table`` int8[256], y = table[x + 128] (C: const int8_t table[256]).
    bits 16: ``table`` uint16[n_seg + 1] plus ``n_seg``, ``mult``, ``shift``: the fields of
             tt_act_lut16 in that order; ``x_range`` is X (real units) for information.
    """
    fn: str
    bits: int
    s_x: float
    table: np.ndarray
    n_seg: int = 0
    mult: int = 0
    shift: int = 0
    x_range: float = 0.0

    @property
    def y_exp(self) -> int:
        return y_exponent(self.bits)

    @property
    def y_scale(self) -> float:
        return 2.0 ** self.y_exp

    @property
    def bwd_exp(self) -> int:
        return bwd_exponent(self.fn, self.bits)


def ideal_q(fn: str, x, bits: int):
    """The rounding rule of the contract, in float64: round(f(x) 2^(bits-1)) clamped (int64)."""
    lo, hi = qrange(bits)
    if fn == "sigmoid":
        lo = 0
    v = _round_away(act_ref(fn, x) * 2.0 ** (bits - 1))
    return np.clip(v, lo, hi).astype(I64)


def _lut_multiplier(real: float) -> tuple[int, int]:
    """(mult, shift) with mult * 2^-shift ~= real, mult in [2^30, 2^31) (real >= n_seg >= 1,
    so shift <= 30); a real too large for shift 0 gives INT32_MAX (every u >= 1 is then past
    the table's end anyway)."""
    if real >= 2.0 ** 31:
        return (1 << 31) - 1, 0
    shift = min(62, max(0, 30 - math.floor(math.log2(real))))
    mult = int(round(real * 2.0 ** shift))
    if mult >= 1 << 31:
        shift -= 1
        mult = int(round(real * 2.0 ** shift))
    return mult, shift


def build_act_table(fn: str, s_x: float, bits: int, n_seg: int | None = None) -> ActTable:
    """The forward table of ``fn`` (``"sigmoid"`` / ``"tanh"``) for input scale s_x (see the
    module docstring); ``n_seg`` (int16 only, 1..4096) defaults to N_SEG_DEFAULT."""
    _check(fn, bits)
    s_x = float(s_x)
    if not (s_x > 0 and math.isfinite(s_x)):
        raise ValueError(f"input scale must be positive and finite, not {s_x}")
    if bits == 8:
        xq = np.arange(-128, 128)
        return ActTable(fn, 8, s_x, ideal_q(fn, s_x * xq, 8).astype(np.int8))
    n_seg = N_SEG_DEFAULT if n_seg is None else int(n_seg)
    if not 1 <= n_seg <= N_SEG_MAX:
        raise ValueError(f"n_seg must be in 1..{N_SEG_MAX}, not {n_seg}")
    x_range = min(_x_sat(fn), 32768.0 * s_x)
    h = x_range / n_seg
    g, g2 = _g(fn, np.arange(n_seg + 1) * h)
    table = np.clip(_round_away(65536.0 * (g - g2 * h * h / 16.0)), 0, 65535).astype(np.uint16)
    mult, shift = _lut_multiplier(n_seg * 2.0 ** LUT_FRAC * s_x / x_range)
    return ActTable(fn, 16, s_x, table, n_seg, mult, shift, x_range)


# ---- kernels: forward ---------------------------------------------------------------------------

def _lut16_mag(tab: ActTable, u):
    """|y - base| before the sign, for u = |x| (int64 array)."""
    t = tab.table.astype(I64)
    p = (u * I64(tab.mult)) >> I64(tab.shift)
    j = np.minimum(p >> LUT_FRAC, tab.n_seg)
    f = p & ((1 << LUT_FRAC) - 1)
    inside = j < tab.n_seg
    j1 = np.minimum(j + 1, tab.n_seg)
    v = np.where(inside, t[j] * ((1 << LUT_FRAC) - f) + t[j1] * f, t[tab.n_seg] << LUT_FRAC)
    s = 31 - _amp_bits(tab.fn)
    return (v + (I64(1) << (s - 1))) >> s


def _act_fwd(tab: ActTable, fn: str, x):
    if tab.fn != fn:
        raise ValueError(f"a {tab.fn} table passed to {fn}")
    x = np.asarray(x)
    if tab.bits == 8:
        return tab.table[x.astype(I64).reshape(-1) + 128].astype(np.int8)
    xi = x.astype(I64).reshape(-1)
    m = _lut16_mag(tab, np.abs(xi))
    base = 0 if fn == "tanh" else 1 << 14
    lo = -32768 if fn == "tanh" else 0
    return np.clip(np.where(xi < 0, base - m, base + m), lo, 32767).astype(np.int16)


def sigmoid_fwd(tab: ActTable, x):
    """tt_sigmoid_fwd_q8 (table) / tt_sigmoid_fwd_q16 (tt_act_lut16), by tab.bits."""
    return _act_fwd(tab, "sigmoid", x)


def tanh_fwd(tab: ActTable, x):
    """tt_tanh_fwd_q8 / tt_tanh_fwd_q16."""
    return _act_fwd(tab, "tanh", x)


# ---- kernels: backward from the output -----------------------------------------------------------

def _acc_dtype(bits):
    return np.int32 if bits == 8 else np.int64


def sigmoid_bwd_x(gy, y, bits: int):
    """tt_sigmoid_bwd_x_q8 / _q16: gy * y (2^(bits-1) - y), int32 / int64 accumulators."""
    yy = np.asarray(y).astype(I64).reshape(-1)
    d = yy * ((I64(1) << (bits - 1)) - yy)
    return (np.asarray(gy).astype(I64).reshape(-1) * d).astype(_acc_dtype(bits))


def tanh_bwd_x(gy, y, bits: int):
    """tt_tanh_bwd_x_q8 / _q16: gy * (2^(2 bits - 2) - y^2)."""
    yy = np.asarray(y).astype(I64).reshape(-1)
    d = (I64(1) << (2 * bits - 2)) - yy * yy
    return (np.asarray(gy).astype(I64).reshape(-1) * d).astype(_acc_dtype(bits))


# ---- few-bit codes ------------------------------------------------------------------------------

def act_code_pack(codes, k: int) -> np.ndarray:
    """tt_act_code_pack: the low k bits of codes[i] into a little-endian bit stream."""
    nb = code_bytes(np.asarray(codes).size, k)
    c = np.asarray(codes).astype(np.uint8).reshape(-1) & ((1 << k) - 1)
    bits = ((c[:, None] >> np.arange(k, dtype=np.uint8)) & 1).reshape(-1)
    return np.packbits(bits, bitorder="little")[:nb] if nb else np.zeros(0, np.uint8)


def act_code_unpack(packed, n: int, k: int) -> np.ndarray:
    """tt_act_code_unpack: n k-bit codes (uint8) out of the bit stream."""
    code_bytes(n, k)
    if n == 0:
        return np.zeros(0, np.uint8)
    bits = np.unpackbits(np.asarray(packed, np.uint8), count=n * k, bitorder="little")
    w = (1 << np.arange(k)).astype(np.uint8)
    return (bits.reshape(n, k) * w).sum(axis=1).astype(np.uint8)


def code_of(u, thr, k: int):
    """code = #{j : u >= thr[j]} by the kernels' binary search (identical results for any
    thresholds, sorted or not). u = |x| (int64 array), thr int32[2^k - 1]."""
    thr = np.asarray(thr).astype(I64)
    u = np.asarray(u).astype(I64)
    c = np.zeros(u.shape, I64)
    b = 1 << (k - 1)
    while b:
        c = np.where(u >= thr[c + b - 1], c + b, c)
        b >>= 1
    return c


@dataclass(frozen=True)
class ActCodes:
    """Few-bit backward parameters of ``fn`` for inputs of scale ``s_x``.

    ``thresholds`` int32[2^k - 1] on u = |x_q| (ascending), ``levels`` int32[2^k] with real
    derivative level * 2^``exp``, ``code_table`` uint8[256] (bits 8: code of x at [x + 128],
    equal to code_of(|x|, thresholds)). ``rms``: weighted RMS error of the approximation of
    f' (real units, with the integer levels) under the weights used; ``rms_ref``: weighted RMS
    of f' itself, so rms / rms_ref is the relative error.
    """
    fn: str
    bits: int
    k: int
    s_x: float
    thresholds: np.ndarray
    levels: np.ndarray
    code_table: np.ndarray | None
    exp: int
    rms: float
    rms_ref: float


def _fold_weights(s_x: float, bits: int, samples):
    """Weight of u = |x_q| for u = 0 .. 2^(bits-1): the standard normal density at s_x x_q
    summed over x_q = +-u (or a histogram of calibration samples, real values)."""
    lo, hi = qrange(bits)
    xq = np.arange(lo, hi + 1)
    if samples is None:
        w_x = np.exp(-0.5 * (s_x * xq.astype(np.float64)) ** 2)
    else:
        s = np.asarray(samples, np.float64).reshape(-1)
        q = np.clip(_round_away(s / s_x), lo, hi).astype(np.int64)
        w_x = np.bincount(q - lo, minlength=hi - lo + 1).astype(np.float64)
    w = np.bincount(np.abs(xq), weights=w_x, minlength=hi + 2)[:hi + 2]
    return w / w.sum()


class _SegCost:
    """Weighted sum of squared deviations from the weighted mean of fp over cells [a, b), from
    prefix sums (vectorised over a, b)."""

    def __init__(self, fp, w):
        self.p0 = np.concatenate([[0.0], np.cumsum(w)])
        self.p1 = np.concatenate([[0.0], np.cumsum(w * fp)])
        self.p2 = np.concatenate([[0.0], np.cumsum(w * fp * fp)])

    def __call__(self, a, b):
        s0 = self.p0[b] - self.p0[a]
        s1 = self.p1[b] - self.p1[a]
        with np.errstate(divide="ignore", invalid="ignore"):
            v = (self.p2[b] - self.p2[a]) - np.where(s0 > 0, s1 * s1 / s0, 0.0)
        return np.maximum(v, 0.0)


def _segments_dp(seg: _SegCost, u_n: int, m: int, cands):
    """Exact DP: the m - 1 cuts (from cands, ascending, inside (0, u_n)) minimising the sum
    of the segment costs."""
    pos = np.concatenate([[0], cands, [u_n]])
    a, b = pos[:, None], pos[None, :]
    cost = np.where(b > a, seg(a, b), np.inf)
    best = cost[0]                       # one segment ending at pos[j]
    back = []
    for _ in range(1, m):
        tot = best[:, None] + cost
        arg = np.argmin(tot, axis=0)
        back.append(arg)
        best = tot[arg, np.arange(pos.size)]
    cuts, j = [], pos.size - 1
    for arg in reversed(back):
        j = int(arg[j])
        cuts.append(int(pos[j]))
    return np.array(sorted(cuts), np.int64)


def _polish(seg: _SegCost, u_n: int, cuts):
    """Coordinate descent on integer cuts: each cut moves to its best position between its
    neighbours (levels refitted) until none moves; the cost falls strictly at every move."""
    e = [0] + [int(c) for c in cuts] + [u_n]
    for _ in range(1000):
        moved = False
        for j in range(1, len(e) - 1):
            t = np.arange(e[j - 1] + 1, e[j + 1])
            c = seg(e[j - 1], t) + seg(t, e[j + 1])
            i = int(np.argmin(c))
            if c[i] < c[e[j] - e[j - 1] - 1]:
                e[j], moved = int(t[i]), True
        if not moved:
            break
    return np.array(e[1:-1], np.int64)


def _means(fp, w, cuts):
    edges = np.concatenate([[0], cuts, [fp.size]])
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        ws = w[a:b].sum()
        out.append(float((w[a:b] * fp[a:b]).sum() / ws) if ws > 0 else float(fp[a:b].mean()))
    return np.array(out)


def build_act_codes(fn: str, s_x: float, bits: int, k: int, samples=None) -> ActCodes:
    """Few-bit backward thresholds and levels (module docstring). samples: optional real
    input values (calibration) replacing the standard normal weight."""
    _check(fn, bits)
    code_bytes(0, k)
    s_x = float(s_x)
    m = 1 << k
    u_max = 1 << (bits - 1)
    u = np.arange(u_max + 1)
    fp = deriv_ref(fn, s_x * u)
    w = _fold_weights(s_x, bits, samples)
    w = w + 1e-15                                    # every interval has a defined mean
    seg = _SegCost(fp, w)
    if u_max + 1 <= DP_CANDIDATES:
        cuts = _segments_dp(seg, u.size, m, np.arange(1, u_max + 1))
    else:
        cands = np.unique(np.round(np.linspace(1, u_max, DP_CANDIDATES)).astype(np.int64))
        cuts = _polish(seg, u.size, _segments_dp(seg, u.size, m, cands))
    lv = _means(fp, w, cuts)
    e = bwd_exponent(fn, bits)
    levels = _round_away(lv * 2.0 ** -e).astype(np.int32)
    thr = cuts.astype(np.int32)
    approx = levels.astype(np.float64)[code_of(u, thr, k)] * 2.0 ** e
    wsum = w.sum()
    rms = math.sqrt(float((w * (fp - approx) ** 2).sum() / wsum))
    rms_ref = math.sqrt(float((w * fp * fp).sum() / wsum))
    ctab = None
    if bits == 8:
        ctab = code_of(np.abs(np.arange(-128, 128)), thr, k).astype(np.uint8)
    return ActCodes(fn, bits, k, s_x, thr, levels, ctab, e, rms, rms_ref)


def _code_fwd(tab: ActTable, fn: str, codes: ActCodes | tuple, x):
    """(y, packed codes); codes: an ActCodes or (code_table or thresholds, k)."""
    y = _act_fwd(tab, fn, x)
    if isinstance(codes, ActCodes):
        src, k = (codes.code_table if tab.bits == 8 else codes.thresholds), codes.k
    else:
        src, k = codes
    xi = np.asarray(x).astype(I64).reshape(-1)
    if tab.bits == 8:
        c = np.asarray(src).astype(I64)[xi + 128] & ((1 << k) - 1)
    else:
        c = code_of(np.abs(xi), src, k)
    return y, act_code_pack(c, k)


def sigmoid_code_fwd(tab: ActTable, codes, x):
    """tt_sigmoid_code_fwd_q8 / _q16: (y, packed codes)."""
    return _code_fwd(tab, "sigmoid", codes, x)


def tanh_code_fwd(tab: ActTable, codes, x):
    """tt_tanh_code_fwd_q8 / _q16: (y, packed codes)."""
    return _code_fwd(tab, "tanh", codes, x)


def act_bwd_x_code(gy, packed, levels, k: int, bits: int):
    """gy * level[code] into int32 (bits 8) / int64 (bits 16) accumulators."""
    gy = np.asarray(gy).astype(I64).reshape(-1)
    lv = np.asarray(levels).astype(I64)
    if bits == 8 and np.any(np.abs(lv[:1 << k]) > LEVEL_MAX_Q8):
        raise ValueError("q8 levels must lie in [-2^23, 2^23] (the C returns TT_ERR_ARG)")
    c = act_code_unpack(packed, gy.size, k).astype(I64)
    return (gy * lv[c]).astype(_acc_dtype(bits))


def sigmoid_bwd_x_code(gy, packed, levels, k: int, bits: int):
    """tt_sigmoid_bwd_x_code_q8 / _q16."""
    return act_bwd_x_code(gy, packed, levels, k, bits)


def tanh_bwd_x_code(gy, packed, levels, k: int, bits: int):
    """tt_tanh_bwd_x_code_q8 / _q16."""
    return act_bwd_x_code(gy, packed, levels, k, bits)
