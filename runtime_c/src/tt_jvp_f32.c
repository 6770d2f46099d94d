/*
 * tt_jvp_f32.c - forward-mode (JVP) kernels for forward-gradient training (see tt_jvp.h).
 *
 * The elementwise tangents (ReLU, Clip, LeakyReLU, Sigmoid, Tanh, Softmax) need no kernel of
 * their own: their Jacobians are symmetric, so the VJP kernels with the tangent in place of
 * the cotangent compute them; linear ops (average pools, Reshape) run their forward kernels on
 * the tangent. What is here: the bilinear layers (whose weight tangents are drawn while they
 * are used), MaxPool's gather, broadcasting Add / Mul with an absent operand tangent, a dot.
 */
#include <stddef.h>

#include "tt_jvp.h"

/* float(1 / sqrt(21845)): the same constant tt_zo_axpy_f32 scales its Gaussian draws by */
#define TT_TAN_GAUSS_SCALE 0.00676587503f

tt_status tt_tangent_init(tt_tangent *g, uint64_t seed, uint64_t stream, uint32_t skip, int dist)
{
    if (g == NULL || (dist != TT_ZO_RADEMACHER && dist != TT_ZO_GAUSS)) {
        return TT_ERR_ARG;
    }
    tt_prng_seed(&g->st, seed, stream);
    tt_prng_advance(&g->st, (uint64_t)skip);
    g->word = 0u;
    g->bits = 0;
    g->dist = dist;
    return TT_OK;
}

/* Rademacher: +1 (return 0) or -1 (return 1), the next bit of the current draw. */
static uint32_t next_sign(tt_tangent *g)
{
    uint32_t s;
    if (g->bits == 0) {
        g->word = tt_prng_u32(&g->st);
        g->bits = 32;
    }
    s = g->word & 1u;
    g->word >>= 1;
    g->bits--;
    return s;
}

static float next_gauss(tt_tangent *g)
{
    const uint32_t u = tt_prng_u32(&g->st);
    const int s = (int)(u & 0xFFU) + (int)((u >> 8) & 0xFFU) + (int)((u >> 16) & 0xFFU) +
                  (int)(u >> 24);
    return (float)(s - 510) * TT_TAN_GAUSS_SCALE;
}

static float next_value(tt_tangent *g)
{
    if (g->dist == TT_ZO_RADEMACHER) {
        return next_sign(g) ? -1.0f : 1.0f;
    }
    return next_gauss(g);
}

tt_status tt_tangent_fill_f32(tt_tangent *g, float *v, int n)
{
    int i;
    if (g == NULL || v == NULL || n < 0) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        v[i] = next_value(g);
    }
    return TT_OK;
}

/* y[i*ys] += v * x[i*xs] for i < n: one term of each output's chain. A Rademacher v is +-1,
 * and fmaf(x, +-1, y) rounds exactly like y + x / y - x, so no multiply is spent on it. */
static void axpy_value(float *y, int ys, const float *x, int xs, int n, float v, int dist)
{
    int i;
    if (dist == TT_ZO_RADEMACHER) {
        if (v < 0.0f) {
            for (i = 0; i < n; ++i) {
                y[i * ys] = y[i * ys] - x[i * xs];
            }
        } else {
            for (i = 0; i < n; ++i) {
                y[i * ys] = y[i * ys] + x[i * xs];
            }
        }
    } else {
        for (i = 0; i < n; ++i) {
            y[i * ys] = TT_FMAF(x[i * xs], v, y[i * ys]);
        }
    }
}

static void zero(float *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        v[i] = 0.0f;
    }
}

