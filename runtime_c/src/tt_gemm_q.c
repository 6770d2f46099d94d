/*
 * tt_gemm_q.c - fixed-point GEMM (forward, input gradient, weight gradient) and bias gradient.
 *
 * One body, two instantiations: this file includes itself twice with TQ (storage) / TACC
 * (accumulator) = int8_t / int32_t (names ..._q8) and int16_t / int64_t (..._q16); every
 * function defined below the template marker is declared in tt_qkernels.h under both names.
 * Integer sums are exact, so loop order is free; the only rounding is the requantization of
 * the forward output (tt_requant_one).
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qkernels.h"

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS

#define TQ int8_t
#define TACC int32_t
#define TQ_SUF _q8
#define TQ_BITS 8
#include "tt_gemm_q.c"
#undef TQ
#undef TACC
#undef TQ_SUF
#undef TQ_BITS

#define TQ int16_t
#define TACC int64_t
#define TQ_SUF _q16
#define TQ_BITS 16
#include "tt_gemm_q.c"

#else /* ======================================================== template body */

tt_status TT_Q(tt_gemm_fwd)(const TQ *x, const TQ *w, const TACC *b, TQ *TT_RESTRICT y, int n,
                            int k, int m, const tt_requant *rq, uint32_t *sat)
{
    uint32_t dummy = 0;
    tt_status st;
    int i, j, kk;
    if (n < 0 || k < 0 || m <= 0 || (n > 0 && (x == NULL || w == NULL || y == NULL))) {
        return TT_ERR_ARG;
    }
    st = tt_requant_check(rq, m, TQ_BITS);
    if (st != TT_OK) {
        return st;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i = 0; i < n; ++i) {
        const TQ *xi = x + (size_t)i * (size_t)k;
        for (j = 0; j < m; ++j) {
            const TQ *wj = w + (size_t)j * (size_t)k;
            TACC acc = (b != NULL) ? b[j] : 0;
            for (kk = 0; kk < k; ++kk) {
                acc += (TACC)xi[kk] * wj[kk];
            }
            y[(size_t)i * (size_t)m + (size_t)j] = (TQ)tt_requant_one(rq, j, acc, TQ_BITS, sat);
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_gemm_bwd_x)(const TQ *gy, const TQ *w, TACC *TT_RESTRICT gx, int n, int k,
                              int m, int accumulate)
{
    int i, j, kk;
    if (n < 0 || k < 0 || m < 0 || (accumulate != 0 && accumulate != 1) ||
        (n > 0 && k > 0 && (gy == NULL || w == NULL || gx == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        TACC *gxi = gx + (size_t)i * (size_t)k;
        const TQ *gyi = gy + (size_t)i * (size_t)m;
        if (!accumulate) {
            for (kk = 0; kk < k; ++kk) {
                gxi[kk] = 0;
            }
        }
        /* row-wise: gx[i] += gy[i][j] * w[j] (skips zero gradients: ReLU makes many) */
        for (j = 0; j < m; ++j) {
            const TACC g = gyi[j];
            const TQ *wj = w + (size_t)j * (size_t)k;
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

tt_status TT_Q(tt_gemm_bwd_w)(const TQ *gy, const TQ *x, TACC *TT_RESTRICT gw, int n, int k,
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
        const TQ *xi = x + (size_t)i * (size_t)k;
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

tt_status TT_Q(tt_bias_bwd)(const TQ *gy, TACC *TT_RESTRICT gb, int outer, int c, int inner,
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
            const TQ *p = gy + ((size_t)o * (size_t)c + (size_t)ch) * (size_t)inner;
            for (t = 0; t < inner; ++t) {
                acc += p[t];
            }
        }
        gb[ch] = acc;
    }
    return TT_OK;
}

#endif /* TT_Q_TEMPLATE_PASS */
