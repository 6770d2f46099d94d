/*
 * tt_pool_f16.c - FP16-storage max / average pooling (CHW) and global average pooling.
 * Geometry as tt_pool_f32.c; numerics in tt_fp16.h (float chains, one rounding per store).
 */
#include <stddef.h>

#include "tt_fp16.h"

#define H2F(h) tt_f16_to_f32_inl(h)
#define F2H(f) tt_f32_to_f16_inl(f)

static int imax(int a, int b)
{
    return a > b ? a : b;
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* offset of the first maximum of the clipped window; the first NaN wins */
static int window_argmax(const uint16_t *xc, int in_w, int h0, int h1, int w0, int w1)
{
    int best = h0 * in_w + w0, ih, iw;
    float m = H2F(xc[best]);
    if (m != m) {
        return best;
    }
    for (ih = h0; ih < h1; ++ih) {
        for (iw = w0; iw < w1; ++iw) {
            const float v = H2F(xc[ih * in_w + iw]);
            if (v != v) {
                return ih * in_w + iw;
            }
            if (v > m) {
                m = v;
                best = ih * in_w + iw;
            }
        }
    }
    return best;
}

tt_status tt_maxpool2d_fwd_f16(const tt_pool2d_params *p, const uint16_t *x,
                               uint16_t *TT_RESTRICT y)
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
        const uint16_t *xc = x + (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                *y++ = xc[window_argmax(xc, p->in_w, h0, h1, w0, w1)];
            }
        }
    }
    return TT_OK;
}

static void zero16(uint16_t *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        v[i] = 0U;
    }
}

tt_status tt_maxpool2d_bwd_x_f16(const tt_pool2d_params *p, const uint16_t *gy,
                                 const uint16_t *x, uint16_t *TT_RESTRICT gx, int accumulate)
{
    const tt_status st = tt_pool2d_check(p);
    int c, oh, ow;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || x == NULL || gx == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    if (!accumulate) {
        zero16(gx, (size_t)p->c * (size_t)(p->in_h * p->in_w));
    }
    for (c = 0; c < p->c; ++c) {
        const uint16_t *xc = x + (size_t)c * (size_t)(p->in_h * p->in_w);
        uint16_t *gc = gx + (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                const int a = window_argmax(xc, p->in_w, h0, h1, w0, w1);
                gc[a] = F2H(H2F(gc[a]) + H2F(*gy++));
            }
        }
    }
    return TT_OK;
}

tt_status tt_avgpool2d_fwd_f16(const tt_pool2d_params *p, const uint16_t *x,
                               uint16_t *TT_RESTRICT y)
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
        const uint16_t *xc = x + (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                const int d = p->count_include_pad ? p->k_h * p->k_w : (h1 - h0) * (w1 - w0);
                float s = 0.0f;
                for (ih = h0; ih < h1; ++ih) {
                    for (iw = w0; iw < w1; ++iw) {
                        s = s + H2F(xc[ih * p->in_w + iw]);
                    }
                }
                *y++ = F2H(s / (float)d);
            }
        }
    }
    return TT_OK;
}

tt_status tt_avgpool2d_bwd_x_f16(const tt_pool2d_params *p, const uint16_t *gy,
                                 uint16_t *TT_RESTRICT gx, int accumulate)
{
    const tt_status st = tt_pool2d_check(p);
    int c, oh, ow, ih, iw;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || gx == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    if (!accumulate) {
        zero16(gx, (size_t)p->c * (size_t)(p->in_h * p->in_w));
    }
    for (c = 0; c < p->c; ++c) {
        uint16_t *gc = gx + (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                const int d = p->count_include_pad ? p->k_h * p->k_w : (h1 - h0) * (w1 - w0);
                const float g = H2F(*gy++) / (float)d;
                for (ih = h0; ih < h1; ++ih) {
                    for (iw = w0; iw < w1; ++iw) {
                        uint16_t *cell = gc + ih * p->in_w + iw;
                        *cell = F2H(H2F(*cell) + g);
                    }
                }
            }
        }
    }
    return TT_OK;
}

tt_status tt_global_avgpool_fwd_f16(const uint16_t *x, uint16_t *TT_RESTRICT y, int c, int hw)
{
    int ch, t;
    if (c < 0 || hw <= 0 || (c > 0 && (x == NULL || y == NULL))) {
        return TT_ERR_ARG;
    }
    for (ch = 0; ch < c; ++ch) {
        const uint16_t *xc = x + (size_t)ch * (size_t)hw;
        float s = 0.0f;
        for (t = 0; t < hw; ++t) {
            s = s + H2F(xc[t]);
        }
        y[ch] = F2H(s / (float)hw);
    }
    return TT_OK;
}

tt_status tt_global_avgpool_bwd_x_f16(const uint16_t *gy, uint16_t *TT_RESTRICT gx, int c,
                                      int hw, int accumulate)
{
    int ch, t;
    if (c < 0 || hw <= 0 || (c > 0 && (gy == NULL || gx == NULL)) ||
        (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    for (ch = 0; ch < c; ++ch) {
        uint16_t *gc = gx + (size_t)ch * (size_t)hw;
        const float g = H2F(gy[ch]) / (float)hw;
        for (t = 0; t < hw; ++t) {
            gc[t] = F2H((accumulate ? H2F(gc[t]) : 0.0f) + g);
        }
    }
    return TT_OK;
}
