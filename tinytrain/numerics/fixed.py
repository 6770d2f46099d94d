"""Fixed-point primitives: numpy twin of runtime_c/include/tt_fixed.h + runtime_c/src/tt_fixed.c.

Every function works on int64 numpy arrays (vectorised) and reproduces the C integer
operations exactly: floor shifts, C's truncating division where the C uses it, the same
rounding ties and the same saturation. Formats and reasoning: docs/fixed-point.md.

Host-side helpers that the code generator runs once (never on the device):
``quantize_multiplier`` (real -> (mult, shift), TFLite's QuantizeMultiplier),
``tflite_output_multiplier``, ``ort_output_scale``, ``qas_*`` (quantization-aware scaling)
and ``tflite_add_params``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

I64 = np.int64
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MAX = (1 << 63) - 1

RQ_TFLITE, RQ_POW2, RQ_FLOAT = 0, 1, 2

LOG2E_Q30 = 1549082005
SQRT2_Q30 = 1518500250
LN2_Q56 = 49946518145322874
EXP_C = (1073741824, 744261118, 257941248, 59597083, 10327387, 1431680, 165394, 16377, 1419)
LOG_C = (2147483648, 715827883, 429496730, 306783378, 238609294, 195225786)


def qrange(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def storage_dtype(bits: int):
    return {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}[bits]


def _a(x) -> np.ndarray:
    return np.asarray(x, dtype=I64)


# ---- scalar primitives, vectorised ---------------------------------------------------------

def sat(x, lo: int, hi: int):
    """(clamped, number of clamped elements)."""
    x = _a(x)
    n = int(np.count_nonzero((x < lo) | (x > hi)))
    return np.clip(x, lo, hi), n


def tdiv(a, b):
    """C integer division (truncation toward zero) for int64 arrays, b > 0 or b < 0."""
    a, b = _a(a), _a(b)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) ^ (b < 0), -q, q)


def srdhm(a, b):
    a, b = _a(a), _a(b)
    ab = a * b
    ab = ab + np.where(ab >= 0, I64(1 << 30), I64(1 - (1 << 30)))
    q = np.where(ab >= 0, ab >> 31, -((-ab) >> 31))
    return np.where((a == INT32_MIN) & (b == INT32_MIN), I64(INT32_MAX), q)


def rdbpot(x, e):
    """Round x / 2^e to nearest, ties away from zero (int32 or int64 x, e in [0, 63])."""
    x, e = _a(x), _a(e)
    mask = np.where(e >= 63, I64(INT64_MAX), (I64(1) << np.minimum(e, 62)) - 1)
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > thr)


def mbqm(x, mult, shift):
    """TFLite MultiplyByQuantizedMultiplier (int32 x), saturating the left shift."""
    x, mult, shift = _a(x), _a(mult), _a(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    xs = np.clip(x << left, INT32_MIN, INT32_MAX)
    return rdbpot(srdhm(xs, mult), right)


def mbqm64(x, mult, shift):
    """TFLite MultiplyByQuantizedMultiplier for int64 accumulators (16-bit reduced
    multiplier, ties up), saturated to int32."""
    x, mult, shift = _a(x), _a(mult), _a(shift)
    r = np.where(mult < 0x7FFF0000, (mult + (1 << 15)) >> 16, I64(0x7FFF))
    t = 15 - shift
    return np.clip((x * r + (I64(1) << (t - 1))) >> t, INT32_MIN, INT32_MAX)


def shift_round(x, shift):
    """x * 2^shift: ties-away rounding for shift <= 0, saturating left shift for > 0."""
    x, shift = _a(x), _a(shift)
    right = rdbpot(x, np.maximum(-shift, 0))
    s = np.clip(shift, 0, 62)
    hi = I64(INT64_MAX) >> s
    lo = (-I64(INT64_MAX) - 1) >> s
    left = np.where(x > hi, I64(INT64_MAX), np.where(x < lo, -I64(INT64_MAX) - 1, x << s))
    return np.where(shift <= 0, right, left)


def bit_length(x) -> np.ndarray:
    """Number of bits of non-negative int64 values (0 for 0), exactly."""
    x = _a(x)
    n = np.zeros(x.shape, dtype=I64)
    for b in (32, 16, 8, 4, 2, 1):
        big = (x >> (n + b)) > 0
        n = n + np.where(big, b, 0)
    return n + (x > 0)


# ---- requantization --------------------------------------------------------------------------

@dataclass(frozen=True)
class Requant:
    """Python mirror of tt_requant. mult/shift/fscale are sequences (one per channel when
    per_channel, else one); act range defaults to the storage range."""
    mode: int = RQ_TFLITE
    mult: tuple = (0,)
    shift: tuple = (0,)
    fscale: tuple = (0.0,)
    per_channel: bool = False
    act_min: int | None = None
    act_max: int | None = None

    def channel_arrays(self, channels: int):
        def pick(v, dt):
            v = np.asarray(v, dtype=dt).reshape(-1)
            return v[:channels] if self.per_channel else np.repeat(v[:1], channels)
        return pick(self.mult, I64), pick(self.shift, I64), pick(self.fscale, np.float32)


def requant(rq: Requant, acc, ch, bits: int, acc64: bool = False):
    """Requantize accumulators acc whose channel index is ch (broadcastable arrays).
    Returns (values clamped to the act range, number of storage saturations).

    ``acc64=True``: TT_RQ_TFLITE in TFLite's int64 form (``mbqm64``) whatever ``bits``, i.e.
    tt_requant_one_acc64 (the w16a8 kernels: int64 accumulators, int8 outputs). By default
    bits 8 uses ``mbqm`` (int32 accumulators) and bits 16 ``mbqm64``, as tt_requant_one."""
    acc = _a(acc)
    ch = np.broadcast_to(_a(ch), acc.shape)
    nch = int(ch.max()) + 1 if ch.size else 1
    mult, shift, fscale = rq.channel_arrays(nch)
    if rq.mode == RQ_TFLITE:
        v = (mbqm(acc, mult[ch], shift[ch]) if bits == 8 and not acc64
             else mbqm64(acc, mult[ch], shift[ch]))
    elif rq.mode == RQ_POW2:
        v = shift_round(acc, shift[ch])
    elif rq.mode == RQ_FLOAT:
        v = requant_float_values(acc, fscale[ch])
    else:
        raise ValueError(f"unknown requant mode {rq.mode}")
    lo, hi = qrange(bits)
    v, n = sat(v, lo, hi)
    amin = lo if rq.act_min is None else rq.act_min
    amax = hi if rq.act_max is None else rq.act_max
    return np.clip(v, amin, amax), n


def requant_float_values(acc, scale):
    """onnxruntime/MLAS: rne(float32(acc) * float32(scale)), before saturation (int64)."""
    f = _a(acc).astype(np.float32) * np.asarray(scale, dtype=np.float32)
    f = np.clip(f, np.float32(-(1 << 22)), np.float32(1 << 22))
    magic = np.float32(12582912.0)
    return ((f + magic) - magic).astype(I64)


def rescale_q32(x, mult: int, shift: int):
    """tt_rescale_q32: (mbqm values, number of saturated left shifts)."""
    x = _a(x)
    left = max(int(shift), 0)
    n = int(np.count_nonzero(((x << left) > INT32_MAX) | ((x << left) < INT32_MIN)))
    return mbqm(x, mult, shift), n


# ---- dynamic power-of-two gradient scales ----------------------------------------------

def grad_scale_pow2(acc, bits: int) -> int:
    """Smallest rshift >= 0 with rdbpot(max|acc|, rshift) <= 2^(bits-1) - 1."""
    acc = _a(acc)
    m = max(int(acc.max()), -int(acc.min())) if acc.size else 0       # exact Python ints
    limit = (1 << (bits - 1)) - 1
    s = 0
    while s < 64 and _rdbpot_int(m, s) > limit:
        s += 1
    return s


def _rdbpot_int(m: int, s: int) -> int:
    return m if s == 0 else (m + (1 << (s - 1))) >> s


def requant_pow2(acc, rshift: int, bits: int):
    """(sat(rdbpot(acc, rshift)) or sat(acc << -rshift), saturations) as int64 values."""
    v = shift_round(acc, -rshift)
    return sat(v, *qrange(bits))


def grad_quant_pow2(acc, bits: int):
    """(values as the storage dtype, rshift)."""
    s = grad_scale_pow2(acc, bits)
    v, _ = requant_pow2(acc, s, bits)
    return v.astype(storage_dtype(bits)), s


# ---- integer exp / log -------------------------------------------------------------------

def exp_q24_q30(z):
    z = _a(z)
    t = z * LOG2E_Q30                                   # Q54
    k = -(t >> 54)
    f = ((t & ((1 << 54) - 1)) + (1 << 23)) >> 24
    u = f - (1 << 29)
    p = np.full(z.shape, EXP_C[8], dtype=I64)
    for c in EXP_C[7::-1]:
        p = c + ((p * u + (1 << 29)) >> 30)
    e = (p * SQRT2_Q30 + (1 << 29)) >> 30
    e = np.where(k > 62, 0, rdbpot(e, np.clip(k, 0, 62)))
    e = np.minimum(e, 1 << 30)
    return np.where(z >= 0, I64(1 << 30), e)


def log_q30_q24(s):
    s = _a(s)
    pos = s > 0
    sp = np.where(pos, s, 1)
    L = bit_length(sp) - 1
    m = np.where(L >= 30, sp >> np.maximum(L - 30, 0), sp << np.maximum(30 - L, 0))
    big = m > SQRT2_Q30
    one = np.where(big, I64(1 << 31), I64(1 << 30))
    E = L - 30 + big
    num = m - one
    den = m + one
    u = ((np.abs(num) << 30) + (den >> 1)) // den
    u = np.where(num < 0, -u, u)
    z = (u * u + (1 << 29)) >> 30
    p = np.full(s.shape, LOG_C[5], dtype=I64)
    for c in LOG_C[4::-1]:
        p = c + ((p * z + (1 << 29)) >> 30)
    ln_m = (u * p + (1 << 29)) >> 30
    r = rdbpot(E * LN2_Q56 + (ln_m << 26), 32)
    r = np.clip(r, INT32_MIN, INT32_MAX)
    return np.where(pos, r, I64(INT32_MIN))


# ---- host-side parameter helpers -----------------------------------------------------------

def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = mult * 2^(shift - 31), mult in [2^30, 2^31).
    q = frexp(real) in [0.5, 1), mult = round-half-away(q * 2^31); mult == 2^31 -> 2^30 and
    shift + 1; shift < -31 -> (0, 0) (the value is below resolution); real == 0 -> (0, 0)."""
    real = float(real)
    if real < 0:
        raise ValueError("multipliers are non-negative (symmetric quantization)")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    qf = q * (1 << 31)
    m = int(math.floor(qf + 0.5))        # q > 0: round half away from zero
    if m == (1 << 31):
        m //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"multiplier {real} too large (>= 2^30)")
    return m, shift


