/*
 * tt_act_f32.c - pointwise activations and softmax, forward and backward.
 *
 * In place: every loop reads element i of its inputs before it writes element i of its
 * output and never looks at another index afterwards, so y == x / gx == gy is legal (the
 * pointers are deliberately not restrict-qualified). Softmax reads a whole row before it
 * writes that row.
 */
#include "tt_kernels.h"

#define TT_CHECK_UNARY(in0, in1, out, n, acc)                                         \
    do {                                                                              \
        if ((n) < 0 || ((acc) != 0 && (acc) != 1)) {                                  \
            return TT_ERR_ARG;                                                        \
        }                                                                             \
        if ((n) > 0 && ((in0) == NULL || (in1) == NULL || (out) == NULL)) {           \
            return TT_ERR_ARG;                                                        \
        }                                                                             \
    } while (0)

tt_status tt_relu_fwd_f32(const float *x, float *y, int n)
{
    int i;
    TT_CHECK_UNARY(x, x, y, n, 0);
    for (i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = (v < 0.0f) ? 0.0f : v; /* NaN passes through */
    }
    return TT_OK;
}

tt_status tt_relu_bwd_x_f32(const float *gy, const float *y, float *gx, int n, int accumulate)
{
    int i;
    TT_CHECK_UNARY(gy, y, gx, n, accumulate);
    if (accumulate) {
        for (i = 0; i < n; ++i) {
            if (y[i] > 0.0f) {
                gx[i] = gx[i] + gy[i];
            }
        }
    } else {
        for (i = 0; i < n; ++i) {
            gx[i] = (y[i] > 0.0f) ? gy[i] : 0.0f;
        }
    }
    return TT_OK;
}

tt_status tt_clip_fwd_f32(const float *x, float *y, int n, float lo, float hi)
{
    int i;
    TT_CHECK_UNARY(x, x, y, n, 0);
    if (!(lo <= hi)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = (v < lo) ? lo : ((v > hi) ? hi : v);
    }
    return TT_OK;
}

tt_status tt_clip_bwd_x_f32(const float *gy, const float *y, float *gx, int n, float lo, float hi,
                            int accumulate)
{
    int i;
    TT_CHECK_UNARY(gy, y, gx, n, accumulate);
    if (!(lo <= hi)) {
        return TT_ERR_ARG;
    }
    if (accumulate) {
        for (i = 0; i < n; ++i) {
            const float v = y[i];
            if (v > lo && v < hi) {
                gx[i] = gx[i] + gy[i];
            }
        }
    } else {
        for (i = 0; i < n; ++i) {
            const float v = y[i];
            gx[i] = (v > lo && v < hi) ? gy[i] : 0.0f;
        }
    }
    return TT_OK;
}

tt_status tt_leaky_relu_fwd_f32(const float *x, float *y, int n, float alpha)
{
    int i;
    TT_CHECK_UNARY(x, x, y, n, 0);
    for (i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = (v < 0.0f) ? alpha * v : v;
    }
    return TT_OK;
}

tt_status tt_leaky_relu_bwd_x_f32(const float *gy, const float *x, float *gx, int n, float alpha,
                                  int accumulate)
{
    int i;
    TT_CHECK_UNARY(gy, x, gx, n, accumulate);
    if (accumulate) {
        for (i = 0; i < n; ++i) {
            const float g = gy[i];
            gx[i] = (x[i] < 0.0f) ? TT_FMAF(alpha, g, gx[i]) : gx[i] + g;
        }
    } else {
        for (i = 0; i < n; ++i) {
            const float g = gy[i];
            gx[i] = (x[i] < 0.0f) ? alpha * g : g;
        }
    }
    return TT_OK;
}

tt_status tt_sigmoid_fwd_f32(const float *x, float *y, int n)
{
    int i;
    TT_CHECK_UNARY(x, x, y, n, 0);
    for (i = 0; i < n; ++i) {
        const float v = x[i];
        /* exp of a non-positive argument only: no overflow on either tail */
        const float e = tt_expf(v < 0.0f ? v : -v);
        const float d = 1.0f + e;
        y[i] = (v < 0.0f) ? e / d : 1.0f / d;
    }
    return TT_OK;
}

