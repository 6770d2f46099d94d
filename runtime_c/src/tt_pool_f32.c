/*
 * tt_pool_f32.c - max / average pooling over CHW, global average pooling.
 *
 * A window starts at (oh*stride_h - pad_top, ow*stride_w - pad_left); its rows and columns
 * are clipped to the input once per output (the clipped ranges are all the border handling
 * there is). Windows are visited in row-major order.
 */
#include "tt_kernels.h"
#include "tt_jvp.h"

static int imax(int a, int b)
{
    return a > b ? a : b;
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* Offset (within one channel plane) of the first maximum of the window, NaN counting as the
 * largest value (the first NaN wins), as torch's max_pool2d. */
static int window_argmax(const float *xc, int in_w, int h0, int h1, int w0, int w1)
{
    int best = h0 * in_w + w0;
    float m = xc[best];
    int ih, iw;
    if (m != m) {
        return best;
    }
    for (ih = h0; ih < h1; ++ih) {
        const float *row = xc + ih * in_w;
        for (iw = w0; iw < w1; ++iw) {
            const float v = row[iw];
            if (v > m || v != v) {
                best = ih * in_w + iw;
                if (v != v) {
                    return best;
                }
                m = v;
            }
        }
    }
    return best;
}

tt_status tt_maxpool2d_fwd_f32(const tt_pool2d_params *p, const float *x, float *TT_RESTRICT y)
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
        const float *xc = x + (size_t)c * (size_t)(p->in_h * p->in_w);
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

static void zero(float *TT_RESTRICT v, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        v[i] = 0.0f;
    }
}

tt_status tt_maxpool2d_bwd_x_f32(const tt_pool2d_params *p, const float *gy, const float *x,
                                 float *TT_RESTRICT gx, int accumulate)
{
    const tt_status st = tt_pool2d_check(p);
    const int in_hw = (p != NULL) ? p->in_h * p->in_w : 0;
    int c, oh, ow;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || x == NULL || gx == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    if (!accumulate) {
        zero(gx, (size_t)p->c * (size_t)in_hw);
    }
    for (c = 0; c < p->c; ++c) {
        const float *xc = x + (size_t)c * (size_t)in_hw;
        float *gc = gx + (size_t)c * (size_t)in_hw;
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                const int a = window_argmax(xc, p->in_w, h0, h1, w0, w1);
                gc[a] = gc[a] + *gy++;
            }
        }
    }
    return TT_OK;
}

tt_status tt_avgpool2d_fwd_f32(const tt_pool2d_params *p, const float *x, float *TT_RESTRICT y)
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
        const float *xc = x + (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                const int div = p->count_include_pad ? p->k_h * p->k_w : (h1 - h0) * (w1 - w0);
                float s = 0.0f;
                for (ih = h0; ih < h1; ++ih) {
                    const float *row = xc + ih * p->in_w;
                    for (iw = w0; iw < w1; ++iw) {
                        s = s + row[iw];
                    }
                }
                *y++ = s / (float)div;
            }
        }
    }
    return TT_OK;
}

tt_status tt_avgpool2d_bwd_x_f32(const tt_pool2d_params *p, const float *gy,
                                 float *TT_RESTRICT gx, int accumulate)
{
    const tt_status st = tt_pool2d_check(p);
    const int in_hw = (p != NULL) ? p->in_h * p->in_w : 0;
    int c, oh, ow, ih, iw;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || gx == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    if (!accumulate) {
        zero(gx, (size_t)p->c * (size_t)in_hw);
    }
    for (c = 0; c < p->c; ++c) {
        float *gc = gx + (size_t)c * (size_t)in_hw;
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                const int div = p->count_include_pad ? p->k_h * p->k_w : (h1 - h0) * (w1 - w0);
                const float g = *gy++ / (float)div;
                for (ih = h0; ih < h1; ++ih) {
                    float *row = gc + ih * p->in_w;
                    for (iw = w0; iw < w1; ++iw) {
                        row[iw] = row[iw] + g;
                    }
                }
            }
        }
    }
    return TT_OK;
}

tt_status tt_global_avgpool_fwd_f32(const float *x, float *TT_RESTRICT y, int c, int hw)
{
    const float div = (float)hw;
    int ch, i;
    if (c <= 0 || hw <= 0 || x == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    for (ch = 0; ch < c; ++ch) {
        float s = 0.0f;
        for (i = 0; i < hw; ++i) {
            s = s + *x++;
        }
        y[ch] = s / div;
    }
    return TT_OK;
}

tt_status tt_global_avgpool_bwd_x_f32(const float *gy, float *TT_RESTRICT gx, int c, int hw,
                                      int accumulate)
{
    const float div = (float)hw;
    int ch, i;
    if (c <= 0 || hw <= 0 || gy == NULL || gx == NULL || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    for (ch = 0; ch < c; ++ch) {
        const float g = gy[ch] / div;
        if (accumulate) {
            for (i = 0; i < hw; ++i) {
                gx[i] = gx[i] + g;
            }
        } else {
            for (i = 0; i < hw; ++i) {
                gx[i] = g;
            }
        }
        gx += hw;
    }
    return TT_OK;
}

/* Forward-mode tangent of max pooling: the tangent at the window's first maximum (the same
 * argmax rule as the forward and backward kernels above). Declared in tt_jvp.h. */
tt_status tt_maxpool2d_jvp_f32(const tt_pool2d_params *p, const float *x, const float *tx,
                               float *TT_RESTRICT ty)
{
    const tt_status st = tt_pool2d_check(p);
    int c, oh, ow;
    size_t in_hw;
    if (st != TT_OK) {
        return st;
    }
    if (x == NULL || tx == NULL || ty == NULL) {
        return TT_ERR_ARG;
    }
    in_hw = (size_t)p->in_h * (size_t)p->in_w;
    for (c = 0; c < p->c; ++c) {
        const float *xc = x + (size_t)c * in_hw;
        const float *tc = tx + (size_t)c * in_hw;
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                *ty++ = tc[window_argmax(xc, p->in_w, h0, h1, w0, w1)];
            }
        }
    }
    return TT_OK;
}