def tflite_output_multiplier(s_x: float, s_w: float, s_y: float) -> tuple[int, int]:
    """(mult, shift) as TFLite computes them for Conv2D / FullyConnected: the float32 scales
    widened to double, (s_x * s_w) / s_y in double, then QuantizeMultiplier."""
    real = (float(np.float32(s_x)) * float(np.float32(s_w))) / float(np.float32(s_y))
    return quantize_multiplier(real)


def ort_output_scale(s_x: float, s_w: float, s_y: float) -> np.float32:
    """onnxruntime's requant scale: (s_x * s_w) / s_y evaluated in float32."""
    return (np.float32(s_x) * np.float32(s_w)) / np.float32(s_y)


def pow2_exponent(scale: float) -> int | None:
    """e with scale == 2^e exactly, else None."""
    m, e = math.frexp(float(scale))
    return e - 1 if m == 0.5 else None


def qas_weight_multiplier(real_factor: float, s_w: float) -> tuple[int, int]:
    """Quantization-aware scaling (Lin et al., "On-Device Training Under 256KB Memory"):
    with W = s_W * Wbar the integer weight gradient is G_Wbar = s_W * G_W, and QAS uses
    G~_Wbar = G_Wbar / s_W^2. For an integer accumulator A_W with G_W = s_acc * A_W this is
    G~_Wbar = (s_acc / s_W) * A_W: returns quantize_multiplier(real_factor / s_W^2) where
    real_factor is what multiplies the accumulator to give G_Wbar (= s_W * s_acc), optionally
    times the learning rate when the rescale is folded into the update."""
    return quantize_multiplier(float(real_factor) / (float(s_w) ** 2))


