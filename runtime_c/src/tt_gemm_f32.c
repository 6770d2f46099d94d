/*
 * tt_gemm_f32.c - fully connected layer: forward, input gradient, weight gradient, and the
 * bias gradient shared with convolutions.
 *
 * Blocking (never changes a result, see tt_kernels.h): every output element is one fmaf
 * chain in a fixed order; we compute 4 or 8 independent chains at a time so that loads are
 * shared between them and the in-order core always has independent work.
 *   fwd   (GEMV per row of x): 4 outputs share each x load; k unrolled by 4.
 *   bwd_x: 16 input gradients share each gy load; their weights are contiguous in w[j][.].
 *   bwd_w: a rank-1 update per row of gy (n = 1 in the generated code): 4 rows of gw share
 *          each x load; k unrolled by 4.
 */
#include "tt_kernels.h"

static int bad_flag(int f)
{
    return f != 0 && f != 1;
}

/* y[j0..j0+3] of one row: 4 chains over kk ascending. */
static void gemv4(const float *TT_RESTRICT xp, const float *TT_RESTRICT w0, int k,
                  const float *b, float *TT_RESTRICT y)
{
    const float *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int t;
    if (b != NULL) {
        a0 = b[0];
        a1 = b[1];
        a2 = b[2];
        a3 = b[3];
    }
    for (t = k >> 2; t > 0; --t) {
        const float x0 = xp[0], x1 = xp[1], x2 = xp[2], x3 = xp[3];
        a0 = TT_FMAF(x0, w0[0], a0);
        a1 = TT_FMAF(x0, w1[0], a1);
        a2 = TT_FMAF(x0, w2[0], a2);
        a3 = TT_FMAF(x0, w3[0], a3);
        a0 = TT_FMAF(x1, w0[1], a0);
        a1 = TT_FMAF(x1, w1[1], a1);
        a2 = TT_FMAF(x1, w2[1], a2);
        a3 = TT_FMAF(x1, w3[1], a3);
        a0 = TT_FMAF(x2, w0[2], a0);
        a1 = TT_FMAF(x2, w1[2], a1);
        a2 = TT_FMAF(x2, w2[2], a2);
        a3 = TT_FMAF(x2, w3[2], a3);
        a0 = TT_FMAF(x3, w0[3], a0);
        a1 = TT_FMAF(x3, w1[3], a1);
        a2 = TT_FMAF(x3, w2[3], a2);
        a3 = TT_FMAF(x3, w3[3], a3);
        xp += 4;
        w0 += 4;
        w1 += 4;
        w2 += 4;
        w3 += 4;
    }
    for (t = k & 3; t > 0; --t) {
        const float x0 = *xp++;
        a0 = TT_FMAF(x0, *w0++, a0);
        a1 = TT_FMAF(x0, *w1++, a1);
        a2 = TT_FMAF(x0, *w2++, a2);
        a3 = TT_FMAF(x0, *w3++, a3);
    }
    y[0] = a0;
    y[1] = a1;
    y[2] = a2;
    y[3] = a3;
}

static float dot1(const float *TT_RESTRICT xp, const float *TT_RESTRICT wp, int k, float acc)
{
    int t;
    for (t = k >> 1; t > 0; --t) {
        acc = TT_FMAF(xp[0], wp[0], acc);
        acc = TT_FMAF(xp[1], wp[1], acc);
        xp += 2;
        wp += 2;
    }
    if (k & 1) {
        acc = TT_FMAF(*xp, *wp, acc);
    }
    return acc;
}

