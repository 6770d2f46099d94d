/*
 * tt_gemm_q.c - fixed-point GEMM (forward, input gradient, weight gradient) and bias gradient.
 *
 * One body, three instantiations: this file includes itself with
 *   TA      activation storage (x, y, gy)        TW      weight storage
 *   TACC    accumulator and bias                 TA_BITS width of y (saturation, act range)
 *   TQ_RQ_ONE / TQ_RQ_CHECK  the requantization width: tt_requant_one / tt_requant_check
 *           (TFLite form tt_mbqm for q8, tt_mbqm64 for q16) or tt_requant_one_acc64 /
 *           tt_requant_check_acc64 (tt_mbqm64 on the int64 accumulator, any output width)
 *   TQ_FWD_ONLY  1: the forward kernel only
 * as  _q8    int8  / int8  / int32 / 8  / tt_requant_one       (all kernels)
 *     _q16   int16 / int16 / int64 / 16 / tt_requant_one       (all kernels)
 *     _w16a8 int8  / int16 / int64 / 8  / tt_requant_one_acc64 (forward only)
 * Every function defined below the template marker is declared in tt_qkernels.h under each of
 * its names. Integer sums are exact, so loop order is free; the only rounding is the
 * requantization of the forward output.
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qkernels.h"

/* tt_requant_check plus the shift range of tt_mbqm64 ([-31, 14]) for TT_RQ_TFLITE, whatever
 * the output width (tt_requant_check allows up to 30 for 8-bit outputs, the tt_mbqm range). */
tt_status tt_requant_check_acc64(const tt_requant *rq, int channels, int bits)
{
    int i;
    const tt_status st = tt_requant_check(rq, channels, bits);
    if (st != TT_OK || rq->mode != TT_RQ_TFLITE) {
        return st;
    }
    for (i = 0; i < (rq->per_channel ? channels : 1); ++i) {
        if (rq->shift[i] > 14) {
            return TT_ERR_ARG;
        }
    }
    return TT_OK;
}

/* tt_requant_one with TT_RQ_TFLITE always in TFLite's int64 form: the int64 accumulator is
 * never narrowed to int32 first (|acc| < 2^47), tt_mbqm64 then saturation to `bits`. POW2
 * and FLOAT already take the int64 accumulator and do not depend on the width. For bits = 16
 * this is tt_requant_one itself. */
int32_t tt_requant_one_acc64(const tt_requant *rq, int ch, int64_t acc, int bits, uint32_t *sat)
{
    const int idx = rq->per_channel ? ch : 0;
    const int32_t lo = -((int32_t)1 << (bits - 1)), hi = ((int32_t)1 << (bits - 1)) - 1;
    int32_t r;
    if (rq->mode != TT_RQ_TFLITE) {
        return tt_requant_one(rq, ch, acc, bits, sat);
    }
    r = tt_clamp_count(tt_mbqm64(acc, rq->mult[idx], rq->shift[idx]), lo, hi, sat);
    return (r < rq->act_min) ? rq->act_min : ((r > rq->act_max) ? rq->act_max : r);
}

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS

#define TA int8_t
#define TW int8_t
#define TACC int32_t
#define TQ_SUF _q8
#define TA_BITS 8
#define TQ_RQ_ONE tt_requant_one
#define TQ_RQ_CHECK tt_requant_check
#define TQ_FWD_ONLY 0
#include "tt_gemm_q.c"
#undef TA
#undef TW
#undef TACC
#undef TQ_SUF
#undef TA_BITS
#undef TQ_RQ_ONE
#undef TQ_RQ_CHECK
#undef TQ_FWD_ONLY

#define TA int16_t
#define TW int16_t
#define TACC int64_t
#define TQ_SUF _q16
#define TA_BITS 16
#define TQ_RQ_ONE tt_requant_one
#define TQ_RQ_CHECK tt_requant_check
#define TQ_FWD_ONLY 0
#include "tt_gemm_q.c"
#undef TA
#undef TW
#undef TACC
#undef TQ_SUF
#undef TA_BITS
#undef TQ_RQ_ONE
#undef TQ_RQ_CHECK
#undef TQ_FWD_ONLY

/* int8 x int16 products are at most 2^22 (-128 * -32768), 2^17 of them below 2^39: int64 */
#define TA int8_t
#define TW int16_t
#define TACC int64_t
#define TQ_SUF _w16a8
#define TA_BITS 8
#define TQ_RQ_ONE tt_requant_one_acc64
#define TQ_RQ_CHECK tt_requant_check_acc64
#define TQ_FWD_ONLY 1
#include "tt_gemm_q.c"

