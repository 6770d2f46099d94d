/*
 * tt_perturb_q.c - forward-gradient (zeroth-order, SPSA) helpers in fixed point: apply a
 * regenerated perturbation to integer weights, and accumulate d_k * z_k into an int32
 * gradient. Specification in tt_qkernels.h.
 *
 * The perturbation z is never stored: both kernels draw it from the generator in the same
 * order as tt_prng_rademacher_i8 / tt_prng_gauss_i16, so seeding the same (seed, stream)
 * twice gives the same z. Instantiated twice (see tt_gemm_q.c): _q8 and _q16.
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

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS

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

#else /* ======================================================== template body */

tt_status TT_Q(tt_zo_perturb)(const TQ *w, TQ *w_out, int n, tt_prng *rng, int32_t eps, int dist,
                              uint32_t *sat)
{
    uint32_t dummy = 0, word = 0U;
    int i, left = 0;
    if (n < 0 || (n > 0 && (w == NULL || w_out == NULL)) || rng == NULL || eps < -65535 ||
        eps > 65535 || (dist != TT_ZO_RADEMACHER && dist != TT_ZO_GAUSS)) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        const int32_t z = next_z(rng, dist, &word, &left);
        w_out[i] = (TQ)tt_clamp_count((int64_t)w[i] + (int64_t)eps * z, TQ_MIN, TQ_MAX, sat);
    }
    return TT_OK;
}

#endif /* TT_Q_TEMPLATE_PASS */