tt_status tt_gemm_jvp_f32(const float *x, const float *tx, const float *w, float *TT_RESTRICT ty,
                          int n, int k, int m, tt_tangent *vw, tt_tangent *vb)
{
    int j, kk;
    if (ty == NULL || (tx != NULL && w == NULL) || (vw != NULL && x == NULL) ||
        (tx == NULL && vw == NULL && vb == NULL)) {
        return TT_ERR_ARG;
    }
    if (n <= 0 || k <= 0 || m <= 0) {
        return TT_ERR_SHAPE;
    }
    if (tx != NULL) {
        const tt_status s = tt_gemm_fwd_f32(tx, w, NULL, ty, n, k, m);
        if (s != TT_OK) {
            return s;
        }
    } else {
        zero(ty, (size_t)n * (size_t)m);
    }
    if (vw != NULL && n == 1 && vw->dist == TT_ZO_RADEMACHER) {
        /* batch 1 (what the generated code runs), Rademacher: one chain per output in a
           register, the signs taken straight from the draws (same values, same order) */
        uint32_t word = vw->word;
        int bits = vw->bits;
        for (j = 0; j < m; ++j) {
            float acc = ty[j];
            for (kk = 0; kk < k; ++kk) {
                if (bits == 0) {
                    word = tt_prng_u32(&vw->st);
                    bits = 32;
                }
                acc = (word & 1u) ? acc - x[kk] : acc + x[kk];
                word >>= 1;
                --bits;
            }
            ty[j] = acc;
        }
        vw->word = word;
        vw->bits = bits;
    } else if (vw != NULL) {
        /* weight-stationary: V[j][kk] is drawn once, in memory order, and added to output
           column j of every row; each ty[i][j] still sees its terms in kk order */
        for (j = 0; j < m; ++j) {
            for (kk = 0; kk < k; ++kk) {
                axpy_value(ty + j, m, x + kk, k, n, next_value(vw), vw->dist);
            }
        }
    }
    if (vb != NULL) {
        for (j = 0; j < m; ++j) {
            const float v = next_value(vb);
            int i;
            for (i = 0; i < n; ++i) {
                ty[i * m + j] = ty[i * m + j] + v;
            }
        }
    }
    return TT_OK;
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

static int imax(int a, int b)
{
    return a > b ? a : b;
}

/* Outputs o in [*lo, *hi) whose tap t reads an input position o*s - pad + t inside [0, n). */
static void tap_range(int n_out, int s, int pad, int t, int n_in, int *lo, int *hi)
{
    const int a = pad - t;                      /* o*s >= a */
    const int b = n_in - 1 + pad - t;           /* o*s <= b */
    const int first = a <= 0 ? 0 : (a + s - 1) / s;
    const int last = b < 0 ? -1 : b / s;
    *lo = imin(imax(first, 0), n_out);
    *hi = imax(*lo, imin(last + 1, n_out));
}

tt_status tt_conv2d_jvp_f32(const tt_conv2d_params *p, const float *x, const float *tx,
                            const float *w, float *TT_RESTRICT ty, tt_tangent *vw, tt_tangent *vb)
{
    int oc, icg, kh, kw;
    size_t out_hw;
    if (p == NULL || ty == NULL || (tx != NULL && w == NULL) || (vw != NULL && x == NULL) ||
        (tx == NULL && vw == NULL && vb == NULL)) {
        return TT_ERR_ARG;
    }
    if (p->in_c <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->out_c <= 0 || p->out_h <= 0 ||
        p->out_w <= 0 || p->k_h <= 0 || p->k_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
        p->pad_top < 0 || p->pad_left < 0 || p->groups <= 0 || p->in_c % p->groups != 0 ||
        p->out_c % p->groups != 0) {
        return TT_ERR_SHAPE;
    }
    out_hw = (size_t)p->out_h * (size_t)p->out_w;
    if (tx != NULL) {
        const tt_status s = tt_conv2d_fwd_f32(p, tx, w, NULL, ty);
        if (s != TT_OK) {
            return s;
        }
    } else {
        zero(ty, (size_t)p->out_c * out_hw);
    }
    if (vw != NULL) {
        const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
        const size_t in_hw = (size_t)p->in_h * (size_t)p->in_w;
        /* weight-stationary: each tangent weight V[oc][icg][kh][kw] is drawn once, in memory
           order, and added (times the shifted input plane) into output plane oc; every output
           element still receives its taps in (icg, kh, kw) order, the forward chain's order */
        for (oc = 0; oc < p->out_c; ++oc) {
            float *yc = ty + (size_t)oc * out_hw;
            const int g = oc / cout_g;
            for (icg = 0; icg < cin_g; ++icg) {
                const float *xc = x + (size_t)(g * cin_g + icg) * in_hw;
                for (kh = 0; kh < p->k_h; ++kh) {
                    int oh0, oh1, oh;
                    tap_range(p->out_h, p->stride_h, p->pad_top, kh, p->in_h, &oh0, &oh1);
                    for (kw = 0; kw < p->k_w; ++kw) {
                        const float v = next_value(vw); /* drawn even if the tap never lands */
                        int ow0, ow1;
                        tap_range(p->out_w, p->stride_w, p->pad_left, kw, p->in_w, &ow0, &ow1);
                        for (oh = oh0; oh < oh1 && ow0 < ow1; ++oh) {
                            const int ih = oh * p->stride_h - p->pad_top + kh;
                            const float *xr = xc + (size_t)ih * (size_t)p->in_w +
                                              (ow0 * p->stride_w - p->pad_left + kw);
                            axpy_value(yc + (size_t)oh * (size_t)p->out_w + ow0, 1, xr,
                                       p->stride_w, ow1 - ow0, v, vw->dist);
                        }
                    }
                }
            }
        }
    }
    if (vb != NULL) {
        size_t t;
        for (oc = 0; oc < p->out_c; ++oc) {
            const float v = next_value(vb);
            float *yc = ty + (size_t)oc * out_hw;
            for (t = 0; t < out_hw; ++t) {
                yc[t] = yc[t] + v;
            }
        }
    }
    return TT_OK;
}


static int bcast_ok(const tt_bcast4 *p)
{
    int i;
    for (i = 0; i < 4; ++i) {
        if (p->shape[i] <= 0 || p->a_stride[i] < 0 || p->b_stride[i] < 0) {
            return 0;
        }
    }
    return 1;
}

/* Offsets of output element (i0..i3) in an operand with strides s. */
#define TT_OFF4_(s, i0, i1, i2, i3) ((i0) * (s)[0] + (i1) * (s)[1] + (i2) * (s)[2] + (i3) * (s)[3])

tt_status tt_add_jvp_f32(const tt_bcast4 *p, const float *ta, const float *tb, float *ty)
{
    const float *src;
    const int *st;
    int i0, i1, i2, i3;
    float *y;
    if (p == NULL || ty == NULL || (ta == NULL && tb == NULL)) {
        return TT_ERR_ARG;
    }
    if (ta != NULL && tb != NULL) {
        return tt_add_fwd_f32(p, ta, tb, ty);
    }
    if (!bcast_ok(p)) {
        return TT_ERR_SHAPE;
    }
    src = ta != NULL ? ta : tb;
    st = ta != NULL ? p->a_stride : p->b_stride;
    if (src == ty) {
        return TT_OK; /* a non-broadcast operand already in place (the planner's in-place) */
    }
    y = ty;
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                for (i3 = 0; i3 < p->shape[3]; ++i3) {
                    *y++ = src[TT_OFF4_(st, i0, i1, i2, i3)];
                }
            }
        }
    }
    return TT_OK;
}