tt_status tt_gemm_fwd_f32(const float *x, const float *w, const float *b, float *TT_RESTRICT y,
                          int n, int k, int m)
{
    int i, j;
    if (x == NULL || w == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    if (n <= 0 || k <= 0 || m <= 0) {
        return TT_ERR_SHAPE;
    }
    for (i = 0; i < n; ++i) {
        const float *xi = x + (size_t)i * (size_t)k;
        float *yi = y + (size_t)i * (size_t)m;
        for (j = 0; j + 4 <= m; j += 4) {
            gemv4(xi, w + (size_t)j * (size_t)k, k, (b != NULL) ? b + j : NULL, yi + j);
        }
        for (; j < m; ++j) {
            yi[j] = dot1(xi, w + (size_t)j * (size_t)k, k, (b != NULL) ? b[j] : 0.0f);
        }
    }
    return TT_OK;
}

/* Eight fmaf steps g * p[0..7] into eight named accumulators (one step of eight chains). */
#define TT_ROW8_(g, p, A0, A1, A2, A3, A4, A5, A6, A7)                                          \
    do {                                                                                        \
        A0 = TT_FMAF(g, (p)[0], A0);                                                               \
        A1 = TT_FMAF(g, (p)[1], A1);                                                               \
        A2 = TT_FMAF(g, (p)[2], A2);                                                               \
        A3 = TT_FMAF(g, (p)[3], A3);                                                               \
        A4 = TT_FMAF(g, (p)[4], A4);                                                               \
        A5 = TT_FMAF(g, (p)[5], A5);                                                               \
        A6 = TT_FMAF(g, (p)[6], A6);                                                               \
        A7 = TT_FMAF(g, (p)[7], A7);                                                               \
    } while (0)

/* gx[kk..kk+15] of one row: 16 chains over j ascending (w[j][kk..kk+15] is contiguous),
 * two rows of w per iteration. */
static void bwdx16(const float *TT_RESTRICT g, const float *TT_RESTRICT wp, int k, int m,
                   float *TT_RESTRICT gx, int accumulate)
{
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, a4 = 0.0f, a5 = 0.0f, a6 = 0.0f, a7 = 0.0f;
    float a8 = 0.0f, a9 = 0.0f, a10 = 0.0f, a11 = 0.0f, a12 = 0.0f, a13 = 0.0f, a14 = 0.0f,
          a15 = 0.0f;
    const float *wq = wp + k;
    const int k2 = 2 * k;
    int t;
    if (accumulate) {
        a0 = gx[0], a1 = gx[1], a2 = gx[2], a3 = gx[3], a4 = gx[4], a5 = gx[5], a6 = gx[6];
        a7 = gx[7], a8 = gx[8], a9 = gx[9], a10 = gx[10], a11 = gx[11], a12 = gx[12];
        a13 = gx[13], a14 = gx[14], a15 = gx[15];
    }
    for (t = m >> 1; t > 0; --t) {
        const float g0 = g[0], g1 = g[1];
        TT_ROW8_(g0, wp, a0, a1, a2, a3, a4, a5, a6, a7);
        TT_ROW8_(g0, wp + 8, a8, a9, a10, a11, a12, a13, a14, a15);
        TT_ROW8_(g1, wq, a0, a1, a2, a3, a4, a5, a6, a7);
        TT_ROW8_(g1, wq + 8, a8, a9, a10, a11, a12, a13, a14, a15);
        g += 2;
        wp += k2;
        wq += k2;
    }
    if (m & 1) {
        const float g0 = g[0];
        TT_ROW8_(g0, wp, a0, a1, a2, a3, a4, a5, a6, a7);
        TT_ROW8_(g0, wp + 8, a8, a9, a10, a11, a12, a13, a14, a15);
    }
    gx[0] = a0, gx[1] = a1, gx[2] = a2, gx[3] = a3, gx[4] = a4, gx[5] = a5, gx[6] = a6;
    gx[7] = a7, gx[8] = a8, gx[9] = a9, gx[10] = a10, gx[11] = a11, gx[12] = a12;
    gx[13] = a13, gx[14] = a14, gx[15] = a15;
}

/* gx[kk..kk+7]: 8 chains over j ascending. */
static void bwdx8(const float *TT_RESTRICT g, const float *TT_RESTRICT wp, int k, int m,
                  float *TT_RESTRICT gx, int accumulate)
{
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, a4 = 0.0f, a5 = 0.0f, a6 = 0.0f, a7 = 0.0f;
    int t;
    if (accumulate) {
        a0 = gx[0], a1 = gx[1], a2 = gx[2], a3 = gx[3], a4 = gx[4], a5 = gx[5], a6 = gx[6];
        a7 = gx[7];
    }
    for (t = m; t > 0; --t) {
        const float g0 = *g++;
        TT_ROW8_(g0, wp, a0, a1, a2, a3, a4, a5, a6, a7);
        wp += k;
    }
    gx[0] = a0, gx[1] = a1, gx[2] = a2, gx[3] = a3, gx[4] = a4, gx[5] = a5, gx[6] = a6;
    gx[7] = a7;
}

static void bwdx4(const float *TT_RESTRICT g, const float *TT_RESTRICT wp, int k, int m,
                  float *TT_RESTRICT gx, int accumulate)
{
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int t;
    if (accumulate) {
        a0 = gx[0];
        a1 = gx[1];
        a2 = gx[2];
        a3 = gx[3];
    }
    for (t = m; t > 0; --t) {
        const float g0 = *g++;
        a0 = TT_FMAF(g0, wp[0], a0);
        a1 = TT_FMAF(g0, wp[1], a1);
        a2 = TT_FMAF(g0, wp[2], a2);
        a3 = TT_FMAF(g0, wp[3], a3);
        wp += k;
    }
    gx[0] = a0;
    gx[1] = a1;
    gx[2] = a2;
    gx[3] = a3;
}

tt_status tt_gemm_bwd_x_f32(const float *gy, const float *w, float *TT_RESTRICT gx, int n, int k,
                            int m, int accumulate)
{
    int i, kk;
    if (gy == NULL || w == NULL || gx == NULL || bad_flag(accumulate)) {
        return TT_ERR_ARG;
    }
    if (n <= 0 || k <= 0 || m <= 0) {
        return TT_ERR_SHAPE;
    }
    for (i = 0; i < n; ++i) {
        const float *g = gy + (size_t)i * (size_t)m;
        float *gxi = gx + (size_t)i * (size_t)k;
        for (kk = 0; kk + 16 <= k; kk += 16) {
            bwdx16(g, w + kk, k, m, gxi + kk, accumulate);
        }
        if (kk + 8 <= k) {
            bwdx8(g, w + kk, k, m, gxi + kk, accumulate);
            kk += 8;
        }
        if (kk + 4 <= k) {
            bwdx4(g, w + kk, k, m, gxi + kk, accumulate);
            kk += 4;
        }
        for (; kk < k; ++kk) {
            const float *wp = w + kk;
            float a = accumulate ? gxi[kk] : 0.0f;
            int j;
            for (j = 0; j < m; ++j) {
                a = TT_FMAF(g[j], *wp, a);
                wp += k;
            }
            gxi[kk] = a;
        }
    }
    return TT_OK;
}

/* gw[j0..j0+3][.] (+)= gy[j0..j0+3] * x[.] : one step of each chain. */
static void rank1_4(const float *TT_RESTRICT g, const float *TT_RESTRICT xp, float *TT_RESTRICT w0,
                    int k, int add)
{
    float *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    const float g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3];
    int t;
    if (add) {
        for (t = k >> 2; t > 0; --t) {
            const float x0 = xp[0], x1 = xp[1], x2 = xp[2], x3 = xp[3];
            w0[0] = TT_FMAF(g0, x0, w0[0]);
            w0[1] = TT_FMAF(g0, x1, w0[1]);
            w0[2] = TT_FMAF(g0, x2, w0[2]);
            w0[3] = TT_FMAF(g0, x3, w0[3]);
            w1[0] = TT_FMAF(g1, x0, w1[0]);
            w1[1] = TT_FMAF(g1, x1, w1[1]);
            w1[2] = TT_FMAF(g1, x2, w1[2]);
            w1[3] = TT_FMAF(g1, x3, w1[3]);
            w2[0] = TT_FMAF(g2, x0, w2[0]);
            w2[1] = TT_FMAF(g2, x1, w2[1]);
            w2[2] = TT_FMAF(g2, x2, w2[2]);
            w2[3] = TT_FMAF(g2, x3, w2[3]);
            w3[0] = TT_FMAF(g3, x0, w3[0]);
            w3[1] = TT_FMAF(g3, x1, w3[1]);
            w3[2] = TT_FMAF(g3, x2, w3[2]);
            w3[3] = TT_FMAF(g3, x3, w3[3]);
            xp += 4;
            w0 += 4;
            w1 += 4;
            w2 += 4;
            w3 += 4;
        }
        for (t = k & 3; t > 0; --t) {
            const float x0 = *xp++;
            *w0 = TT_FMAF(g0, x0, *w0);
            *w1 = TT_FMAF(g1, x0, *w1);
            *w2 = TT_FMAF(g2, x0, *w2);
            *w3 = TT_FMAF(g3, x0, *w3);
            ++w0;
            ++w1;
            ++w2;
            ++w3;
        }
    } else {
        for (t = k >> 2; t > 0; --t) {
            const float x0 = xp[0], x1 = xp[1], x2 = xp[2], x3 = xp[3];
            w0[0] = g0 * x0;
            w0[1] = g0 * x1;
            w0[2] = g0 * x2;
            w0[3] = g0 * x3;
            w1[0] = g1 * x0;
            w1[1] = g1 * x1;
            w1[2] = g1 * x2;
            w1[3] = g1 * x3;
            w2[0] = g2 * x0;
            w2[1] = g2 * x1;
            w2[2] = g2 * x2;
            w2[3] = g2 * x3;
            w3[0] = g3 * x0;
            w3[1] = g3 * x1;
            w3[2] = g3 * x2;
            w3[3] = g3 * x3;
            xp += 4;
            w0 += 4;
            w1 += 4;
            w2 += 4;
            w3 += 4;
        }
        for (t = k & 3; t > 0; --t) {
            const float x0 = *xp++;
            *w0++ = g0 * x0;
            *w1++ = g1 * x0;
            *w2++ = g2 * x0;
            *w3++ = g3 * x0;
        }
    }
}

