/*
 * tt_conv_f16.c - FP16-storage 2-D grouped convolution: forward, input gradient, weight
 * gradient. Each output element is ONE float chain acc = acc + a*b over the taps in the
 * order documented in tt_fp16.h (taps outside the input skipped), rounded to half once.
 * bwd_x is a gather (each input cell walks the outputs that read it), so the chain order is
 * the documented one and no scatter of partial sums through half precision happens.
 */
#include <stddef.h>

#include "tt_fp16.h"

#define H2F(h) tt_f16_to_f32_inl(h)
#define F2H(f) tt_f32_to_f16_inl(f)

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

/* tap range [*lo, *hi) for output o: o*s - pad + t in [0, n_in) */
static void tap_range(int o, int s, int pad, int k, int n_in, int *lo, int *hi)
{
    const int start = o * s - pad;
    *lo = (start < 0) ? -start : 0;
    *hi = (start + k > n_in) ? n_in - start : k;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

tt_status tt_conv2d_fwd_f16(const tt_conv2d_params *p, const uint16_t *x, const uint16_t *w,
                            const uint16_t *b, uint16_t *TT_RESTRICT y)
{
    const tt_status st = conv_check(p);
    int oc, oh, ow, icg, kh, kw;
    if (st != TT_OK) {
        return st;
    }
    if (x == NULL || w == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    {
        const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
        const size_t in_hw = (size_t)p->in_h * (size_t)p->in_w;
        const size_t khw = (size_t)p->k_h * (size_t)p->k_w;
        for (oc = 0; oc < p->out_c; ++oc) {
            const uint16_t *xg = x + (size_t)(oc / cout_g) * (size_t)cin_g * in_hw;
            const uint16_t *wo = w + (size_t)oc * (size_t)cin_g * khw;
            const float init = (b != NULL) ? H2F(b[oc]) : 0.0f;
            for (oh = 0; oh < p->out_h; ++oh) {
                int kh0, kh1;
                const int ih0 = oh * p->stride_h - p->pad_top;
                tap_range(oh, p->stride_h, p->pad_top, p->k_h, p->in_h, &kh0, &kh1);
                for (ow = 0; ow < p->out_w; ++ow) {
                    int kw0, kw1;
                    const int iw0 = ow * p->stride_w - p->pad_left;
                    float acc = init;
                    tap_range(ow, p->stride_w, p->pad_left, p->k_w, p->in_w, &kw0, &kw1);
                    for (icg = 0; icg < cin_g; ++icg) {
                        const uint16_t *xc = xg + (size_t)icg * in_hw;
                        const uint16_t *wc = wo + (size_t)icg * khw;
                        for (kh = kh0; kh < kh1; ++kh) {
                            for (kw = kw0; kw < kw1; ++kw) {
                                const float pr =
                                    H2F(xc[(size_t)(ih0 + kh) * (size_t)p->in_w +
                                           (size_t)(iw0 + kw)]) *
                                    H2F(wc[(size_t)kh * (size_t)p->k_w + (size_t)kw]);
                                acc = acc + pr;
                            }
                        }
                    }
                    *y++ = F2H(acc);
                }
            }
        }
    }
    return TT_OK;
}

tt_status tt_conv2d_bwd_x_f16(const tt_conv2d_params *p, const uint16_t *gy, const uint16_t *w,
                              uint16_t *TT_RESTRICT gx, int accumulate)
{
    const tt_status st = conv_check(p);
    int ic, ih, iw, ocg, kh, kw;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || w == NULL || gx == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    {
        const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
        const size_t out_hw = (size_t)p->out_h * (size_t)p->out_w;
        const size_t khw = (size_t)p->k_h * (size_t)p->k_w;
        for (ic = 0; ic < p->in_c; ++ic) {
            const int g = ic / cin_g, icg = ic % cin_g;
            for (ih = 0; ih < p->in_h; ++ih) {
                for (iw = 0; iw < p->in_w; ++iw) {
                    uint16_t *dst = gx + ((size_t)ic * (size_t)p->in_h + (size_t)ih) *
                                             (size_t)p->in_w + (size_t)iw;
                    float acc = accumulate ? H2F(*dst) : 0.0f;
                    for (ocg = 0; ocg < cout_g; ++ocg) {
                        const int oc = g * cout_g + ocg;
                        const uint16_t *gyo = gy + (size_t)oc * out_hw;
                        const uint16_t *wk = w + ((size_t)oc * (size_t)cin_g + (size_t)icg) * khw;
                        for (kh = 0; kh < p->k_h; ++kh) {
                            const int th = ih + p->pad_top - kh;
                            int oh;
                            if (th < 0 || th % p->stride_h != 0) {
                                continue;
                            }
                            oh = th / p->stride_h;
                            if (oh >= p->out_h) {
                                continue;
                            }
                            for (kw = 0; kw < p->k_w; ++kw) {
                                const int tw = iw + p->pad_left - kw;
                                int ow;
                                float pr;
                                if (tw < 0 || tw % p->stride_w != 0) {
                                    continue;
                                }
                                ow = tw / p->stride_w;
                                if (ow >= p->out_w) {
                                    continue;
                                }
                                pr = H2F(gyo[(size_t)oh * (size_t)p->out_w + (size_t)ow]) *
                                     H2F(wk[(size_t)kh * (size_t)p->k_w + (size_t)kw]);
                                acc = acc + pr;
                            }
                        }
                    }
                    *dst = F2H(acc);
                }
            }
        }
    }
    return TT_OK;
}

tt_status tt_conv2d_bwd_w_f16(const tt_conv2d_params *p, const uint16_t *gy, const uint16_t *x,
                              uint16_t *TT_RESTRICT gw, int accumulate)
{
    const tt_status st = conv_check(p);
    int oc, icg, kh, kw, oh, ow;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || x == NULL || gw == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    {
        const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
        const size_t in_hw = (size_t)p->in_h * (size_t)p->in_w;
        const size_t out_hw = (size_t)p->out_h * (size_t)p->out_w;
        for (oc = 0; oc < p->out_c; ++oc) {
            const uint16_t *gyo = gy + (size_t)oc * out_hw;
            for (icg = 0; icg < cin_g; ++icg) {
                const uint16_t *xc = x + ((size_t)(oc / cout_g) * (size_t)cin_g + (size_t)icg) *
                                             in_hw;
                for (kh = 0; kh < p->k_h; ++kh) {
                    for (kw = 0; kw < p->k_w; ++kw) {
                        uint16_t *dst = gw + (((size_t)oc * (size_t)cin_g + (size_t)icg) *
                                                  (size_t)p->k_h + (size_t)kh) *
                                                 (size_t)p->k_w + (size_t)kw;
                        float acc = accumulate ? H2F(*dst) : 0.0f;
                        for (oh = 0; oh < p->out_h; ++oh) {
                            const int ih = oh * p->stride_h - p->pad_top + kh;
                            if (ih < 0 || ih >= p->in_h) {
                                continue;
                            }
                            for (ow = 0; ow < p->out_w; ++ow) {
                                const int iw = ow * p->stride_w - p->pad_left + kw;
                                float pr;
                                if (iw < 0 || iw >= p->in_w) {
                                    continue;
                                }
                                pr = H2F(gyo[(size_t)oh * (size_t)p->out_w + (size_t)ow]) *
                                     H2F(xc[(size_t)ih * (size_t)p->in_w + (size_t)iw]);
                                acc = acc + pr;
                            }
                        }
                        *dst = F2H(acc);
                    }
                }
            }
        }
    }
    return TT_OK;
}
