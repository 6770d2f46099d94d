/*
 * tt_train_q.c - the glue a generated fixed-point training step needs around the kernels:
 * float <-> integer conversion at the API boundary, per-channel integer SGD with a runtime
 * gradient exponent, int64 bias updates (int16 models) and the join of two gradient
 * contributions that carry different power-of-two exponents. Specification in
 * tt_qkernels.h; numpy twin in tinytrain/numerics/qkernels.py.
 */
#include <stddef.h>

#include "tt_qkernels.h"

#define TT_Q_RNE_MAGIC 12582912.0f /* 1.5 * 2^23: adding and subtracting it rounds to even */
#define TT_Q_CLAMP 4194304.0f      /* 2^22: beyond any storage range, below the magic's */

static int bits_ok(int bits)
{
    return bits == 8 || bits == 16 || bits == 32 || bits == 64;
}

static int64_t q_get(const void *q, int bits, int i)
{
    switch (bits) {
    case 8: return ((const int8_t *)q)[i];
    case 16: return ((const int16_t *)q)[i];
    case 32: return ((const int32_t *)q)[i];
    default: return ((const int64_t *)q)[i];
    }
}

tt_status tt_quantize_f32(const float *x, void *q, int bits, int n, const float *inv_scale,
                          int channels, int inner, uint32_t *sat)
{
    uint32_t dummy = 0;
    int i;
    if (n < 0 || (n > 0 && (x == NULL || q == NULL || inv_scale == NULL)) || channels < 1 ||
        inner < 1 || !bits_ok(bits)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        if (x[i] != x[i]) {
            return TT_ERR_NAN; /* nothing is trusted from a NaN sample; caller discards it */
        }
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    if (bits >= 32) {
        /* wide (bias) values: rounded half away from zero in double, which holds every
           float exactly plus the half; clamped to +-2^(bits-2) (counted) */
        const double lim = bits == 32 ? 1073741824.0 : 4611686018427387904.0;
        for (i = 0; i < n; ++i) {
            double v = (double)(x[i] * inv_scale[(i / inner) % channels]);
            if (v > lim || v < -lim) {
                v = v > 0 ? lim : -lim;
                ++*sat;
            }
            v = v >= 0 ? v + 0.5 : v - 0.5;
            if (bits == 32) {
                ((int32_t *)q)[i] = (int32_t)v;
            } else {
                ((int64_t *)q)[i] = (int64_t)v;
            }
        }
        return TT_OK;
    }
    for (i = 0; i < n; ++i) {
        float v = x[i] * inv_scale[(i / inner) % channels];
        int64_t r;
        if (v > TT_Q_CLAMP) {
            v = TT_Q_CLAMP;
        } else if (v < -TT_Q_CLAMP) {
            v = -TT_Q_CLAMP;
        }
        r = (int64_t)((v + TT_Q_RNE_MAGIC) - TT_Q_RNE_MAGIC);
        if (bits == 8) {
            ((int8_t *)q)[i] = (int8_t)tt_clamp_count(r, -128, 127, sat);
        } else {
            ((int16_t *)q)[i] = (int16_t)tt_clamp_count(r, -32768, 32767, sat);
        }
    }
    return TT_OK;
}

tt_status tt_dequantize_f32(const void *q, int bits, float *y, int n, const float *scale,
                            int channels, int inner)
{
    int i;
    if (n < 0 || (n > 0 && (q == NULL || y == NULL || scale == NULL)) || channels < 1 ||
        inner < 1 || !bits_ok(bits)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        y[i] = (float)q_get(q, bits, i) * scale[(i / inner) % channels];
    }
    return TT_OK;
}

tt_status tt_sgd_upd_q64(int64_t *TT_RESTRICT w, int32_t *TT_RESTRICT g, int n, int32_t mult,
                         int shift, int rounding, tt_prng *rng, uint32_t *sat)
{
    uint32_t dummy = 0;
    int i;
    if (n < 0 || (n > 0 && (w == NULL || g == NULL)) || mult < 0 || shift < -31 || shift > 31 ||
        (rounding != TT_ROUND_NEAREST && rounding != TT_ROUND_STOCHASTIC) ||
        (rounding == TT_ROUND_STOCHASTIC && rng == NULL)) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        const int64_t d = (int64_t)g[i] * mult; /* |d| < 2^62: exact */
        const int64_t delta = rounding == TT_ROUND_STOCHASTIC
                                  ? tt_sr_rshift_i64(d, 31 - shift, tt_prng_u32(rng))
                                  : tt_rdbpot64(d, 31 - shift);
        if (delta > 0 && w[i] < INT64_MIN + delta) {
            w[i] = INT64_MIN;
            ++*sat;
        } else if (delta < 0 && w[i] > INT64_MAX + delta) {
            w[i] = INT64_MAX;
            ++*sat;
        } else {
            w[i] -= delta;
        }
        g[i] = 0;
    }
    return TT_OK;
}