tt_status tt_sigmoid_bwd_x_f32(const float *gy, const float *y, float *gx, int n, int accumulate)
{
    int i;
    TT_CHECK_UNARY(gy, y, gx, n, accumulate);
    if (accumulate) {
        for (i = 0; i < n; ++i) {
            const float v = y[i];
            gx[i] = TT_FMAF(gy[i], (1.0f - v) * v, gx[i]);
        }
    } else {
        for (i = 0; i < n; ++i) {
            const float v = y[i];
            gx[i] = gy[i] * ((1.0f - v) * v);
        }
    }
    return TT_OK;
}

tt_status tt_tanh_fwd_f32(const float *x, float *y, int n)
{
    int i;
    TT_CHECK_UNARY(x, x, y, n, 0);
    for (i = 0; i < n; ++i) {
        const float v = x[i];
        const float a = (v < 0.0f) ? -v : v;
        /* tanh|x| = (1 - e^-2|x|) / (1 + e^-2|x|) = -u / (u + 2), u = expm1(-2|x|) in (-1, 0]:
         * no cancellation near 0, no overflow for large |x|. */
        const float u = tt_expm1f(-2.0f * a);
        const float t = -u / (u + 2.0f);
        y[i] = (v < 0.0f) ? -t : t;
    }
    return TT_OK;
}

tt_status tt_tanh_bwd_x_f32(const float *gy, const float *y, float *gx, int n, int accumulate)
{
    int i;
    TT_CHECK_UNARY(gy, y, gx, n, accumulate);
    if (accumulate) {
        for (i = 0; i < n; ++i) {
            const float v = y[i];
            gx[i] = TT_FMAF(gy[i], TT_FMAF(-v, v, 1.0f), gx[i]);
        }
    } else {
        for (i = 0; i < n; ++i) {
            const float v = y[i];
            gx[i] = gy[i] * TT_FMAF(-v, v, 1.0f);
        }
    }
    return TT_OK;
}

tt_status tt_softmax_fwd_f32(const float *x, float *y, int rows, int cols)
{
    int r, j;
    if (rows < 0 || cols < 0 || (rows > 0 && cols == 0)) {
        return TT_ERR_ARG;
    }
    if (rows > 0 && (x == NULL || y == NULL)) {
        return TT_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        const float *xr = x + (size_t)r * (size_t)cols;
        float *yr = y + (size_t)r * (size_t)cols;
        float m = xr[0], s = 0.0f;
        for (j = 1; j < cols; ++j) {
            if (xr[j] > m) {
                m = xr[j];
            }
        }
        for (j = 0; j < cols; ++j) {
            const float e = tt_expf(xr[j] - m);
            yr[j] = e;
            s = s + e;
        }
        for (j = 0; j < cols; ++j) {
            yr[j] = yr[j] / s;
        }
    }
    return TT_OK;
}

tt_status tt_softmax_bwd_x_f32(const float *gy, const float *y, float *gx, int rows, int cols,
                               int accumulate)
{
    int r, j;
    if (rows < 0 || cols < 0 || (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    if (rows > 0 && cols > 0 && (gy == NULL || y == NULL || gx == NULL)) {
        return TT_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        const size_t off = (size_t)r * (size_t)cols;
        const float *gr = gy + off;
        const float *yr = y + off;
        float *xr = gx + off;
        float d = 0.0f;
        for (j = 0; j < cols; ++j) {
            d = TT_FMAF(gr[j], yr[j], d);
        }
        if (accumulate) {
            for (j = 0; j < cols; ++j) {
                xr[j] = TT_FMAF(yr[j], gr[j] - d, xr[j]);
            }
        } else {
            for (j = 0; j < cols; ++j) {
                xr[j] = yr[j] * (gr[j] - d);
            }
        }
    }
    return TT_OK;
}
