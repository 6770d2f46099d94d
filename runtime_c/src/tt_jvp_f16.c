/*
 * tt_jvp_f16.c - forward-mode (JVP) kernels on half storage for forward-gradient training.
 * Specification in tt_fp16.h (section "forward mode"); numpy twins: fp16_kernels.py (*_jvp,
 * TangentGen).
 *
 * The other tangent rules need no kernel of their own: ReLU's Jacobian is diagonal, so
 * tt_relu_bwd_x_f16 with the tangent in the cotangent's place is its JVP (a bit copy or +0);
 * the linear ops (average pools, global average pool, Add of two tangents, Reshape) run their
 * forward kernels on the tangents. What is here: the parameter-tangent generator, the bilinear
 * layers (whose weight tangents are drawn while they are used), MaxPool's gather, Add with one
 * frozen operand and the loss tangent.
 */
#include <stddef.h>

#include "tt_fp16.h"

#define H2F(h) tt_f16_to_f32_inl(h)
#define F2H(f) tt_f32_to_f16_inl(f)

/* float(1 / sqrt(21845)): the same constant tt_zo_f16.c / tt_zo_f32.c scale gaussian draws by */
#define TT_TAN_GAUSS_SCALE 0.00676587503f

tt_status tt_tangent_init_f16(tt_tangent_f16 *g, uint64_t seed, uint64_t stream, uint32_t skip,
                              int dist)
{
    if (g == NULL || (dist != TT_ZO_RADEMACHER && dist != TT_ZO_GAUSS)) {
        return TT_ERR_ARG;
    }
    tt_prng_seed(&g->st, seed, stream);
    tt_prng_advance(&g->st, (uint64_t)skip);
    g->word = 0U;
    g->bits = 0;
    g->dist = dist;
    return TT_OK;
}

static float next_value(tt_tangent_f16 *g)
{
    if (g->dist == TT_ZO_RADEMACHER) {
        float v;
        if (g->bits == 0) {
            g->word = tt_prng_u32(&g->st);
            g->bits = 32;
        }
        v = (g->word & 1U) ? -1.0f : 1.0f;
        g->word >>= 1;
        g->bits--;
        return v;
    } else {
        const uint32_t u = tt_prng_u32(&g->st);
        const int s = (int)(u & 0xFFU) + (int)((u >> 8) & 0xFFU) + (int)((u >> 16) & 0xFFU) +
                      (int)(u >> 24);
        return (float)(s - 510) * TT_TAN_GAUSS_SCALE;
    }
}

tt_status tt_tangent_fill_f16(tt_tangent_f16 *g, uint16_t *v, int n)
{
    int i;
    if (g == NULL || n < 0 || (n > 0 && v == NULL)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        v[i] = F2H(next_value(g));
    }
    return TT_OK;
}

/* acc + x * v, the chain step of a drawn weight tangent (x * (+-1) is exact, so the
   rademacher case is the same bits as the product) */
static float add_xv(float acc, float x, float v)
{
    const float p = x * v;
    return acc + p;
}