tt_status tt_gemm_bwd_w_f32(const float *gy, const float *x, float *TT_RESTRICT gw, int n, int k,
                            int m, int accumulate)
{
    int i, j, kk;
    if (gy == NULL || x == NULL || gw == NULL || bad_flag(accumulate)) {
        return TT_ERR_ARG;
    }
    if (n <= 0 || k <= 0 || m <= 0) {
        return TT_ERR_SHAPE;
    }
    for (i = 0; i < n; ++i) {
        const float *g = gy + (size_t)i * (size_t)m;
        const float *xi = x + (size_t)i * (size_t)k;
        const int add = accumulate || i > 0;
        for (j = 0; j + 4 <= m; j += 4) {
            rank1_4(g + j, xi, gw + (size_t)j * (size_t)k, k, add);
        }
        for (; j < m; ++j) {
            float *wr = gw + (size_t)j * (size_t)k;
            const float gj = g[j];
            if (add) {
                for (kk = 0; kk < k; ++kk) {
                    wr[kk] = TT_FMAF(gj, xi[kk], wr[kk]);
                }
            } else {
                for (kk = 0; kk < k; ++kk) {
                    wr[kk] = gj * xi[kk];
                }
            }
        }
    }
    return TT_OK;
}

tt_status tt_bias_bwd_f32(const float *gy, float *TT_RESTRICT gb, int outer, int c, int inner,
                          int accumulate)
{
    const size_t ostride = (size_t)c * (size_t)inner;
    int ch, o, t;
    if (gy == NULL || gb == NULL || bad_flag(accumulate)) {
        return TT_ERR_ARG;
    }
    if (outer <= 0 || c <= 0 || inner <= 0) {
        return TT_ERR_SHAPE;
    }
    for (ch = 0; ch < c; ++ch) {
        float a = accumulate ? gb[ch] : 0.0f;
        const float *g = gy + (size_t)ch * (size_t)inner;
        for (o = 0; o < outer; ++o) {
            for (t = 0; t < inner; ++t) {
                a = a + g[t];
            }
            g += ostride;
        }
        gb[ch] = a;
    }
    return TT_OK;
}