tt_status tt_mul_jvp_f32(const tt_bcast4 *p, const float *a, const float *b, const float *ta,
                         const float *tb, float *ty)
{
    int i0, i1, i2, i3;
    float *y = ty;
    if (p == NULL || ty == NULL || (ta == NULL && tb == NULL) || (ta != NULL && b == NULL) ||
        (tb != NULL && a == NULL)) {
        return TT_ERR_ARG;
    }
    if (!bcast_ok(p)) {
        return TT_ERR_SHAPE;
    }
    /* element e reads ta/tb at e only when that operand is not broadcast, before writing
       y[e]: so y may equal such an operand */
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                for (i3 = 0; i3 < p->shape[3]; ++i3) {
                    const int ea = TT_OFF4_(p->a_stride, i0, i1, i2, i3);
                    const int eb = TT_OFF4_(p->b_stride, i0, i1, i2, i3);
                    float acc = 0.0f;
                    if (ta != NULL) {
                        acc = ta[ea] * b[eb];
                    }
                    if (tb != NULL) {
                        acc = ta != NULL ? TT_FMAF(a[ea], tb[eb], acc) : a[ea] * tb[eb];
                    }
                    *y++ = acc;
                }
            }
        }
    }
    return TT_OK;
}

tt_status tt_dot_f32(const float *a, const float *b, int n, float *out)
{
    float acc = 0.0f;
    int i;
    if (a == NULL || b == NULL || out == NULL || n < 0) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        acc = TT_FMAF(a[i], b[i], acc);
    }
    *out = acc;
    return TT_OK;
}
