/*
 * tt_act_q.c - fixed-point ReLU forward / backward and 1-bit ReLU masks.
 *
 * Instantiated twice (see tt_gemm_q.c): _q8 and _q16. Element i of every input is read before
 * element i of the output is written and never again, so y == x and gx == gy are legal.
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qkernels.h"

tt_status tt_mask_unpack(const uint8_t *mask, uint8_t *TT_RESTRICT out, int n)
{
    int i;
    if (n < 0 || (n > 0 && (mask == NULL || out == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        out[i] = (uint8_t)((mask[i >> 3] >> (i & 7)) & 1U);
    }
    return TT_OK;
}

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS

#define TQ int8_t
#define TQ_SUF _q8
#include "tt_act_q.c"
#undef TQ
#undef TQ_SUF

#define TQ int16_t
#define TQ_SUF _q16
#include "tt_act_q.c"

#else /* ======================================================== template body */

tt_status TT_Q(tt_relu_fwd)(const TQ *x, TQ *y, int n)
{
    int i;
    if (n < 0 || (n > 0 && (x == NULL || y == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const TQ v = x[i];
        y[i] = (v < 0) ? (TQ)0 : v;
    }
    return TT_OK;
}

tt_status TT_Q(tt_relu_bwd_x)(const TQ *gy, const TQ *y, TQ *gx, int n)
{
    int i;
    if (n < 0 || (n > 0 && (gy == NULL || y == NULL || gx == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        gx[i] = (y[i] > 0) ? gy[i] : (TQ)0;
    }
    return TT_OK;
}

tt_status TT_Q(tt_relu_mask_pack)(const TQ *y, uint8_t *TT_RESTRICT mask, int n)
{
    int i;
    if (n < 0 || (n > 0 && (y == NULL || mask == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; i += 8) {
        unsigned bits = 0U;
        int j;
        for (j = 0; j < 8 && i + j < n; ++j) {
            bits |= (unsigned)(y[i + j] > 0) << j;
        }
        mask[i >> 3] = (uint8_t)bits;
    }
    return TT_OK;
}

tt_status TT_Q(tt_relu_bwd_x_mask)(const TQ *gy, const uint8_t *mask, TQ *gx, int n)
{
    int i;
    if (n < 0 || (n > 0 && (gy == NULL || mask == NULL || gx == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        gx[i] = ((mask[i >> 3] >> (i & 7)) & 1U) ? gy[i] : (TQ)0;
    }
    return TT_OK;
}

#endif /* TT_Q_TEMPLATE_PASS */
