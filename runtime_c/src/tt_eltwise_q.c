/*
 * tt_eltwise_q.c - fixed-point broadcasting Add (TFLite semantics, two input scales) and its
 * backward reduction.
 *
 * Instantiated twice (see tt_gemm_q.c): _q8 and _q16. Shapes and strides as tt_bcast4 (f32
 * kernels): 4-D output shape, operand strides in elements, 0 on broadcast dimensions.
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qkernels.h"

static tt_status bcast_check(const tt_bcast4 *p)
{
    int d;
    if (p == NULL) {
        return TT_ERR_ARG;
    }
    for (d = 0; d < 4; ++d) {
        if (p->shape[d] <= 0 || p->a_stride[d] < 0 || p->b_stride[d] < 0) {
            return TT_ERR_SHAPE;
        }
    }
    return TT_OK;
}

static tt_status qadd_check(const tt_qadd_params *q, int bits)
{
    const int32_t lo = -((int32_t)1 << (bits - 1)), hi = ((int32_t)1 << (bits - 1)) - 1;
    if (q == NULL) {
        return TT_ERR_ARG;
    }
    if (q->left_shift < 0 || q->left_shift > 31 - bits || q->a_mult < 0 || q->b_mult < 0 ||
        q->y_mult < 0 || q->a_shift < -31 || q->a_shift > 0 || q->b_shift < -31 ||
        q->b_shift > 0 || q->y_shift < -31 || q->y_shift > 30 || q->act_min < lo ||
        q->act_max > hi || q->act_min > q->act_max) {
        return TT_ERR_ARG;
    }
    return TT_OK;
}

/* y = requantized a + b for one pair of stored values (see tt_qkernels.h) */
static int32_t qadd_one(const tt_qadd_params *q, int32_t a, int32_t b, int32_t lo, int32_t hi,
                        uint32_t *sat)
{
    const int32_t sa = tt_mbqm(a * ((int32_t)1 << q->left_shift), q->a_mult, q->a_shift);
    const int32_t sb = tt_mbqm(b * ((int32_t)1 << q->left_shift), q->b_mult, q->b_shift);
    const int32_t r = tt_clamp_count(tt_mbqm(tt_sat32((int64_t)sa + sb), q->y_mult, q->y_shift),
                                     lo, hi, sat);
    return (r < q->act_min) ? q->act_min : ((r > q->act_max) ? q->act_max : r);
}

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS

#define TQ int8_t
#define TACC int32_t
#define TQ_SUF _q8
#define TQ_BITS 8
#include "tt_eltwise_q.c"
#undef TQ
#undef TACC
#undef TQ_SUF
#undef TQ_BITS

#define TQ int16_t
#define TACC int64_t
#define TQ_SUF _q16
#define TQ_BITS 16
#include "tt_eltwise_q.c"

#else /* ======================================================== template body */

tt_status TT_Q(tt_add_fwd)(const tt_bcast4 *p, const tt_qadd_params *q, const TQ *a,
                           const TQ *b, TQ *y, uint32_t *sat)
{
    const int32_t lo = -((int32_t)1 << (TQ_BITS - 1)), hi = ((int32_t)1 << (TQ_BITS - 1)) - 1;
    uint32_t dummy = 0;
    tt_status st = bcast_check(p);
    int i0, i1, i2, i3;
    if (st != TT_OK) {
        return st;
    }
    st = qadd_check(q, TQ_BITS);
    if (st != TT_OK) {
        return st;
    }
    if (a == NULL || b == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                const size_t oa = (size_t)i0 * (size_t)p->a_stride[0] +
                                  (size_t)i1 * (size_t)p->a_stride[1] +
                                  (size_t)i2 * (size_t)p->a_stride[2];
                const size_t ob = (size_t)i0 * (size_t)p->b_stride[0] +
                                  (size_t)i1 * (size_t)p->b_stride[1] +
                                  (size_t)i2 * (size_t)p->b_stride[2];
                for (i3 = 0; i3 < p->shape[3]; ++i3) {
                    const int32_t va = a[oa + (size_t)i3 * (size_t)p->a_stride[3]];
                    const int32_t vb = b[ob + (size_t)i3 * (size_t)p->b_stride[3]];
                    *y++ = (TQ)qadd_one(q, va, vb, lo, hi, sat);
                }
            }
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_add_bwd)(const tt_bcast4 *p, const TQ *gy, TACC *TT_RESTRICT g, int which,
                           int accumulate)
{
    const tt_status st = bcast_check(p);
    const int *s;
    int red[4], kext[4], rext[4], ys[4], d;
    int i0, i1, i2, i3, j0, j1, j2, j3;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || g == NULL || (which != 0 && which != 1) ||
        (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    s = which ? p->b_stride : p->a_stride;
    ys[3] = 1;
    for (d = 2; d >= 0; --d) {
        ys[d] = ys[d + 1] * p->shape[d + 1];
    }
    for (d = 0; d < 4; ++d) {
        red[d] = (s[d] == 0 && p->shape[d] > 1);
        kext[d] = red[d] ? 1 : p->shape[d];
        rext[d] = red[d] ? p->shape[d] : 1;
    }
    /* for every operand element (kept dims), sum the output positions of the reduced dims */
    for (i0 = 0; i0 < kext[0]; ++i0) {
        for (i1 = 0; i1 < kext[1]; ++i1) {
            for (i2 = 0; i2 < kext[2]; ++i2) {
                for (i3 = 0; i3 < kext[3]; ++i3) {
                    const size_t off = (size_t)i0 * (size_t)s[0] + (size_t)i1 * (size_t)s[1] +
                                       (size_t)i2 * (size_t)s[2] + (size_t)i3 * (size_t)s[3];
                    TACC acc = accumulate ? g[off] : 0;
                    for (j0 = 0; j0 < rext[0]; ++j0) {
                        for (j1 = 0; j1 < rext[1]; ++j1) {
                            for (j2 = 0; j2 < rext[2]; ++j2) {
                                for (j3 = 0; j3 < rext[3]; ++j3) {
                                    acc += gy[(size_t)(i0 + j0) * (size_t)ys[0] +
                                              (size_t)(i1 + j1) * (size_t)ys[1] +
                                              (size_t)(i2 + j2) * (size_t)ys[2] +
                                              (size_t)(i3 + j3) * (size_t)ys[3]];
                                }
                            }
                        }
                    }
                    g[off] = acc;
                }
            }
        }
    }
    return TT_OK;
}

#endif /* TT_Q_TEMPLATE_PASS */
