"""IEEE binary16 as uint16 bit patterns: numpy twin of runtime_c/src/tt_fp16.c.

Conversions are integer bit manipulation, vectorised (see runtime_c/include/tt_fp16.h for
the rules). For every non-NaN input they equal numpy's own casts (``np.float16`` rounds to
nearest even; tests/numerics check this over all halfs and millions of floats); for NaN
they follow the hardware convention (made quiet, top payload bits kept), which numpy's
software cast does not always do, hence the explicit implementation.

``expf_plain`` / ``logf_plain`` repeat tt_expf_plain / tt_logf_plain operation by operation
in float32 (every constant is a float32, every intermediate an ndarray of float32, so
numpy never widens to float64).
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
U32 = np.uint32


def _u32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def _f32(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def f32_to_f16(x) -> np.ndarray:
    """float32 -> binary16 bits (uint16), round to nearest even."""
    x = np.asarray(x, dtype=np.float32)
    shape = x.shape
    b = _u32(x.reshape(-1))
    sign = (b >> U32(16)) & U32(0x8000)
    ax = b & U32(0x7FFFFFFF)
    out = np.empty_like(b)

    nan = ax > U32(0x7F800000)
    inf = (ax == U32(0x7F800000)) | ((ax >= U32(0x477FF000)) & ~nan)
    normal = (ax >= U32(0x38800000)) & (ax < U32(0x477FF000))
    zero = ax <= U32(0x33000000)
    sub = ~(nan | inf | normal | zero)

    out[nan] = U32(0x7E00) | ((ax[nan] >> U32(13)) & U32(0x03FF))
    out[inf] = U32(0x7C00)
    m = ax[normal] - U32(0x38000000)
    m = m + U32(0x0FFF) + ((m >> U32(13)) & U32(1))
    out[normal] = m >> U32(13)
    out[zero] = 0
    a = ax[sub]
    sh = U32(126) - (a >> U32(23))
    mant = (a & U32(0x007FFFFF)) | U32(0x00800000)
    rem = mant & ((U32(1) << sh) - U32(1))
    half = U32(1) << (sh - U32(1))
    q = mant >> sh
    q = q + ((rem > half) | ((rem == half) & ((q & U32(1)) == 1))).astype(np.uint32)
    out[sub] = q
    return (out | sign).astype(np.uint16).reshape(shape)


def f16_to_f32(h) -> np.ndarray:
    """binary16 bits (uint16) -> float32, exact (NaN made quiet)."""
    h = np.asarray(h, dtype=np.uint16)
    shape = h.shape
    h = h.reshape(-1).astype(np.uint32)
    sign = (h & U32(0x8000)) << U32(16)
    e = (h >> U32(10)) & U32(0x1F)
    m = h & U32(0x03FF)
    bits = np.zeros_like(h)
    special = e == 31
    bits[special] = U32(0x7F800000) | np.where(m[special] != 0,
                                               U32(0x00400000) | (m[special] << U32(13)), U32(0))
    normal = (e != 0) & ~special
    bits[normal] = ((e[normal] + U32(112)) << U32(23)) | (m[normal] << U32(13))
    sub = (e == 0) & (m != 0)
    ms = m[sub]
    top = np.floor(np.log2(ms.astype(np.float64))).astype(np.uint32)      # exact for < 2^10
    shift = U32(10) - top
    bits[sub] = ((U32(103) + top) << U32(23)) | (((ms << shift) & U32(0x03FF)) << U32(13))
    return _f32(bits | sign).reshape(shape)


def all_finite_f16(h) -> bool:
    """tt_check_finite_f16 == TT_OK: no Inf / NaN bit pattern."""
    return bool(np.all((np.asarray(h, np.uint16) & np.uint16(0x7C00)) != 0x7C00))


def round_f16(x) -> np.ndarray:
    """float32 -> nearest half, widened back to float32 (what storing and reloading does)."""
    return f16_to_f32(f32_to_f16(x))


# ---- plain exp / log (tt_expf_plain, tt_logf_plain) --------------------------------------

def _c(hexstr: str) -> np.float32:
    return F32(float.fromhex(hexstr))


_LOG2E = _c("0x1.715476p+0")
_LN2_HI = _c("0x1.62e4p-1")
_LN2_LO = _c("0x1.7f7d1cp-20")
_MAGIC = _c("0x1.8p+23")
_EXP_HI = _c("0x1.62e43p+6")
_EXP_LO = _c("-0x1.9fe36ap+6")
_EXP_C = [_c(h) for h in ("0x1.a01a02p-13", "0x1.6c16c2p-10", "0x1.111112p-7",
                          "0x1.555556p-5", "0x1.555556p-3")] + [F32(0.5), F32(1.0), F32(1.0)]
_LOG_C = [_c(h) for h in ("0x1.745d18p-3", "0x1.c71c72p-3", "0x1.24924ap-2",
                          "0x1.99999ap-2", "0x1.555556p-1")] + [F32(2.0)]


def _pow2f(k) -> np.ndarray:
    return _f32(((np.asarray(k, dtype=np.int64) + 127) << 23).astype(np.uint32))


def expf_plain(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    shape = x.shape
    x = x.reshape(-1)
    ok = ~np.isnan(x) & (x <= _EXP_HI) & (x >= _EXP_LO)
    xs = np.where(ok, x, F32(0))
    with np.errstate(over="ignore", under="ignore"):
        t = xs * _LOG2E
        kf = (t + _MAGIC) - _MAGIC
        r = xs - kf * _LN2_HI
        r = r - kf * _LN2_LO
        p = _EXP_C[0] * r
        for c in _EXP_C[1:-1]:
            p = (p + c) * r
        p = p + _EXP_C[-1]
        k = kf.astype(np.int64)
        k1 = np.where(k < 0, -((-k) // 2), k // 2)                  # C truncating division
        p = p * _pow2f(k1)
        p = p * _pow2f(k - k1)
    out = np.where(ok, p, np.where(x > _EXP_HI, F32(np.inf), F32(0))).astype(np.float32)
    out = np.where(np.isnan(x), x, out)
    return out.reshape(shape)


def logf_plain(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    shape = x.shape
    x = x.reshape(-1)
    b = _u32(x).copy()
    ok = (x > 0) & np.isfinite(x)
    e = np.zeros(x.shape, dtype=np.int64)
    sub = ok & (b < U32(0x00800000))
    xs = np.where(ok, x, F32(1))
    with np.errstate(over="ignore"):
        xs = np.where(sub, xs * F32(8388608.0), xs)
    b = _u32(xs)
    e = np.where(sub, -23, 0) + (b >> U32(23)).astype(np.int64) - 127
    b = (b & U32(0x007FFFFF)) | U32(0x3F800000)
    big = b > U32(0x3FB504F3)
    b = np.where(big, b - U32(0x00800000), b)
    e = e + big
    m = _f32(b)
    f = m - F32(1)
    s = f / (f + F32(2))
    z = s * s
    p = _LOG_C[0] * z
    for c in _LOG_C[1:-1]:
        p = (p + c) * z
    p = p + _LOG_C[-1]
    p = s * p
    ef = e.astype(np.float32)
    p = p + ef * _LN2_LO
    res = ef * _LN2_HI + p
    res = np.where(ok, res, np.where(x == 0, F32(-np.inf), np.where(x == np.inf, x, F32(np.nan))))
    res = np.where(np.isnan(x), x, res)
    return res.astype(np.float32).reshape(shape)