#else /* ======================================================== template body */

tt_status TT_Q(tt_gemm_fwd)(const TA *x, const TW *w, const TACC *b, TA *TT_RESTRICT y, int n,
                            int k, int m, const tt_requant *rq, uint32_t *sat)
{
    uint32_t dummy = 0;
    tt_status st;
    int i, j, kk;
    if (n < 0 || k < 0 || m <= 0 || (n > 0 && (x == NULL || w == NULL || y == NULL))) {
        return TT_ERR_ARG;
    }
    st = TQ_RQ_CHECK(rq, m, TA_BITS);
    if (st != TT_OK) {
        return st;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        const TA *xi = x + (size_t)i * (size_t)k;
        for (j = 0; j < m; ++j) {
            const TW *wj = w + (size_t)j * (size_t)k;
            TACC acc = (b != NULL) ? b[j] : 0;
            for (kk = 0; kk < k; ++kk) {
                acc += (TACC)xi[kk] * wj[kk];
            }
            y[(size_t)i * (size_t)m + (size_t)j] = (TA)TQ_RQ_ONE(rq, j, acc, TA_BITS, sat);
        }
    }
    return TT_OK;
}

#if !TQ_FWD_ONLY

tt_status TT_Q(tt_gemm_bwd_x)(const TA *gy, const TW *w, TACC *TT_RESTRICT gx, int n, int k,
                              int m, int accumulate)
{
    int i, j, kk;
    if (n < 0 || k < 0 || m < 0 || (accumulate != 0 && accumulate != 1) ||
        (n > 0 && k > 0 && (gy == NULL || w == NULL || gx == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        TACC *gxi = gx + (size_t)i * (size_t)k;
        const TA *gyi = gy + (size_t)i * (size_t)m;
        if (!accumulate) {
            for (kk = 0; kk < k; ++kk) {
                gxi[kk] = 0;
            }
        }
        /* row-wise: gx[i] += gy[i][j] * w[j] (skips zero gradients: ReLU makes many) */
        for (j = 0; j < m; ++j) {
            const TACC g = gyi[j];
            const TW *wj = w + (size_t)j * (size_t)k;
            if (g == 0) {
                continue;
            }
            for (kk = 0; kk < k; ++kk) {
                gxi[kk] += g * wj[kk];
            }
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_gemm_bwd_w)(const TA *gy, const TA *x, TACC *TT_RESTRICT gw, int n, int k,
                              int m, int accumulate)
{
    int i, j, kk;
    if (n < 0 || k < 0 || m < 0 || (accumulate != 0 && accumulate != 1) ||
        (m > 0 && k > 0 && (gy == NULL || x == NULL || gw == NULL))) {
        return TT_ERR_ARG;
    }
    if (!accumulate) {
        for (j = 0; j < m * k; ++j) {
            gw[j] = 0;
        }
    }
    for (i = 0; i < n; ++i) {
        const TA *xi = x + (size_t)i * (size_t)k;
        for (j = 0; j < m; ++j) {
            const TACC g = gy[(size_t)i * (size_t)m + (size_t)j];
            TACC *gwj = gw + (size_t)j * (size_t)k;
            if (g == 0) {
                continue;
            }
            for (kk = 0; kk < k; ++kk) {
                gwj[kk] += g * xi[kk];
            }
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_bias_bwd)(const TA *gy, TACC *TT_RESTRICT gb, int outer, int c, int inner,
                            int accumulate)
{
    int o, ch, t;
    if (outer < 0 || c < 0 || inner < 0 || (accumulate != 0 && accumulate != 1) ||
        (c > 0 && (gy == NULL || gb == NULL))) {
        return TT_ERR_ARG;
    }
    for (ch = 0; ch < c; ++ch) {
        TACC acc = accumulate ? gb[ch] : 0;
        for (o = 0; o < outer; ++o) {
            const TA *p = gy + ((size_t)o * (size_t)c + (size_t)ch) * (size_t)inner;
            for (t = 0; t < inner; ++t) {
                acc += p[t];
            }
        }
        gb[ch] = acc;
    }
    return TT_OK;
}

#endif /* !TQ_FWD_ONLY */

#endif /* TT_Q_TEMPLATE_PASS */