def qas_bias_multiplier(real_factor: float, s_w: float, s_x: float) -> tuple[int, int]:
    """QAS for the int32 bias (scale s_W * s_x): G~_bbar = G_bbar / (s_W * s_x)^2."""
    return quantize_multiplier(float(real_factor) / (float(s_w) * float(s_x)) ** 2)


@dataclass(frozen=True)
class AddParams:
    left_shift: int
    a_mult: int
    a_shift: int
    b_mult: int
    b_shift: int
    y_mult: int
    y_shift: int


def tflite_add_params(s_a: float, s_b: float, s_y: float, bits: int = 8) -> AddParams:
    """TFLite's int8 / int16 ADD parameters: left_shift 20 (int8) or 15 (int16),
    twice_max = 2 max(s_a, s_b), multipliers for s_a / twice_max, s_b / twice_max and
    twice_max / (2^left_shift * s_y), in double from the float32 scales."""
    left = 20 if bits == 8 else 15
    sa, sb, sy = (float(np.float32(v)) for v in (s_a, s_b, s_y))
    twice_max = 2.0 * max(sa, sb)
    am, ash = quantize_multiplier(sa / twice_max)
    bm, bsh = quantize_multiplier(sb / twice_max)
    ym, ysh = quantize_multiplier(twice_max / ((1 << left) * sy))
    return AddParams(left, am, ash, bm, bsh, ym, ysh)
