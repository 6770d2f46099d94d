/*
 * tt_fixed.h - fixed-point primitives of tinytrain: rounding, requantization, saturation,
 * dynamic power-of-two gradient scales, integer exp / log. numpy twin:
 * tinytrain/numerics/fixed.py. Formats and the reasoning: docs/fixed-point.md.
 *
 * Conventions
 * -----------
 * - Symmetric quantization, zero point 0: real = scale * q. Storage int8 (q8) or int16 (q16);
 *   accumulators int32 for q8 and int64 for q16 ("acc" below).
 * - A real multiplier M > 0 is represented TFLite-style as (mult, shift): M = mult * 2^(shift-31)
 *   with mult in [2^30, 2^31) (tinytrain.numerics.fixed.quantize_multiplier), or mult = 0.
 * - Right shifts of negative numbers are never used (C99 leaves them implementation-defined):
 *   tt_asr32 / tt_asr64 compute floor(x / 2^s) portably; compilers emit one ASR.
 * - Saturation: every narrowing clamps to the destination range; kernels add the number of
 *   clamped values to a caller-provided uint32_t counter (may be NULL; wraps modulo 2^32).
 */
#ifndef TT_FIXED_H
#define TT_FIXED_H

#include <stdint.h>

#include "tt_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ scalar primitives */

/* floor(x / 2^s), s in [0, 31] / [0, 63] */
static inline int32_t tt_asr32(int32_t x, int s)
{
    return (x >= 0) ? (int32_t)((uint32_t)x >> s) : (int32_t)~(~(uint32_t)x >> s);
}

static inline int64_t tt_asr64(int64_t x, int s)
{
    return (x >= 0) ? (int64_t)((uint64_t)x >> s) : (int64_t)~(~(uint64_t)x >> s);
}

static inline int32_t tt_sat32(int64_t x)
{
    return (x > INT32_MAX) ? INT32_MAX : ((x < INT32_MIN) ? INT32_MIN : (int32_t)x);
}

/* clamp x to [lo, hi], counting a clamp in *n */
static inline int32_t tt_clamp_count(int64_t x, int32_t lo, int32_t hi, uint32_t *n)
{
    if (x > hi) {
        ++*n;
        return hi;
    }
    if (x < lo) {
        ++*n;
        return lo;
    }
    return (int32_t)x;
}

/* gemmlowp SaturatingRoundingDoublingHighMul: a*b / 2^31 rounded to nearest, INT32_MIN *
 * INT32_MIN -> INT32_MAX. As in the reference: a nudge of +2^30 (ab >= 0) or 1 - 2^30
 * (ab < 0), then C's truncating division, which makes ties round toward +infinity. */
static inline int32_t tt_srdhm(int32_t a, int32_t b)
{
    int64_t ab, q;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    ab += (ab >= 0) ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    q = (ab >= 0) ? (ab >> 31) : -((-ab) >> 31);
    return (int32_t)q;
}

/* gemmlowp RoundingDivideByPOT: x / 2^e rounded to nearest, ties away from zero; e in [0, 31]. */
static inline int32_t tt_rdbpot(int32_t x, int e)
{
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t rem = x & mask;
    const int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return tt_asr32(x, e) + (rem > thr ? 1 : 0);
}

