/*
 * tt_perturb_q.c - forward-gradient (zeroth-order, SPSA) helpers in fixed point: apply a
 * regenerated perturbation to integer weights, accumulate d_k * z_k into an int32 gradient,
 * or apply the SGD step c * z_k to the weights directly. Specification in tt_qkernels.h.
 *
 * The perturbation z is never stored: every kernel draws it through next_z, in the same
 * order as tt_prng_rademacher_i8 / tt_prng_gauss_i16, so seeding the same (seed, stream)
 * twice gives the same z. Instantiated four times (see tt_gemm_q.c): _q8 and _q16 weights,
 * _q32 and _q64 biases.
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qkernels.h"

/* z_i for i = 0, 1, ... in order; *word / *left carry the Rademacher draw across calls */
static int32_t next_z(tt_prng *rng, int dist, uint32_t *word, int *left)
{
    if (dist == TT_ZO_GAUSS) {
        const uint32_t u = tt_prng_u32(rng);
        return (int32_t)((u & 0xFFU) + ((u >> 8) & 0xFFU) + ((u >> 16) & 0xFFU) + (u >> 24)) -
               510;
    }
    if (*left == 0) {
        *word = tt_prng_u32(rng);
        *left = 32;
    }
    {
        const int32_t z = 1 - 2 * (int32_t)(*word & 1U);
        *word >>= 1;
        --*left;
        return z;
    }
}

tt_status tt_zo_accum_q32(int32_t *g, int n, tt_prng *rng, int32_t d, int shift, int dist,
                          uint32_t *sat)
{
    uint32_t dummy = 0, word = 0U;
    int i, left = 0;
    if (n < 0 || (n > 0 && g == NULL) || rng == NULL || shift < -62 || shift > 31 ||
        (dist != TT_ZO_RADEMACHER && dist != TT_ZO_GAUSS)) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        const int64_t t = tt_shift_round64((int64_t)d * next_z(rng, dist, &word, &left), shift);
        g[i] = tt_clamp_count((int64_t)g[i] + t, INT32_MIN, INT32_MAX, sat);
    }
    return TT_OK;
}

/* |c| <= 2^40 keeps c * z (|z| <= 510) exact in int64 with room to spare */
#define TT_ZO_C_MAX ((int64_t)1 << 40)

int64_t tt_zo_coef(int32_t d, int32_t mult, int shift, int frac_bits, uint32_t *sat)
{
    const int64_t x = (int64_t)d * mult; /* |x| <= 2^62: exact */
    const int e = shift - 31 + frac_bits;
    int64_t c;
    if (e < -63) {
        return 0; /* |x| / 2^64 <= 1/4 rounds to 0 */
    }
    /* beyond 62 the result is 0 or saturates either way (|x| * 2^62 > 2^40 for x != 0) */
    c = tt_shift_round64(x, e > 62 ? 62 : e);
    if (c > TT_ZO_C_MAX || c < -TT_ZO_C_MAX) {
        if (sat != NULL) {
            ++*sat;
        }
        return c > 0 ? TT_ZO_C_MAX : -TT_ZO_C_MAX;
    }
    return c;
}

/* x clamped to [lo, hi] (counted) for the int64 instantiation. x = w +- a term below 2^50:
   the callers form it with tt_q_add64, which saturates instead of overflowing */
static int64_t clamp_count64(int64_t x, int64_t lo, int64_t hi, uint32_t *sat)
{
    if (x < lo) {
        ++*sat;
        return lo;
    }
    if (x > hi) {
        ++*sat;
        return hi;
    }
    return x;
}

/* w + t without overflow: saturates at the int64 limits (beyond any [lo, hi] the caller
   uses, so the clamp that follows counts it) */
static int64_t tt_q_add64(int64_t w, int64_t t)
{
    if (t > 0 && w > INT64_MAX - t) {
        return INT64_MAX;
    }
    if (t < 0 && w < INT64_MIN - t) {
        return INT64_MIN;
    }
    return w + t;
}

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS
#define TQ_BOUND int32_t
#define TQ_CLAMP tt_clamp_count
#define TQ_EPS_MAX 65535

