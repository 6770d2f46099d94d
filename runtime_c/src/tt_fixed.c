/*
 * tt_fixed.c - requantization, dynamic power-of-two gradient scales and integer exp / log
 * (specification in tt_fixed.h, numpy twin tinytrain/numerics/fixed.py).
 */
#include <stddef.h>
#include <string.h>

#include "tt_fixed.h"

int32_t tt_fx_srdhm(int32_t a, int32_t b)
{
    return tt_srdhm(a, b);
}

int32_t tt_fx_rdbpot(int32_t x, int e)
{
    return tt_rdbpot(x, e);
}

int32_t tt_fx_mbqm(int32_t x, int32_t mult, int shift)
{
    return tt_mbqm(x, mult, shift);
}

int32_t tt_fx_mbqm64(int64_t x, int32_t mult, int shift)
{
    return tt_mbqm64(x, mult, shift);
}

int64_t tt_fx_shift_round64(int64_t x, int shift)
{
    return tt_shift_round64(x, shift);
}

/* ====================================================================== requantization */

tt_status tt_requant_check(const tt_requant *rq, int channels, int bits)
{
    const int32_t lo = -((int32_t)1 << (bits - 1)), hi = ((int32_t)1 << (bits - 1)) - 1;
    int i, nch;
    if (rq == NULL || channels <= 0 || (bits != 8 && bits != 16) ||
        (rq->per_channel != 0 && rq->per_channel != 1)) {
        return TT_ERR_ARG;
    }
    if (rq->act_min < lo || rq->act_max > hi || rq->act_min > rq->act_max) {
        return TT_ERR_ARG;
    }
    nch = rq->per_channel ? channels : 1;
    switch (rq->mode) {
    case TT_RQ_TFLITE:
        if (rq->mult == NULL || rq->shift == NULL) {
            return TT_ERR_ARG;
        }
        for (i = 0; i < nch; ++i) {
            if (rq->mult[i] < 0 || rq->shift[i] < -31 || rq->shift[i] > (bits == 8 ? 30 : 14)) {
                return TT_ERR_ARG;
            }
        }
        break;
    case TT_RQ_POW2:
        if (rq->shift == NULL) {
            return TT_ERR_ARG;
        }
        for (i = 0; i < nch; ++i) {
            if (rq->shift[i] < -63 || rq->shift[i] > 62) {
                return TT_ERR_ARG;
            }
        }
        break;
    case TT_RQ_FLOAT:
        if (rq->fscale == NULL) {
            return TT_ERR_ARG;
        }
        for (i = 0; i < nch; ++i) {
            if (!(rq->fscale[i] >= 0.0f && rq->fscale[i] < 3.0e38f)) {
                return TT_ERR_ARG;
            }
        }
        break;
    default:
        return TT_ERR_ARG;
    }
    return TT_OK;
}

/* rne((float)acc * scale) as MLAS does it: one rounded product, clamp, then the 1.5*2^23
 * trick (|v| <= 2^22 keeps the addition exact up to the final rounding to an integer). */
static int64_t float_requant(int64_t acc, float scale)
{
    const float magic = 0x1.8p+23f;
    float v = (float)acc;
    v = v * scale;
    if (v > 4194304.0f) {
        v = 4194304.0f;
    } else if (v < -4194304.0f) {
        v = -4194304.0f;
    }
    v = v + magic;
    v = v - magic;
    return (int64_t)v;
}

int32_t tt_requant_one(const tt_requant *rq, int ch, int64_t acc, int bits, uint32_t *sat)
{
    const int idx = rq->per_channel ? ch : 0;
    const int32_t lo = -((int32_t)1 << (bits - 1)), hi = ((int32_t)1 << (bits - 1)) - 1;
    int64_t v;
    int32_t r;
    switch (rq->mode) {
    case TT_RQ_TFLITE:
        v = (bits == 8) ? tt_mbqm(tt_sat32(acc), rq->mult[idx], rq->shift[idx])
                        : tt_mbqm64(acc, rq->mult[idx], rq->shift[idx]);
        break;
    case TT_RQ_POW2:
        v = tt_shift_round64(acc, rq->shift[idx]);
        break;
    default:
        v = float_requant(acc, rq->fscale[idx]);
        break;
    }
    r = tt_clamp_count(v, lo, hi, sat);
    return (r < rq->act_min) ? rq->act_min : ((r > rq->act_max) ? rq->act_max : r);
}

tt_status tt_requant_q32_q8(const tt_requant *rq, const int32_t *acc, int8_t *y, int n, int c,
                            int inner, uint32_t *sat)
{
    uint32_t dummy = 0;
    tt_status st;
    int i;
    if (n < 0 || c <= 0 || inner <= 0 || (n > 0 && (acc == NULL || y == NULL))) {
        return TT_ERR_ARG;
    }
    st = tt_requant_check(rq, c, 8);
    if (st != TT_OK) {
        return st;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        y[i] = (int8_t)tt_requant_one(rq, (i / inner) % c, acc[i], 8, sat);
    }
    return TT_OK;
}