tt_status tt_gemm_jvp_f16(const uint16_t *x, const uint16_t *tx, const uint16_t *w,
                          uint16_t *TT_RESTRICT ty, int n, int k, int m, tt_tangent_f16 *vw,
                          tt_tangent_f16 *vb)
{
    int i, j, kk;
    if (ty == NULL || (tx != NULL && w == NULL) || (vw != NULL && x == NULL) ||
        (tx == NULL && vw == NULL && vb == NULL)) {
        return TT_ERR_ARG;
    }
    if (n <= 0 || k <= 0 || m <= 0) {
        return TT_ERR_SHAPE;
    }
    for (j = 0; j < m; ++j) {
        const uint16_t *wj = (tx != NULL) ? w + (size_t)j * (size_t)k : NULL;
        /* v[j][*] starts here for every row: rows re-draw it from a copy (batch 1, what the
           generated code runs, draws it once) */
        tt_tangent_f16 row_start = {{0U, 0U}, 0U, 0, 0}, g;
        const float vbj = (vb != NULL) ? next_value(vb) : 0.0f;
        if (vw != NULL) {
            row_start = *vw;
        }
        g = row_start;
        for (i = 0; i < n; ++i) {
            float acc = 0.0f;
            if (tx != NULL) {
                const uint16_t *txi = tx + (size_t)i * (size_t)k;
                for (kk = 0; kk < k; ++kk) {
                    const float p = H2F(txi[kk]) * H2F(wj[kk]);
                    acc = acc + p;
                }
            }
            if (vw != NULL) {
                const uint16_t *xi = x + (size_t)i * (size_t)k;
                g = row_start;
                for (kk = 0; kk < k; ++kk) {
                    acc = add_xv(acc, H2F(xi[kk]), next_value(&g));
                }
            }
            if (vb != NULL) {
                acc = acc + vbj;
            }
            ty[(size_t)i * (size_t)m + (size_t)j] = F2H(acc);
        }
        if (vw != NULL) {
            *vw = g; /* past v[j][*] */
        }
    }
    return TT_OK;
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

/* tap range [*lo, *hi) for output o: o*s - pad + t in [0, n_in) (as tt_conv_f16.c) */
static void tap_range(int o, int s, int pad, int k, int n_in, int *lo, int *hi)
{
    const int start = o * s - pad;
    *lo = (start < 0) ? -start : 0;
    *hi = (start + k > n_in) ? n_in - start : k;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

tt_status tt_conv2d_jvp_f16(const tt_conv2d_params *p, const uint16_t *x, const uint16_t *tx,
                            const uint16_t *w, uint16_t *TT_RESTRICT ty, tt_tangent_f16 *vw,
                            tt_tangent_f16 *vb)
{
    const tt_status st = conv_check(p);
    float cache[TT_JVP_F16_VCACHE > 0 ? TT_JVP_F16_VCACHE : 1];
    int oc, oh, ow, icg, kh, kw;
    if (st != TT_OK) {
        return st;
    }
    if (ty == NULL || (tx != NULL && w == NULL) || (vw != NULL && x == NULL) ||
        (tx == NULL && vw == NULL && vb == NULL)) {
        return TT_ERR_ARG;
    }
    {
        const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
        const size_t in_hw = (size_t)p->in_h * (size_t)p->in_w;
        const size_t khw = (size_t)p->k_h * (size_t)p->k_w;
        const size_t slice = (size_t)cin_g * khw; /* weights (and tangents) of one channel */
        const size_t cached = slice < (size_t)TT_JVP_F16_VCACHE ? slice
                                                                : (size_t)TT_JVP_F16_VCACHE;
        for (oc = 0; oc < p->out_c; ++oc) {
            const size_t g0 = (size_t)(oc / cout_g) * (size_t)cin_g;
            const uint16_t *wo = (tx != NULL) ? w + (size_t)oc * slice : NULL;
            const float vbo = (vb != NULL) ? next_value(vb) : 0.0f;
            tt_tangent_f16 rest = {{0U, 0U}, 0U, 0, 0}, g = rest;
            size_t t;
            if (vw != NULL) {
                for (t = 0; t < cached; ++t) {
                    cache[t] = next_value(vw);
                }
                rest = *vw; /* the values past the cache, re-drawn per output position */
                g = rest;
            }
            for (oh = 0; oh < p->out_h; ++oh) {
                int kh0, kh1;
                const int ih0 = oh * p->stride_h - p->pad_top;
                tap_range(oh, p->stride_h, p->pad_top, p->k_h, p->in_h, &kh0, &kh1);
                for (ow = 0; ow < p->out_w; ++ow) {
                    int kw0, kw1;
                    const int iw0 = ow * p->stride_w - p->pad_left;
                    float acc = 0.0f;
                    tap_range(ow, p->stride_w, p->pad_left, p->k_w, p->in_w, &kw0, &kw1);
                    if (tx != NULL) {
                        for (icg = 0; icg < cin_g; ++icg) {
                            const uint16_t *xc = tx + (g0 + (size_t)icg) * in_hw;
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
                    }
                    if (vw != NULL) {
                        size_t idx = 0;
                        g = rest;
                        for (icg = 0; icg < cin_g; ++icg) {
                            const uint16_t *xc = x + (g0 + (size_t)icg) * in_hw;
                            for (kh = 0; kh < p->k_h; ++kh) {
                                for (kw = 0; kw < p->k_w; ++kw, ++idx) {
                                    const float v = idx < cached ? cache[idx] : next_value(&g);
                                    if (kh >= kh0 && kh < kh1 && kw >= kw0 && kw < kw1) {
                                        acc = add_xv(acc,
                                                     H2F(xc[(size_t)(ih0 + kh) * (size_t)p->in_w +
                                                            (size_t)(iw0 + kw)]),
                                                     v);
                                    }
                                }
                            }
                        }
                    }
                    if (vb != NULL) {
                        acc = acc + vbo;
                    }
                    *ty++ = F2H(acc);
                }
            }
            if (vw != NULL) {
                *vw = g; /* past this channel's tangents (the last position drew them all) */
            }
        }
    }
    return TT_OK;
}

static int imax(int a, int b)
{
    return a > b ? a : b;
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* offset of the first maximum of the clipped window, the first NaN winning: the same rule as
   tt_pool_f16.c, so the tangent follows the value the forward pass selected */
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

tt_status tt_maxpool2d_jvp_f16(const tt_pool2d_params *p, const uint16_t *x, const uint16_t *tx,
                               uint16_t *TT_RESTRICT ty)
{
    const tt_status st = tt_pool2d_check(p);
    int c, oh, ow;
    if (st != TT_OK) {
        return st;
    }
    if (x == NULL || tx == NULL || ty == NULL) {
        return TT_ERR_ARG;
    }
    for (c = 0; c < p->c; ++c) {
        const size_t off = (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                *ty++ = tx[off + (size_t)window_argmax(x + off, p->in_w, h0, h1, w0, w1)];
            }
        }
    }
    return TT_OK;
}

tt_status tt_add_jvp_f16(const tt_bcast4 *p, const uint16_t *ta, const uint16_t *tb, uint16_t *ty)
{
    const uint16_t *src;
    const int *s;
    int d, i0, i1, i2, i3;
    if (p == NULL || ty == NULL || (ta == NULL && tb == NULL)) {
        return TT_ERR_ARG;
    }
    if (ta != NULL && tb != NULL) {
        return tt_add_fwd_f16(p, ta, tb, ty);
    }
    for (d = 0; d < 4; ++d) {
        if (p->shape[d] <= 0 || p->a_stride[d] < 0 || p->b_stride[d] < 0) {
            return TT_ERR_SHAPE;
        }
    }
    src = (ta != NULL) ? ta : tb;
    s = (ta != NULL) ? p->a_stride : p->b_stride;
    if (src == ty) {
        return TT_OK; /* a non-broadcast operand already in place (the planner's in-place) */
    }
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                const size_t o = (size_t)i0 * (size_t)s[0] + (size_t)i1 * (size_t)s[1] +
                                 (size_t)i2 * (size_t)s[2];
                for (i3 = 0; i3 < p->shape[3]; ++i3) {
                    *ty++ = src[o + (size_t)i3 * (size_t)s[3]];
                }
            }
        }
    }
    return TT_OK;
}