tt_status tt_sgd_upd_pc(void *w, int wbits, int32_t *g, int channels, int inner,
                        const int32_t *mult, const int32_t *shift, int e, int rounding,
                        tt_prng *rng, uint32_t *sat)
{
    uint32_t dummy = 0;
    int c, i;
    if (w == NULL || g == NULL || mult == NULL || shift == NULL || channels < 0 || inner < 0 ||
        !bits_ok(wbits) || e < -200 || e > 200) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (c = 0; c < channels; ++c) {
        const size_t off = (size_t)c * (size_t)inner;
        int32_t *gc = g + off;
        int sh = shift[c] + e;
        tt_status s;
        if (sh < -31 || mult[c] == 0) {
            /* the step is below half an LSB of the weight for every gradient value: no
               update (and no random draws), as if lr * gradient rounded to zero */
            for (i = 0; i < inner; ++i) {
                gc[i] = 0;
            }
            continue;
        }
        if (sh > 31) {
            /* the step would exceed the kernel's range: clipped, and counted once per weight */
            *sat += (uint32_t)inner;
            sh = 31;
        }
        switch (wbits) {
        case 8: s = tt_sgd_upd_q8((int8_t *)w + off, gc, inner, mult[c], sh, rounding, rng, sat); break;
        case 16: s = tt_sgd_upd_q16((int16_t *)w + off, gc, inner, mult[c], sh, rounding, rng, sat); break;
        case 32: s = tt_sgd_upd_q32((int32_t *)w + off, gc, inner, mult[c], sh, rounding, rng, sat); break;
        default: s = tt_sgd_upd_q64((int64_t *)w + off, gc, inner, mult[c], sh, rounding, rng, sat); break;
        }
        if (s != TT_OK) {
            return s;
        }
    }
    return TT_OK;
}

/* a_i * 2^(ea - E + 16) + b_i * 2^(eb - E + 16), E = max(ea, eb): exact for the operand with
   the larger exponent, rounded (ties away) for the other; shifts below -62 give 0 */
static int64_t join_term(int64_t v, int d)
{
    return tt_shift_round64(v, d < -62 ? -62 : d);
}

#define TT_Q_JOIN(SUF, T, QMAX)                                                                \
    tt_status tt_grad_join##SUF(T *a, int *ea, const T *b, int eb, int n, uint32_t *sat)      \
    {                                                                                           \
        uint32_t dummy = 0;                                                                     \
        int i, e, da, db, rs = 0;                                                               \
        uint64_t m = 0;                                                                         \
        if (a == NULL || ea == NULL || b == NULL || n < 0 || *ea < -400 || *ea > 400 ||        \
            eb < -400 || eb > 400) {                                                            \
            return TT_ERR_ARG;                                                                  \
        }                                                                                       \
        if (sat == NULL) {                                                                      \
            sat = &dummy;                                                                       \
        }                                                                                       \
        e = *ea > eb ? *ea : eb;                                                                \
        da = *ea - e + 16;                                                                      \
        db = eb - e + 16;                                                                       \
        for (i = 0; i < n; ++i) {                                                               \
            const int64_t s = join_term(a[i], da) + join_term(b[i], db);                        \
            const uint64_t mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;              \
            if (mag > m) {                                                                      \
                m = mag;                                                                        \
            }                                                                                   \
        }                                                                                       \
        while (rs < 62 && (rs == 0 ? m : (m + ((uint64_t)1 << (rs - 1))) >> rs) > (QMAX)) {     \
            ++rs;                                                                               \
        }                                                                                       \
        for (i = 0; i < n; ++i) {                                                               \
            const int64_t s = join_term(a[i], da) + join_term(b[i], db);                        \
            a[i] = (T)tt_clamp_count(tt_rdbpot64(s, rs), -(QMAX) - 1, QMAX, sat);              \
        }                                                                                       \
        *ea = e - 16 + rs;                                                                      \
        return TT_OK;                                                                           \
    }

TT_Q_JOIN(_q8, int8_t, 127)
TT_Q_JOIN(_q16, int16_t, 32767)