/* The same for int64 (e in [0, 63]). */
static inline int64_t tt_rdbpot64(int64_t x, int e)
{
    const int64_t mask = (e >= 63) ? INT64_MAX : (((int64_t)1 << e) - 1);
    const int64_t rem = x & mask;
    const int64_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return tt_asr64(x, e) + (rem > thr ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier (the default, double-rounding form also used by
 * CMSIS-NN arm_nn_requantize): rdbpot(srdhm(x * 2^max(shift,0), mult), max(-shift,0)).
 * Where TFLite's x * 2^shift would overflow int32 (undefined there) it saturates here.
 * shift in [-31, 30]. */
static inline int32_t tt_mbqm(int32_t x, int32_t mult, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int32_t xs = left ? tt_sat32((int64_t)x * ((int64_t)1 << left)) : x;
    return tt_rdbpot(tt_srdhm(xs, mult), right);
}

/* TFLite's int64-accumulator form (int16 activations, reference_integer_ops 16x8):
 * the multiplier is reduced to 16 bits, r = (mult < 0x7FFF0000) ? (mult + 2^15) >> 16 : 0x7FFF,
 * t = 15 - shift, result = floor((x*r + 2^(t-1)) / 2^t) (ties up), saturated to int32 (TFLite
 * truncates instead; they agree whenever the result fits). Valid for |x| < 2^47,
 * shift in [-31, 14]. */
static inline int32_t tt_mbqm64(int64_t x, int32_t mult, int shift)
{
    const int64_t r = (mult < 0x7FFF0000) ? (((int64_t)mult + (1 << 15)) >> 16) : 0x7FFF;
    const int t = 15 - shift;
    return tt_sat32(tt_asr64(x * r + ((int64_t)1 << (t - 1)), t));
}

/* x * 2^shift for a power-of-two scale: shift <= 0 is tt_rdbpot64 by -shift (ties away from
 * zero), shift > 0 a left shift saturated to int64. shift in [-63, 62]. */
static inline int64_t tt_shift_round64(int64_t x, int shift)
{
    if (shift <= 0) {
        return tt_rdbpot64(x, -shift);
    }
    if (x > (INT64_MAX >> shift)) {
        return INT64_MAX;
    }
    if (x < -(INT64_MAX >> shift) - 1) { /* = INT64_MIN / 2^shift, without shifting a negative */
        return INT64_MIN;
    }
    return (int64_t)((uint64_t)x << shift);
}

/* Exported copies of the inline primitives (for tests and for callers without inlining). */
int32_t tt_fx_srdhm(int32_t a, int32_t b);
int32_t tt_fx_rdbpot(int32_t x, int e);
int32_t tt_fx_mbqm(int32_t x, int32_t mult, int shift);
int32_t tt_fx_mbqm64(int64_t x, int32_t mult, int shift);
int64_t tt_fx_shift_round64(int64_t x, int shift);

/* ------------------------------------------------------------------ requantization
 * How a kernel turns an accumulator (incl. bias) into its storage type:
 *   TT_RQ_TFLITE  q8: tt_mbqm(acc, mult, shift); q16: tt_mbqm64(acc, mult, shift)
 *   TT_RQ_POW2    tt_shift_round64(acc, shift) (scale 2^shift, ties away from zero; mult unused)
 *   TT_RQ_FLOAT   onnxruntime (MLAS) semantics: v = (float)acc * fscale (one rounded fp32
 *                 multiply; fscale computed as (s_x * s_w) / s_y in fp32), rounded to nearest
 *                 even (the 1.5*2^23 trick after a clamp to +-2^22, which cannot change the
 *                 saturated result).
 * then: saturate to the storage range (counted), then clamp to [act_min, act_max] (fused
 * ReLU / ReLU6; not counted). per_channel = 1: mult/shift/fscale are indexed by the output
 * channel (GEMM: output feature), else element 0 serves all. */
typedef enum {
    TT_RQ_TFLITE = 0,
    TT_RQ_POW2 = 1,
    TT_RQ_FLOAT = 2
} tt_rq_mode;

typedef struct {
    int mode;              /* tt_rq_mode */
    int per_channel;       /* 0 or 1 */
    const int32_t *mult;   /* TFLITE */
    const int32_t *shift;  /* TFLITE, POW2 */
    const float *fscale;   /* FLOAT */
    int32_t act_min, act_max;
} tt_requant;

/* Validate a tt_requant for `channels` channels and storage bits (8 or 16): TT_ERR_ARG on NULL
 * arrays, out-of-range shifts, negative multipliers or act range outside the type. */
tt_status tt_requant_check(const tt_requant *rq, int channels, int bits);

/* Requantize one accumulator of channel ch (no bounds checks; rq validated). The result is
 * already clamped to [act_min, act_max]; *sat counts storage-range saturations (must not be
 * NULL here). */
int32_t tt_requant_one(const tt_requant *rq, int ch, int64_t acc, int bits, uint32_t *sat);

/* Elementwise requantization of accumulator arrays (per_channel: channel = (i / inner) % c,
 * i.e. a CHW tensor with `inner` = H*W, or GEMM rows with inner = 1 and c = m). */
tt_status tt_requant_q32_q8(const tt_requant *rq, const int32_t *acc, int8_t *y, int n, int c,
                            int inner, uint32_t *sat);
tt_status tt_requant_q64_q16(const tt_requant *rq, const int64_t *acc, int16_t *y, int n, int c,
                             int inner, uint32_t *sat);
/* int32 -> int32 by tt_mbqm (saturating): the generic rescale step, e.g. the QAS gradient
 * rescale G~ = G / s_W^2 with (mult, shift) from fixed.qas_*_multiplier. y may equal x. */
tt_status tt_rescale_q32(const int32_t *x, int32_t *y, int n, int32_t mult, int shift,
                         uint32_t *sat);
/* onnxruntime-compatible float requant of int32 accumulators (TT_RQ_FLOAT, per tensor). */
tt_status tt_requant_float_q8(const int32_t *acc, int8_t *y, int n, float scale, uint32_t *sat);

/* ------------------------------------------------------------------ dynamic power-of-two scales
 * Gradients are stored as int8 / int16 with a per-tensor exponent e (real = q * 2^e * s_acc).
 * tt_grad_scale_pow2_*: the smallest rshift s >= 0 with rdbpot(max|acc|, s) <= 2^(bits-1) - 1,
 * so the largest value keeps >= bits-1 magnitude bits, nothing saturates and the cost is one
 * max-reduction. bits in [2, 32]. An all-zero tensor gives s = 0.
 * tt_requant_pow2_*: y = sat(rdbpot(acc, rshift)) (rshift >= 0) or sat(acc << -rshift) (counted);
 * the exponent of y is the exponent of acc plus rshift. rshift in [-62, 63].
 * tt_grad_quant_pow2_*: both; y may alias acc (same pointer): element i is read before byte/
 * halfword i is written, and the write never reaches elements not yet read. */
tt_status tt_grad_scale_pow2_q32(const int32_t *acc, int n, int bits, int *rshift);
tt_status tt_grad_scale_pow2_q64(const int64_t *acc, int n, int bits, int *rshift);
tt_status tt_requant_pow2_q32_q8(const int32_t *acc, int8_t *y, int n, int rshift, uint32_t *sat);
tt_status tt_requant_pow2_q32_q16(const int32_t *acc, int16_t *y, int n, int rshift,
                                  uint32_t *sat);
tt_status tt_requant_pow2_q64_q16(const int64_t *acc, int16_t *y, int n, int rshift,
                                  uint32_t *sat);
tt_status tt_requant_pow2_q64_q32(const int64_t *acc, int32_t *y, int n, int rshift,
                                  uint32_t *sat);
tt_status tt_grad_quant_pow2_q32_q8(const int32_t *acc, int8_t *y, int n, int *rshift);
tt_status tt_grad_quant_pow2_q32_q16(const int32_t *acc, int16_t *y, int n, int *rshift);
tt_status tt_grad_quant_pow2_q64_q16(const int64_t *acc, int16_t *y, int n, int *rshift);
tt_status tt_grad_quant_pow2_q64_q32(const int64_t *acc, int32_t *y, int n, int *rshift);

/* ------------------------------------------------------------------ integer exp / log
 * Q formats: Q24 = real * 2^24 in int32, Q30 = real * 2^30.
 * tt_exp_q24_q30(z): e^z for z <= 0 (Q24 in, Q30 out, 0 for z < about -21.5; exactly 2^30
 *   for z = 0; positive z is clamped to 0). t = z*log2(e) exactly (Q54), t = -k + f with
 *   f rounded to Q30, 2^f = sqrt(2) * 2^(f - 1/2) by a degree-8 Taylor polynomial in Q30
 *   (Horner, each product rounded half up), then rounded right shift by k.
 *   |error| <= 4 * 2^-30 absolute.
 * tt_log_q30_q24(s): ln(s / 2^30) in Q24 for s > 0 (int64): s = 2^L * m with m in Q30 within
 *   [sqrt(1/2), sqrt(2)), ln m = 2 atanh(u), u = (m - 1)/(m + 1) by an int64 division,
 *   6-term odd series; |error| <= 2^-23. s <= 0 returns INT32_MIN. */
int32_t tt_exp_q24_q30(int32_t z);
int32_t tt_log_q30_q24(int64_t s);

#ifdef __cplusplus
}
#endif

#endif /* TT_FIXED_H */