tt_status tt_softmax_xent_jvp_f16(const uint16_t *logits, const int32_t *labels, int rows,
                                  int cols, const uint16_t *tlogits, float *dl)
{
    float acc = 0.0f, f;
    int r, j;
    if (rows <= 0 || cols <= 0 || logits == NULL || labels == NULL || tlogits == NULL ||
        dl == NULL) {
        return TT_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        if (labels[r] < 0 || labels[r] >= cols) {
            return TT_ERR_ARG;
        }
    }
    f = 1.0f / (float)rows;
    for (r = 0; r < rows; ++r) {
        const uint16_t *x = logits + (size_t)r * (size_t)cols;
        const uint16_t *t = tlogits + (size_t)r * (size_t)cols;
        const int label = (int)labels[r];
        float m = H2F(x[0]), s = 0.0f, q = 0.0f;
        for (j = 1; j < cols; ++j) {
            const float v = H2F(x[j]);
            m = (v > m) ? v : m;
        }
        for (j = 0; j < cols; ++j) {
            const float e = tt_expf_plain(H2F(x[j]) - m);
            s = s + e;
            if (j != label) {
                q = q + e;
            }
        }
        for (j = 0; j < cols; ++j) {
            float gj, p;
            if (j != label) {
                gj = (tt_expf_plain(H2F(x[j]) - m) / s) * f;
            } else {
                gj = -(q / s) * f;
            }
            p = gj * H2F(t[j]);
            acc = acc + p;
        }
    }
    *dl = acc;
    return (acc - acc == 0.0f) ? TT_OK : TT_ERR_NAN;
}