#define TQ int8_t
#define TQ_SUF _q8
#define TQ_MIN (-128)
#define TQ_MAX 127
#include "tt_perturb_q.c"
#undef TQ
#undef TQ_SUF
#undef TQ_MIN
#undef TQ_MAX

#define TQ int16_t
#define TQ_SUF _q16
#define TQ_MIN (-32768)
#define TQ_MAX 32767
#include "tt_perturb_q.c"
#undef TQ
#undef TQ_SUF
#undef TQ_MIN
#undef TQ_MAX

/* int32 / int64 biases of fixed-point layers (the _q8 model's, and the int64 ones of int16
   and w16a8 layers) */
#undef TQ_EPS_MAX
#define TQ_EPS_MAX (1 << 24) /* int32 biases: a bias LSB is tiny, steps are large */
#define TQ int32_t
#define TQ_SUF _q32
#define TQ_MIN INT32_MIN
#define TQ_MAX INT32_MAX
#include "tt_perturb_q.c"
#undef TQ
#undef TQ_SUF
#undef TQ_MIN
#undef TQ_MAX
#undef TQ_BOUND
#undef TQ_CLAMP

#define TQ int64_t
#define TQ_SUF _q64
#define TQ_MIN INT64_MIN
#define TQ_MAX INT64_MAX
#define TQ_BOUND int64_t
#define TQ_CLAMP clamp_count64
#undef TQ_EPS_MAX
#define TQ_EPS_MAX (1 << 30)
#include "tt_perturb_q.c"

#else /* ======================================================== template body */

tt_status TT_Q(tt_zo_perturb)(const TQ *w, TQ *w_out, int n, tt_prng *rng, int32_t eps, int dist,
                              uint32_t *sat)
{
    uint32_t dummy = 0, word = 0U;
    int i, left = 0;
    if (n < 0 || (n > 0 && (w == NULL || w_out == NULL)) || rng == NULL || eps < -TQ_EPS_MAX ||
        eps > TQ_EPS_MAX || (dist != TT_ZO_RADEMACHER && dist != TT_ZO_GAUSS)) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        const int32_t z = next_z(rng, dist, &word, &left);
        w_out[i] = (TQ)TQ_CLAMP(tt_q_add64((int64_t)w[i], (int64_t)eps * z), TQ_MIN, TQ_MAX, sat);
    }
    return TT_OK;
}

tt_status TT_Q(tt_zo_update)(TQ *w, int n, tt_prng *zrng, int dist, int64_t c, int frac_bits,
                             int rounding, tt_prng *rrng, TQ_BOUND lo, TQ_BOUND hi, uint32_t *sat)
{
    uint32_t dummy = 0, word = 0U;
    int i, left = 0;
    if (n < 0 || (n > 0 && w == NULL) || zrng == NULL ||
        (dist != TT_ZO_RADEMACHER && dist != TT_ZO_GAUSS) || c > TT_ZO_C_MAX ||
        c < -TT_ZO_C_MAX || frac_bits < 0 || frac_bits > 62 || lo < TQ_MIN || hi > TQ_MAX ||
        lo > hi || (rounding != TT_ROUND_NEAREST && rounding != TT_ROUND_STOCHASTIC) ||
        (rounding == TT_ROUND_STOCHASTIC && (rrng == NULL || rrng == zrng))) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        /* |c * z| <= 2^40 * 510 < 2^49: exact, and w - delta cannot overflow */
        const int64_t cz = c * next_z(zrng, dist, &word, &left);
        const int64_t delta = (rounding == TT_ROUND_NEAREST)
                                  ? tt_rdbpot64(cz, frac_bits)
                                  : tt_sr_rshift_i64(cz, frac_bits, tt_prng_u32(rrng));
        w[i] = (TQ)TQ_CLAMP(tt_q_add64((int64_t)w[i], -delta), lo, hi, sat);
    }
    return TT_OK;
}

#endif /* TT_Q_TEMPLATE_PASS */
