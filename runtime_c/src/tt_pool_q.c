/*
 * tt_pool_q.c - fixed-point max / average pooling (CHW) and global average pooling.
 *
 * Instantiated twice (see tt_gemm_q.c): _q8 (int8, int32 accumulators) and _q16 (int16,
 * int64). Window geometry as tt_pool_f32.c: a window starts at (oh*stride_h - pad_top,
 * ow*stride_w - pad_left) and is clipped to the input once per output.
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qkernels.h"

static int imax(int a, int b)
{
    return a > b ? a : b;
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* round(s / d) ties away from zero, d > 0, as TFLite's average pool: C division truncates */
static int64_t div_round(int64_t s, int64_t d)
{
    return (s > 0) ? (s + d / 2) / d : (s - d / 2) / d;
}

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS

#define TQ int8_t
#define TACC int32_t
#define TQ_SUF _q8
#define TQ_MIN (-128)
#define TQ_MAX 127
#include "tt_pool_q.c"
#undef TQ
#undef TACC
#undef TQ_SUF
#undef TQ_MIN
#undef TQ_MAX

#define TQ int16_t
#define TACC int64_t
#define TQ_SUF _q16
#define TQ_MIN (-32768)
#define TQ_MAX 32767
#include "tt_pool_q.c"

#else /* ======================================================== template body */

/* offset of the first maximum of the clipped window (row-major) */
static int TT_Q(window_argmax)(const TQ *xc, int in_w, int h0, int h1, int w0, int w1)
{
    int best = h0 * in_w + w0, ih, iw;
    TQ m = xc[best];
    for (ih = h0; ih < h1; ++ih) {
        for (iw = w0; iw < w1; ++iw) {
            if (xc[ih * in_w + iw] > m) {
                m = xc[ih * in_w + iw];
                best = ih * in_w + iw;
            }
        }
    }
    return best;
}

tt_status TT_Q(tt_maxpool2d_fwd)(const tt_pool2d_params *p, const TQ *x, TQ *TT_RESTRICT y)
{
    const tt_status st = tt_pool2d_check(p);
    int c, oh, ow;
    if (st != TT_OK) {
        return st;
    }
    if (x == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    for (c = 0; c < p->c; ++c) {
        const TQ *xc = x + (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                *y++ = xc[TT_Q(window_argmax)(xc, p->in_w, h0, h1, w0, w1)];
            }
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_maxpool2d_bwd_x)(const tt_pool2d_params *p, const TQ *gy, const TQ *x,
                                   TQ *TT_RESTRICT gx, int accumulate, uint32_t *sat)
{
    const tt_status st = tt_pool2d_check(p);
    uint32_t dummy = 0;
    int c, oh, ow;
    size_t i;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || x == NULL || gx == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    if (sat == NULL) {
        sat = &dummy;
    }
    if (!accumulate) {
        for (i = 0; i < (size_t)p->c * (size_t)(p->in_h * p->in_w); ++i) {
            gx[i] = 0;
        }
    }
    for (c = 0; c < p->c; ++c) {
        const TQ *xc = x + (size_t)c * (size_t)(p->in_h * p->in_w);
        TQ *gc = gx + (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                const int a = TT_Q(window_argmax)(xc, p->in_w, h0, h1, w0, w1);
                gc[a] = (TQ)tt_clamp_count((int64_t)gc[a] + *gy++, TQ_MIN, TQ_MAX, sat);
            }
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_avgpool2d_fwd)(const tt_pool2d_params *p, const TQ *x, TQ *TT_RESTRICT y)
{
    const tt_status st = tt_pool2d_check(p);
    int c, oh, ow, ih, iw;
    if (st != TT_OK) {
        return st;
    }
    if (x == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    for (c = 0; c < p->c; ++c) {
        const TQ *xc = x + (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                const int d = p->count_include_pad ? p->k_h * p->k_w : (h1 - h0) * (w1 - w0);
                TACC s = 0;
                for (ih = h0; ih < h1; ++ih) {
                    for (iw = w0; iw < w1; ++iw) {
                        s += xc[ih * p->in_w + iw];
                    }
                }
                *y++ = (TQ)div_round(s, d);
            }
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_avgpool2d_bwd_x)(const tt_pool2d_params *p, const TQ *gy, TACC *TT_RESTRICT gx,
                                   int frac_bits, int accumulate)
{
    const tt_status st = tt_pool2d_check(p);
    int c, oh, ow, ih, iw;
    size_t i;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || gx == NULL || (accumulate != 0 && accumulate != 1) || frac_bits < 0 ||
        frac_bits > 16) {
        return TT_ERR_ARG;
    }
    if (!accumulate) {
        for (i = 0; i < (size_t)p->c * (size_t)(p->in_h * p->in_w); ++i) {
            gx[i] = 0;
        }
    }
    for (c = 0; c < p->c; ++c) {
        TACC *gc = gx + (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                const int d = p->count_include_pad ? p->k_h * p->k_w : (h1 - h0) * (w1 - w0);
                const TACC g = (TACC)div_round((int64_t)*gy++ * ((int64_t)1 << frac_bits), d);
                for (ih = h0; ih < h1; ++ih) {
                    for (iw = w0; iw < w1; ++iw) {
                        gc[ih * p->in_w + iw] += g;
                    }
                }
            }
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_global_avgpool_fwd)(const TQ *x, TQ *TT_RESTRICT y, int c, int hw)
{
    int ch, t;
    if (c < 0 || hw <= 0 || (c > 0 && (x == NULL || y == NULL))) {
        return TT_ERR_ARG;
    }
    for (ch = 0; ch < c; ++ch) {
        const TQ *xc = x + (size_t)ch * (size_t)hw;
        TACC s = 0;
        for (t = 0; t < hw; ++t) {
            s += xc[t];
        }
        y[ch] = (TQ)div_round(s, hw);
    }
    return TT_OK;
}

tt_status TT_Q(tt_global_avgpool_bwd_x)(const TQ *gy, TACC *TT_RESTRICT gx, int c, int hw,
                                        int frac_bits, int accumulate)
{
    int ch, t;
    if (c < 0 || hw <= 0 || (c > 0 && (gy == NULL || gx == NULL)) ||
        (accumulate != 0 && accumulate != 1) || frac_bits < 0 || frac_bits > 16) {
        return TT_ERR_ARG;
    }
    for (ch = 0; ch < c; ++ch) {
        TACC *gc = gx + (size_t)ch * (size_t)hw;
        const TACC g = (TACC)div_round((int64_t)gy[ch] * ((int64_t)1 << frac_bits), hw);
        for (t = 0; t < hw; ++t) {
            gc[t] = accumulate ? gc[t] + g : g;
        }
    }
    return TT_OK;
}

#endif /* TT_Q_TEMPLATE_PASS */