tt_status tt_requant_q64_q16(const tt_requant *rq, const int64_t *acc, int16_t *y, int n, int c,
                             int inner, uint32_t *sat)
{
    uint32_t dummy = 0;
    tt_status st;
    int i;
    if (n < 0 || c <= 0 || inner <= 0 || (n > 0 && (acc == NULL || y == NULL))) {
        return TT_ERR_ARG;
    }
    st = tt_requant_check(rq, c, 16);
    if (st != TT_OK) {
        return st;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        y[i] = (int16_t)tt_requant_one(rq, (i / inner) % c, acc[i], 16, sat);
    }
    return TT_OK;
}

tt_status tt_rescale_q32(const int32_t *x, int32_t *y, int n, int32_t mult, int shift,
                         uint32_t *sat)
{
    int i;
    if (n < 0 || (n > 0 && (x == NULL || y == NULL)) || mult < 0 || shift < -31 || shift > 30) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        int32_t v;
        const int left = shift > 0 ? shift : 0;
        const int64_t xs = (int64_t)x[i] * ((int64_t)1 << left);
        if ((xs > INT32_MAX || xs < INT32_MIN) && sat != NULL) {
            ++*sat;
        }
        v = tt_mbqm(x[i], mult, shift);
        y[i] = v;
    }
    return TT_OK;
}

tt_status tt_requant_float_q8(const int32_t *acc, int8_t *y, int n, float scale, uint32_t *sat)
{
    uint32_t dummy = 0;
    int i;
    if (n < 0 || (n > 0 && (acc == NULL || y == NULL)) || !(scale >= 0.0f && scale < 3.0e38f)) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        y[i] = (int8_t)tt_clamp_count(float_requant(acc[i], scale), -128, 127, sat);
    }
    return TT_OK;
}

/* ====================================================================== power-of-two scales */

static int pow2_shift_for(uint64_t maxabs, int bits)
{
    const uint64_t limit = ((uint64_t)1 << (bits - 1)) - 1U;
    int s = 0;
    /* rdbpot of a non-negative magnitude: (m + 2^(s-1)) >> s, no overflow for m <= 2^63 */
    while (s < 64 && ((s == 0) ? maxabs : ((maxabs >> s) + ((maxabs >> (s - 1)) & 1U))) > limit) {
        ++s;
    }
    return s;
}

tt_status tt_grad_scale_pow2_q32(const int32_t *acc, int n, int bits, int *rshift)
{
    uint64_t m = 0U;
    int i;
    if (n < 0 || (n > 0 && acc == NULL) || rshift == NULL || bits < 2 || bits > 32) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const int64_t v = acc[i];
        const uint64_t a = (uint64_t)(v < 0 ? -v : v);
        m = a > m ? a : m;
    }
    *rshift = pow2_shift_for(m, bits);
    return TT_OK;
}

tt_status tt_grad_scale_pow2_q64(const int64_t *acc, int n, int bits, int *rshift)
{
    uint64_t m = 0U;
    int i;
    if (n < 0 || (n > 0 && acc == NULL) || rshift == NULL || bits < 2 || bits > 32) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const uint64_t u = (uint64_t)acc[i];
        const uint64_t a = (acc[i] < 0) ? (~u + 1U) : u; /* |INT64_MIN| = 2^63 fits */
        m = a > m ? a : m;
    }
    *rshift = pow2_shift_for(m, bits);
    return TT_OK;
}

/* Stores go through memcpy (a character-type access) so that y may alias acc in place
 * without breaking C's effective-type rules; compilers emit a plain store. */
#define TT_POW2_BODY(STORE_T, LO, HI)                                                   \
    do {                                                                                \
        uint32_t dummy = 0;                                                             \
        unsigned char *yb = (unsigned char *)y;                                         \
        int i;                                                                          \
        if (n < 0 || (n > 0 && (acc == NULL || y == NULL)) || rshift < -62 ||           \
            rshift > 63) {                                                              \
            return TT_ERR_ARG;                                                          \
        }                                                                               \
        if (sat == NULL) {                                                              \
            sat = &dummy;                                                               \
        }                                                                               \
        for (i = 0; i < n; ++i) {                                                       \
            const STORE_T v =                                                           \
                (STORE_T)tt_clamp_count(tt_shift_round64(acc[i], -rshift), LO, HI, sat); \
            memcpy(yb + (size_t)i * sizeof(STORE_T), &v, sizeof(STORE_T));             \
        }                                                                               \
        return TT_OK;                                                                   \
    } while (0)

tt_status tt_requant_pow2_q32_q8(const int32_t *acc, int8_t *y, int n, int rshift, uint32_t *sat)
{
    TT_POW2_BODY(int8_t, -128, 127);
}

tt_status tt_requant_pow2_q32_q16(const int32_t *acc, int16_t *y, int n, int rshift,
                                  uint32_t *sat)
{
    TT_POW2_BODY(int16_t, -32768, 32767);
}