tt_status tt_momentum_upd_pc(void *w, int wbits, int32_t *g, int32_t *v, int channels,
                             int inner, const int32_t *mult, const int32_t *shift, int e,
                             int32_t beta_mult, int rounding, tt_prng *rng, uint32_t *sat)
{
    uint32_t dummy = 0;
    int c, i;
    if (w == NULL || g == NULL || v == NULL || mult == NULL || shift == NULL || channels < 0 ||
        inner < 0 || !bits_ok(wbits) || e < -200 || e > 200 || beta_mult < 0 || (rounding != TT_ROUND_NEAREST && rounding != TT_ROUND_STOCHASTIC) ||
        (rounding == TT_ROUND_STOCHASTIC && rng == NULL)) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (c = 0; c < channels; ++c) {
        /* g * mult[c] * 2^(shift[c] + e - 31) in weight LSBs, kept with TT_Q_MOM_FRAC bits */
        int sh = shift[c] + e + TT_Q_MOM_FRAC - 31;
        if (sh < -62) {
            sh = -62; /* |g * mult| < 2^62: the term rounds to 0 */
        }
        if (sh > 0) {
            *sat += (uint32_t)inner; /* beyond the velocity's range: clipped, counted */
            sh = 0;
        }
        for (i = 0; i < inner; ++i) {
            const size_t k = (size_t)c * (size_t)inner + (size_t)i;
            const int64_t gv = tt_shift_round64((int64_t)g[k] * mult[c], sh);
            const int64_t vd = tt_rdbpot64((int64_t)v[k] * beta_mult, 31);
            int64_t delta, x;
            v[k] = tt_clamp_count(vd + gv, INT32_MIN, INT32_MAX, sat);
            delta = rounding == TT_ROUND_STOCHASTIC
                        ? tt_sr_rshift_i64(v[k], TT_Q_MOM_FRAC, tt_prng_u32(rng))
                        : tt_rdbpot64(v[k], TT_Q_MOM_FRAC);
            x = q_get(w, wbits, (int)k);
            switch (wbits) {
            case 8: ((int8_t *)w)[k] = (int8_t)tt_clamp_count(x - delta, -128, 127, sat); break;
            case 16: ((int16_t *)w)[k] = (int16_t)tt_clamp_count(x - delta, -32768, 32767, sat); break;
            case 32: ((int32_t *)w)[k] = tt_clamp_count(x - delta, INT32_MIN, INT32_MAX, sat); break;
            default: /* |delta| < 2^16: only the int64 limits themselves can overflow */
                if (delta > 0 && x < INT64_MIN + delta) {
                    x = INT64_MIN;
                    ++*sat;
                } else if (delta < 0 && x > INT64_MAX + delta) {
                    x = INT64_MAX;
                    ++*sat;
                } else {
                    x -= delta;
                }
                ((int64_t *)w)[k] = x;
                break;
            }
            g[k] = 0;
        }
    }
    return TT_OK;
}

/* ====================================================================== width conversions */

tt_status tt_act_convert_q(const void *x, int xbits, void *y, int ybits, int n, int32_t mult,
                           int shift, uint32_t *sat)
{
    const int32_t lo = ybits == 8 ? -128 : -32768, hi = ybits == 8 ? 127 : 32767;
    int i;
    if (n < 0 || (n > 0 && (x == NULL || y == NULL)) || (xbits != 8 && xbits != 16) ||
        (ybits != 8 && ybits != 16) || mult < 0 || shift > 31 || shift < -31) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const int32_t v = tt_clamp_count(tt_mbqm((int32_t)q_get(x, xbits, i), mult, shift), lo,
                                         hi, sat);
        if (ybits == 8) {
            ((int8_t *)y)[i] = (int8_t)v;
        } else {
            ((int16_t *)y)[i] = (int16_t)v;
        }
    }
    return TT_OK;
}

tt_status tt_grad_widen_q8_q16(const int8_t *x, int16_t *y, int n)
{
    int i;
    if (n < 0 || (n > 0 && (x == NULL || y == NULL))) return TT_ERR_ARG;
    for (i = 0; i < n; ++i) y[i] = (int16_t)(x[i] * 256);
    return TT_OK;
}

tt_status tt_grad_quant_pow2_q16_q8(const int16_t *g, int8_t *y, int n, int *rshift)
{
    int32_t m = 0;
    int i, s = 0;
    if (n < 0 || (n > 0 && (g == NULL || y == NULL)) || rshift == NULL) return TT_ERR_ARG;
    for (i = 0; i < n; ++i) {
        const int32_t a = g[i] < 0 ? -(int32_t)g[i] : (int32_t)g[i];
        m = a > m ? a : m;
    }
    /* smallest s with rdbpot(m, s) <= 127; s <= 9 for |g| <= 32768 */
    while ((s == 0 ? m : ((m >> s) + ((m >> (s - 1)) & 1))) > 127) ++s;
    for (i = 0; i < n; ++i) {
        y[i] = (int8_t)tt_rdbpot(g[i], s); /* fits by the choice of s */
    }
    *rshift = s;
    return TT_OK;
}
