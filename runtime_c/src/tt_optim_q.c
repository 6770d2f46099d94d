/*
 * tt_optim_q.c - integer SGD and SGD+momentum with round-to-nearest or stochastic rounding.
 * Specification in tt_qkernels.h.
 *
 * Instantiated three times (see tt_gemm_q.c): _q8 (int8 weights), _q16 (int16) and _q32
 * (int32, for biases). The gradient is always int32; products are exact in int64
 * (|g * mult| < 2^62), so the only roundings are the documented ones.
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qkernels.h"

/* R(D / 2^r): ties away from zero, or stochastic with one draw (always consumed) */
static int64_t round_shift(int64_t d, int r, int rounding, tt_prng *rng)
{
    if (rounding == TT_ROUND_STOCHASTIC) {
        return tt_sr_rshift_i64(d, r, tt_prng_u32(rng));
    }
    return tt_rdbpot64(d, r);
}

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS

#define TQ int8_t
#define TQ_SUF _q8
#define TQ_MIN (-128)
#define TQ_MAX 127
#include "tt_optim_q.c"
#undef TQ
#undef TQ_SUF
#undef TQ_MIN
#undef TQ_MAX

#define TQ int16_t
#define TQ_SUF _q16
#define TQ_MIN (-32768)
#define TQ_MAX 32767
#include "tt_optim_q.c"
#undef TQ
#undef TQ_SUF
#undef TQ_MIN
#undef TQ_MAX

#define TQ int32_t
#define TQ_SUF _q32
#define TQ_MIN INT32_MIN
#define TQ_MAX INT32_MAX
#include "tt_optim_q.c"

#else /* ======================================================== template body */

tt_status TT_Q(tt_sgd_upd)(TQ *TT_RESTRICT w, int32_t *TT_RESTRICT g, int n, int32_t mult,
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
        const int64_t delta = round_shift((int64_t)g[i] * mult, 31 - shift, rounding, rng);
        w[i] = (TQ)tt_clamp_count((int64_t)w[i] - delta, TQ_MIN, TQ_MAX, sat);
        g[i] = 0;
    }
    return TT_OK;
}

tt_status TT_Q(tt_momentum_upd)(TQ *TT_RESTRICT w, int32_t *TT_RESTRICT g,
                                int32_t *TT_RESTRICT v, int n, const tt_qmomentum *p,
                                tt_prng *rng, uint32_t *sat)
{
    uint32_t dummy = 0;
    int i;
    if (p == NULL || n < 0 || (n > 0 && (w == NULL || g == NULL || v == NULL)) ||
        p->lr_mult < 0 || p->lr_shift < -31 || p->lr_shift > 31 || p->beta_mult < 0 ||
        p->g_shift < -62 || p->g_shift > 31 ||
        (p->rounding != TT_ROUND_NEAREST && p->rounding != TT_ROUND_STOCHASTIC) ||
        (p->rounding == TT_ROUND_STOCHASTIC && rng == NULL)) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        const int64_t gv = tt_shift_round64(g[i], p->g_shift);
        const int64_t vd = tt_rdbpot64((int64_t)v[i] * p->beta_mult, 31);
        int64_t delta;
        v[i] = tt_clamp_count(vd + gv, INT32_MIN, INT32_MAX, sat); /* |gv| <= 2^62: exact */
        delta = round_shift((int64_t)v[i] * p->lr_mult, 31 - p->lr_shift, p->rounding, rng);
        w[i] = (TQ)tt_clamp_count((int64_t)w[i] - delta, TQ_MIN, TQ_MAX, sat);
        g[i] = 0;
    }
    return TT_OK;
}

#endif /* TT_Q_TEMPLATE_PASS */