tt_status tt_requant_pow2_q64_q16(const int64_t *acc, int16_t *y, int n, int rshift,
                                  uint32_t *sat)
{
    TT_POW2_BODY(int16_t, -32768, 32767);
}

tt_status tt_requant_pow2_q64_q32(const int64_t *acc, int32_t *y, int n, int rshift,
                                  uint32_t *sat)
{
    TT_POW2_BODY(int32_t, INT32_MIN, INT32_MAX);
}

tt_status tt_grad_quant_pow2_q32_q8(const int32_t *acc, int8_t *y, int n, int *rshift)
{
    const tt_status st = tt_grad_scale_pow2_q32(acc, n, 8, rshift);
    return (st != TT_OK) ? st : tt_requant_pow2_q32_q8(acc, y, n, *rshift, NULL);
}

tt_status tt_grad_quant_pow2_q32_q16(const int32_t *acc, int16_t *y, int n, int *rshift)
{
    const tt_status st = tt_grad_scale_pow2_q32(acc, n, 16, rshift);
    return (st != TT_OK) ? st : tt_requant_pow2_q32_q16(acc, y, n, *rshift, NULL);
}

tt_status tt_grad_quant_pow2_q64_q16(const int64_t *acc, int16_t *y, int n, int *rshift)
{
    const tt_status st = tt_grad_scale_pow2_q64(acc, n, 16, rshift);
    return (st != TT_OK) ? st : tt_requant_pow2_q64_q16(acc, y, n, *rshift, NULL);
}

tt_status tt_grad_quant_pow2_q64_q32(const int64_t *acc, int32_t *y, int n, int *rshift)
{
    const tt_status st = tt_grad_scale_pow2_q64(acc, n, 32, rshift);
    return (st != TT_OK) ? st : tt_requant_pow2_q64_q32(acc, y, n, *rshift, NULL);
}

/* ====================================================================== integer exp / log */

#define TT_LOG2E_Q30 1549082005
#define TT_SQRT2_Q30 1518500250
#define TT_LN2_Q56 49946518145322874LL

/* (ln 2)^i / i! in Q30, i = 0..8 */
static const int32_t exp_c[9] = {1073741824, 744261118, 257941248, 59597083, 10327387,
                                 1431680,    165394,    16377,     1419};
/* 2 / (2i + 1) in Q30, i = 0..5 */
static const int64_t log_c[6] = {2147483648LL, 715827883, 429496730, 306783378, 238609294,
                                 195225786};

int32_t tt_exp_q24_q30(int32_t z)
{
    int64_t t, k, f, u, p, e;
    int i;
    if (z >= 0) {
        return (int32_t)1 << 30;
    }
    t = (int64_t)z * TT_LOG2E_Q30;                 /* z * log2(e), Q54, < 0 */
    k = -tt_asr64(t, 54);                          /* t = -k + f, f in [0, 1), k >= 1 */
    f = (t & (((int64_t)1 << 54) - 1)) + ((int64_t)1 << 23);
    f >>= 24;                                      /* f in Q30, rounded; may reach 2^30 */
    u = f - ((int64_t)1 << 29);                    /* f - 1/2 */
    p = exp_c[8];
    for (i = 7; i >= 0; --i) {
        p = exp_c[i] + tt_asr64(p * u + ((int64_t)1 << 29), 30);
    }
    e = tt_asr64(p * TT_SQRT2_Q30 + ((int64_t)1 << 29), 30); /* 2^f, Q30 */
    e = (k > 62) ? 0 : tt_rdbpot64(e, (int)k);
    return (int32_t)(e > ((int64_t)1 << 30) ? ((int64_t)1 << 30) : e);
}

int32_t tt_log_q30_q24(int64_t s)
{
    int L = 0, i;
    int64_t m, one, E, num, den, u, z, p, ln_m, r;
    if (s <= 0) {
        return INT32_MIN;
    }
    while (L < 62 && (s >> (L + 1)) > 0) {
        ++L;
    }
    m = (L >= 30) ? (s >> (L - 30)) : (s << (30 - L)); /* [2^30, 2^31) */
    one = (m > TT_SQRT2_Q30) ? ((int64_t)1 << 31) : ((int64_t)1 << 30);
    E = (int64_t)L - 30 + (m > TT_SQRT2_Q30 ? 1 : 0);
    num = m - one;
    den = m + one;
    u = (((num < 0 ? -num : num) << 30) + (den >> 1)) / den; /* |u| Q30, ties up */
    u = (num < 0) ? -u : u;
    z = (u * u + ((int64_t)1 << 29)) >> 30;
    p = log_c[5];
    for (i = 4; i >= 0; --i) {
        p = log_c[i] + ((p * z + ((int64_t)1 << 29)) >> 30);
    }
    ln_m = tt_asr64(u * p + ((int64_t)1 << 29), 30);
    r = tt_rdbpot64(E * TT_LN2_Q56 + ln_m * ((int64_t)1 << 26), 32);
    return tt_sat32(r);
}
