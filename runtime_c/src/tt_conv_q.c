/*
 * tt_conv_q.c - fixed-point 2-D grouped convolution (depthwise, pointwise, any stride and
 * padding): forward (requantized), input gradient and weight gradient (accumulators).
 *
 * Instantiated as tt_gemm_q.c (see the macros there): _q8 (int8 / int32) and _q16 (int16 /
 * int64), every pass; _w16a8 (int8 activations, int16 weights, int64 accumulators, TFLite
 * requantization by tt_mbqm64 to int8), the forward pass only.
 * For every output row / column the valid kernel-tap range is computed once (taps outside the
 * input are skipped), so there is no padding buffer and no per-tap test. The backward passes
 * scatter each non-zero output gradient (ReLU leaves many zeros); integer sums are exact, so
 * the order does not change a result.
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qkernels.h"

/* tap range [*lo, *hi) of a kernel of size k for output o: o*s - pad + t in [0, n_in) */
static void tap_range(int o, int s, int pad, int k, int n_in, int *lo, int *hi)
{
    const int start = o * s - pad;
    *lo = (start < 0) ? -start : 0;
    *hi = (start + k > n_in) ? n_in - start : k;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

static tt_status conv_check(const tt_conv2d_params *p)
{
    if (p == NULL) {
        return TT_ERR_ARG;
    }
    if (p->in_c <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->out_c <= 0 || p->out_h <= 0 ||
        p->out_w <= 0 || p->k_h <= 0 || p->k_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
        p->pad_top < 0 || p->pad_left < 0 || p->groups <= 0 || p->in_c % p->groups != 0 ||
        p->out_c % p->groups != 0) {
        return TT_ERR_SHAPE;
    }
    return TT_OK;
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
#include "tt_conv_q.c"
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
#include "tt_conv_q.c"
#undef TA
#undef TW
#undef TACC
#undef TQ_SUF
#undef TA_BITS
#undef TQ_RQ_ONE
#undef TQ_RQ_CHECK
#undef TQ_FWD_ONLY

#define TA int8_t
#define TW int16_t
#define TACC int64_t
#define TQ_SUF _w16a8
#define TA_BITS 8
#define TQ_RQ_ONE tt_requant_one_acc64
#define TQ_RQ_CHECK tt_requant_check_acc64
#define TQ_FWD_ONLY 1
#include "tt_conv_q.c"

#else /* ======================================================== template body */

tt_status TT_Q(tt_conv2d_fwd)(const tt_conv2d_params *p, const TA *x, const TW *w,
                              const TACC *b, TA *TT_RESTRICT y, const tt_requant *rq,
                              uint32_t *sat)
{
    uint32_t dummy = 0;
    tt_status st = conv_check(p);
    int oc, oh, ow, icg, kh, kw;
    if (st != TT_OK) {
        return st;
    }
    if (x == NULL || w == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    st = TQ_RQ_CHECK(rq, p->out_c, TA_BITS);
    if (st != TT_OK) {
        return st;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    {
        const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
        const size_t in_hw = (size_t)p->in_h * (size_t)p->in_w;
        const size_t wst = (size_t)cin_g * (size_t)p->k_h * (size_t)p->k_w;
        for (oc = 0; oc < p->out_c; ++oc) {
            const TA *xg = x + (size_t)(oc / cout_g) * (size_t)cin_g * in_hw;
            const TW *wo = w + (size_t)oc * wst;
            const TACC init = (b != NULL) ? b[oc] : 0;
            for (oh = 0; oh < p->out_h; ++oh) {
                int kh0, kh1;
                const int ih0 = oh * p->stride_h - p->pad_top;
                tap_range(oh, p->stride_h, p->pad_top, p->k_h, p->in_h, &kh0, &kh1);
                for (ow = 0; ow < p->out_w; ++ow) {
                    int kw0, kw1;
                    const int iw0 = ow * p->stride_w - p->pad_left;
                    TACC acc = init;
                    tap_range(ow, p->stride_w, p->pad_left, p->k_w, p->in_w, &kw0, &kw1);
                    for (icg = 0; icg < cin_g && kw0 < kw1; ++icg) {
                        const TA *xc = xg + (size_t)icg * in_hw;
                        const TW *wc = wo + (size_t)icg * (size_t)p->k_h * (size_t)p->k_w;
                        for (kh = kh0; kh < kh1; ++kh) {
                            const TA *xr = xc + (size_t)(ih0 + kh) * (size_t)p->in_w +
                                           (size_t)(iw0 + kw0);
                            const TW *wr = wc + (size_t)kh * (size_t)p->k_w + (size_t)kw0;
                            for (kw = 0; kw < kw1 - kw0; ++kw) {
                                acc += (TACC)xr[kw] * wr[kw];
                            }
                        }
                    }
                    *y++ = (TA)TQ_RQ_ONE(rq, oc, acc, TA_BITS, sat);
                }
            }
        }
    }
    return TT_OK;
}

#if !TQ_FWD_ONLY

tt_status TT_Q(tt_conv2d_bwd_x)(const tt_conv2d_params *p, const TA *gy, const TW *w,
                                TACC *TT_RESTRICT gx, int accumulate)
{
    const tt_status st = conv_check(p);
    int oc, oh, ow, icg, kh, kw;
    size_t i;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || w == NULL || gx == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    {
        const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
        const size_t in_hw = (size_t)p->in_h * (size_t)p->in_w;
        const size_t wst = (size_t)cin_g * (size_t)p->k_h * (size_t)p->k_w;
        if (!accumulate) {
            for (i = 0; i < (size_t)p->in_c * in_hw; ++i) {
                gx[i] = 0;
            }
        }
        for (oc = 0; oc < p->out_c; ++oc) {
            TACC *gxg = gx + (size_t)(oc / cout_g) * (size_t)cin_g * in_hw;
            const TW *wo = w + (size_t)oc * wst;
            for (oh = 0; oh < p->out_h; ++oh) {
                int kh0, kh1;
                const int ih0 = oh * p->stride_h - p->pad_top;
                tap_range(oh, p->stride_h, p->pad_top, p->k_h, p->in_h, &kh0, &kh1);
                for (ow = 0; ow < p->out_w; ++ow) {
                    int kw0, kw1;
                    const int iw0 = ow * p->stride_w - p->pad_left;
                    const TACC g = *gy++;
                    if (g == 0) {
                        continue;
                    }
                    tap_range(ow, p->stride_w, p->pad_left, p->k_w, p->in_w, &kw0, &kw1);
                    for (icg = 0; icg < cin_g && kw0 < kw1; ++icg) {
                        TACC *gc = gxg + (size_t)icg * in_hw;
                        const TW *wc = wo + (size_t)icg * (size_t)p->k_h * (size_t)p->k_w;
                        for (kh = kh0; kh < kh1; ++kh) {
                            TACC *gr = gc + (size_t)(ih0 + kh) * (size_t)p->in_w +
                                       (size_t)(iw0 + kw0);
                            const TW *wr = wc + (size_t)kh * (size_t)p->k_w + (size_t)kw0;
                            for (kw = 0; kw < kw1 - kw0; ++kw) {
                                gr[kw] += g * wr[kw];
                            }
                        }
                    }
                }
            }
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_conv2d_bwd_w)(const tt_conv2d_params *p, const TA *gy, const TA *x,
                                TACC *TT_RESTRICT gw, int accumulate)
{
    const tt_status st = conv_check(p);
    int oc, oh, ow, icg, kh, kw;
    size_t i;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || x == NULL || gw == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    {
        const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
        const size_t in_hw = (size_t)p->in_h * (size_t)p->in_w;
        const size_t wst = (size_t)cin_g * (size_t)p->k_h * (size_t)p->k_w;
        if (!accumulate) {
            for (i = 0; i < (size_t)p->out_c * wst; ++i) {
                gw[i] = 0;
            }
        }
        for (oc = 0; oc < p->out_c; ++oc) {
            const TA *xg = x + (size_t)(oc / cout_g) * (size_t)cin_g * in_hw;
            TACC *gwo = gw + (size_t)oc * wst;
            for (oh = 0; oh < p->out_h; ++oh) {
                int kh0, kh1;
                const int ih0 = oh * p->stride_h - p->pad_top;
                tap_range(oh, p->stride_h, p->pad_top, p->k_h, p->in_h, &kh0, &kh1);
                for (ow = 0; ow < p->out_w; ++ow) {
                    int kw0, kw1;
                    const int iw0 = ow * p->stride_w - p->pad_left;
                    const TACC g = *gy++;
                    if (g == 0) {
                        continue;
                    }
                    tap_range(ow, p->stride_w, p->pad_left, p->k_w, p->in_w, &kw0, &kw1);
                    for (icg = 0; icg < cin_g && kw0 < kw1; ++icg) {
                        const TA *xc = xg + (size_t)icg * in_hw;
                        TACC *gc = gwo + (size_t)icg * (size_t)p->k_h * (size_t)p->k_w;
                        for (kh = kh0; kh < kh1; ++kh) {
                            const TA *xr = xc + (size_t)(ih0 + kh) * (size_t)p->in_w +
                                           (size_t)(iw0 + kw0);
                            TACC *gr = gc + (size_t)kh * (size_t)p->k_w + (size_t)kw0;
                            for (kw = 0; kw < kw1 - kw0; ++kw) {
                                gr[kw] += g * xr[kw];
                            }
                        }
                    }
                }
            }
        }
    }
    return TT_OK;
}

#endif /* !TQ_FWD_ONLY */

#endif /* TT_Q_TEMPLATE_PASS */
