/*
 * tt_conv_f32.c - 2-D (and 1-D) grouped convolution: forward, input gradient, weight gradient.
 *
 * No im2col and no scratch. Each output element is one fmaf chain in the order documented in
 * tt_kernels.h; speed comes from computing a register block of independent chains at once:
 *
 *   forward  4 output channels x 4 output columns (16 accumulators): per tap 4 weight loads +
 *            4 input loads feed 16 fmaf. Kernel width 3 (stride 1 or 2) loads each input row
 *            segment once for its 3 taps. Groups with < 4 output channels use 1 x 4 / 1 x 8.
 *   bwd_x    a gather (transposed convolution without a scatter): 4 input channels x 4 input
 *            columns of the same stride phase, which hit the same kernel taps; per tap 4
 *            weight loads + 4 contiguous gy loads feed 16 fmaf (kernel width 3, stride 1:
 *            one gy row segment for the 3 taps).
 *   bwd_w    4 output channels x up to 4 neighbouring kernel columns; per output position 4 gy
 *            loads + 4 contiguous input loads feed 16 fmaf; the accumulators live in registers
 *            across the whole (oh, ow) reduction.
 *   pointwise (1x1, stride 1, no padding) is a GEMM over the flattened H*W and gets its own
 *            4 x 4 loops with no tap bookkeeping.
 *   depthwise 3 x 3 (one input and one output channel per group) keeps the 9 weights in
 *            registers along an output row (forward; input gradient at stride 1 and 2 x 2).
 *
 * Borders: for every output row the valid kernel-row range is computed once; columns are
 * split into a left border, an interior where every tap is valid (the fast blocks run there)
 * and a right border, where taps are clipped per element. Both visit taps in the same order,
 * so the interior/border split never changes a result.
 *
 * Measured on QEMU (instructions, gcc 12 -O2, MACs per retired instruction, RV32IMAFC /
 * Cortex-M4F), 16x16 maps: 3x3 pad 1 16->16 fwd 0.40/0.40, bwd_x 0.43/0.39, bwd_w 0.44/0.45;
 * pointwise 32->32 0.52/0.55, 0.54/0.53, 0.54/0.48; depthwise 3x3 0.25/0.25, 0.25/0.24,
 * 0.25/0.22. Stride-2 input gradients are the weak spot (3x3: 0.21/0.18; depthwise: 0.08).
 */
#include "tt_kernels.h"

typedef struct {
    int in_h, in_w, out_h, out_w, k_h, k_w, sh, sw, pt, pl, groups;
    int cin_g, cout_g, khw, wst, in_hw, out_hw;
} tt_cg_;

/* Keep the register-blocked kernels out of line: inlined into the big drivers they compete
 * with the drivers' variables for registers and the inner loops spill. */
#if defined(__GNUC__)
#define TT_NOINLINE_ __attribute__((noinline))
#else
#define TT_NOINLINE_
#endif

/* Processing two reduction steps per loop iteration through a second pointer (pointwise) or two
 * columns at once (weight gradient) saves pointer increments on RV32, which has 31 integer
 * registers and no post-increment addressing (pointwise 0.49 -> 0.52, 3x3 weight gradient
 * 0.42 -> 0.44 MAC per instruction); on Cortex-M4 (13 integer registers, post-increment
 * loads) the same code spills and loses 10-15%. The chains are identical either way, so this
 * is a pure speed choice. */
#ifndef TT_CONV_PAIRS /* -DTT_CONV_PAIRS=0/1 overrides (the tests build both) */
#if defined(__riscv)
#define TT_CONV_PAIRS 1
#else
#define TT_CONV_PAIRS 0
#endif
#endif

/* A 4 x 4 block of accumulators a<o><q> (o: channel of the block, q: column lane). */
#define TT_ACC4X4_(i0, i1, i2, i3)                                                              \
    float a00 = (i0), a01 = (i0), a02 = (i0), a03 = (i0);                                       \
    float a10 = (i1), a11 = (i1), a12 = (i1), a13 = (i1);                                       \
    float a20 = (i2), a21 = (i2), a22 = (i2), a23 = (i2);                                       \
    float a30 = (i3), a31 = (i3), a32 = (i3), a33 = (i3)

#define TT_ACC4X4_LOAD_(p, st, l1, l2, l3)                                                      \
    do {                                                                                        \
        const float *p_ = (p);                                                                  \
        a00 = p_[0], a01 = p_[l1], a02 = p_[l2], a03 = p_[l3];                                  \
        p_ += (st);                                                                             \
        a10 = p_[0], a11 = p_[l1], a12 = p_[l2], a13 = p_[l3];                                  \
        p_ += (st);                                                                             \
        a20 = p_[0], a21 = p_[l1], a22 = p_[l2], a23 = p_[l3];                                  \
        p_ += (st);                                                                             \
        a30 = p_[0], a31 = p_[l1], a32 = p_[l2], a33 = p_[l3];                                  \
    } while (0)

#define TT_ACC4X4_STORE_(p, st, l1, l2, l3)                                                     \
    do {                                                                                        \
        float *p_ = (p);                                                                        \
        p_[0] = a00, p_[l1] = a01, p_[l2] = a02, p_[l3] = a03;                                  \
        p_ += (st);                                                                             \
        p_[0] = a10, p_[l1] = a11, p_[l2] = a12, p_[l3] = a13;                                  \
        p_ += (st);                                                                             \
        p_[0] = a20, p_[l1] = a21, p_[l2] = a22, p_[l3] = a23;                                  \
        p_ += (st);                                                                             \
        p_[0] = a30, p_[l1] = a31, p_[l2] = a32, p_[l3] = a33;                                  \
    } while (0)

/* One kernel tap of a 4 x 4 block: weights f0..f3 of the 4 channels, inputs xa..xd of the 4
 * lanes. Each accumulator gets exactly one fmaf, so the chains keep the tap order. */
#define TT_TAP4X4_(f0, f1, f2, f3, xa, xb, xc, xd)                                              \
    do {                                                                                        \
        const float q0_ = (xa), q1_ = (xb), q2_ = (xc), q3_ = (xd);                             \
        float f_ = (f0);                                                                        \
        a00 = TT_FMAF(q0_, f_, a00);                                                               \
        a01 = TT_FMAF(q1_, f_, a01);                                                               \
        a02 = TT_FMAF(q2_, f_, a02);                                                               \
        a03 = TT_FMAF(q3_, f_, a03);                                                               \
        f_ = (f1);                                                                              \
        a10 = TT_FMAF(q0_, f_, a10);                                                               \
        a11 = TT_FMAF(q1_, f_, a11);                                                               \
        a12 = TT_FMAF(q2_, f_, a12);                                                               \
        a13 = TT_FMAF(q3_, f_, a13);                                                               \
        f_ = (f2);                                                                              \
        a20 = TT_FMAF(q0_, f_, a20);                                                               \
        a21 = TT_FMAF(q1_, f_, a21);                                                               \
        a22 = TT_FMAF(q2_, f_, a22);                                                               \
        a23 = TT_FMAF(q3_, f_, a23);                                                               \
        f_ = (f3);                                                                              \
        a30 = TT_FMAF(q0_, f_, a30);                                                               \
        a31 = TT_FMAF(q1_, f_, a31);                                                               \
        a32 = TT_FMAF(q2_, f_, a32);                                                               \
        a33 = TT_FMAF(q3_, f_, a33);                                                               \
    } while (0)

/* One tap of 1 channel x 8 lanes (accumulators b0..b7). */
#define TT_TAP1X8_(f, x0, x1, x2, x3, x4, x5, x6, x7)                                           \
    do {                                                                                        \
        const float f_ = (f);                                                                   \
        b0 = TT_FMAF(x0, f_, b0);                                                                  \
        b1 = TT_FMAF(x1, f_, b1);                                                                  \
        b2 = TT_FMAF(x2, f_, b2);                                                                  \
        b3 = TT_FMAF(x3, f_, b3);                                                                  \
        b4 = TT_FMAF(x4, f_, b4);                                                                  \
        b5 = TT_FMAF(x5, f_, b5);                                                                  \
        b6 = TT_FMAF(x6, f_, b6);                                                                  \
        b7 = TT_FMAF(x7, f_, b7);                                                                  \
    } while (0)

static int imin(int a, int b)
{
    return a < b ? a : b;
}

static int imax(int a, int b)
{
    return a > b ? a : b;
}

/* floor(a / b) and ceil(a / b) for b > 0 and any sign of a */
static int floor_div(int a, int b)
{
    return (a >= 0) ? a / b : -((-a + b - 1) / b);
}

static int ceil_div(int a, int b)
{
    return (a >= 0) ? (a + b - 1) / b : -((-a) / b);
}

/* Outputs o in [*lo, *hi) for which the input positions o*s - pad + t0 ... + t0 + span - 1
 * all lie inside [0, n_in); *lo <= *hi, both within [0, n_out]. */
static void range_full(int n_out, int s, int pad, int t0, int span, int n_in, int *lo, int *hi)
{
    int a = imax(0, ceil_div(pad - t0, s));
    int b = imin(n_out, floor_div(n_in - span + pad - t0, s) + 1);
    a = imin(a, n_out);
    *lo = a;
    *hi = imax(a, b);
}

/* For input position i (padded coordinate t = i + pad): the kernel taps kk that reach it are
 * kk = k0, k0 + s, ... (nk of them, ascending), with output index o0 for kk = k0 and one less
 * for every further tap. */
static void gather_taps(int i, int pad, int s, int k, int n_out, int *k0, int *nk, int *o0)
{
    const int t = i + pad;
    const int kmin = imax(0, t - (n_out - 1) * s);
    const int kmax = imin(k - 1, t);
    const int kk = kmin + (t - kmin) % s;
    *k0 = kk;
    *nk = (kk <= kmax) ? (kmax - kk) / s + 1 : 0;
    *o0 = (t - kk) / s;
}

static tt_status conv_setup(const tt_conv2d_params *p, tt_cg_ *g)
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
    g->in_h = p->in_h;
    g->in_w = p->in_w;
    g->out_h = p->out_h;
    g->out_w = p->out_w;
    g->k_h = p->k_h;
    g->k_w = p->k_w;
    g->sh = p->stride_h;
    g->sw = p->stride_w;
    g->pt = p->pad_top;
    g->pl = p->pad_left;
    g->groups = p->groups;
    g->cin_g = p->in_c / p->groups;
    g->cout_g = p->out_c / p->groups;
    g->khw = p->k_h * p->k_w;
    g->wst = g->cin_g * g->khw;
    g->in_hw = p->in_h * p->in_w;
    g->out_hw = p->out_h * p->out_w;
    return TT_OK;
}

static int is_pointwise(const tt_cg_ *g)
{
    return g->k_h == 1 && g->k_w == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 &&
           g->out_h == g->in_h && g->out_w == g->in_w;
}

/* ====================================================================== forward */

/* The taps of one output block: x and w point at the first valid tap (channel icg = 0 of the
 * group); after nkw taps of a kernel row the pointers skip to the next row, after nkh rows to
 * the next input channel. */
typedef struct {
    const float *x;
    const float *w;
    int nkh, nkw;
    int xrow, xch; /* x: next row, then (after nkh rows) next channel */
    int wrow, wch; /* w: skipped taps after a row / after a channel */
} tt_taps_;

/* 4 output channels (weights wst apart) x 4 output columns (inputs sw apart). */
static TT_NOINLINE_ void fwd_4x4(const tt_cg_ *G, const tt_taps_ *T, const float *init, float *y0)
{
    const int sw = G->sw, s2 = 2 * G->sw, s3 = 3 * G->sw, nkh = T->nkh, nkw = T->nkw;
    const int xrow = T->xrow, xch = T->xch, wrow = T->wrow, wch = T->wch;
    const float *xp = T->x;
    const float *w0 = T->w, *w1 = w0 + G->wst, *w2 = w1 + G->wst, *w3 = w2 + G->wst;
    float a00 = init[0], a01 = init[0], a02 = init[0], a03 = init[0];
    float a10 = init[1], a11 = init[1], a12 = init[1], a13 = init[1];
    float a20 = init[2], a21 = init[2], a22 = init[2], a23 = init[2];
    float a30 = init[3], a31 = init[3], a32 = init[3], a33 = init[3];
    float *y;
    int c, r, k;
    for (c = G->cin_g; c > 0; --c) {
        for (r = nkh; r > 0; --r) {
            const float *xq = xp;
            for (k = nkw; k > 0; --k) {
                const float x0 = xq[0], x1 = xq[sw], x2 = xq[s2], x3 = xq[s3];
                float f = *w0++;
                a00 = TT_FMAF(x0, f, a00);
                a01 = TT_FMAF(x1, f, a01);
                a02 = TT_FMAF(x2, f, a02);
                a03 = TT_FMAF(x3, f, a03);
                f = *w1++;
                a10 = TT_FMAF(x0, f, a10);
                a11 = TT_FMAF(x1, f, a11);
                a12 = TT_FMAF(x2, f, a12);
                a13 = TT_FMAF(x3, f, a13);
                f = *w2++;
                a20 = TT_FMAF(x0, f, a20);
                a21 = TT_FMAF(x1, f, a21);
                a22 = TT_FMAF(x2, f, a22);
                a23 = TT_FMAF(x3, f, a23);
                f = *w3++;
                a30 = TT_FMAF(x0, f, a30);
                a31 = TT_FMAF(x1, f, a31);
                a32 = TT_FMAF(x2, f, a32);
                a33 = TT_FMAF(x3, f, a33);
                ++xq;
            }
            xp += xrow;
            w0 += wrow;
            w1 += wrow;
            w2 += wrow;
            w3 += wrow;
        }
        xp += xch;
        w0 += wch;
        w1 += wch;
        w2 += wch;
        w3 += wch;
    }
    y = y0;
    y[0] = a00;
    y[1] = a01;
    y[2] = a02;
    y[3] = a03;
    y += G->out_hw;
    y[0] = a10;
    y[1] = a11;
    y[2] = a12;
    y[3] = a13;
    y += G->out_hw;
    y[0] = a20;
    y[1] = a21;
    y[2] = a22;
    y[3] = a23;
    y += G->out_hw;
    y[0] = a30;
    y[1] = a31;
    y[2] = a32;
    y[3] = a33;
}

/* 4 output channels x 1 column (borders, column tails). */
static TT_NOINLINE_ void fwd_4x1(const tt_cg_ *G, const tt_taps_ *T, const float *init, float *y0)
{
    const int nkh = T->nkh, nkw = T->nkw;
    const int xrow = T->xrow, xch = T->xch, wrow = T->wrow, wch = T->wch;
    const float *xp = T->x;
    const float *w0 = T->w, *w1 = w0 + G->wst, *w2 = w1 + G->wst, *w3 = w2 + G->wst;
    float a0 = init[0], a1 = init[1], a2 = init[2], a3 = init[3];
    int c, r, k;
    for (c = G->cin_g; c > 0; --c) {
        for (r = nkh; r > 0; --r) {
            const float *xq = xp;
            for (k = nkw; k > 0; --k) {
                const float x0 = *xq++;
                a0 = TT_FMAF(x0, *w0++, a0);
                a1 = TT_FMAF(x0, *w1++, a1);
                a2 = TT_FMAF(x0, *w2++, a2);
                a3 = TT_FMAF(x0, *w3++, a3);
            }
            xp += xrow;
            w0 += wrow;
            w1 += wrow;
            w2 += wrow;
            w3 += wrow;
        }
        xp += xch;
        w0 += wch;
        w1 += wch;
        w2 += wch;
        w3 += wch;
    }
    y0[0] = a0;
    y0[G->out_hw] = a1;
    y0[2 * G->out_hw] = a2;
    y0[3 * G->out_hw] = a3;
}

/* 1 output channel x 4 columns (depthwise and channel tails). */
static TT_NOINLINE_ void fwd_1x4(const tt_cg_ *G, const tt_taps_ *T, float init, float *y0)
{
    const int sw = G->sw, s2 = 2 * G->sw, s3 = 3 * G->sw, nkh = T->nkh, nkw = T->nkw;
    const int xrow = T->xrow, xch = T->xch, wrow = T->wrow, wch = T->wch;
    const float *xp = T->x;
    const float *w0 = T->w;
    float a0 = init, a1 = init, a2 = init, a3 = init;
    int c, r, k;
    for (c = G->cin_g; c > 0; --c) {
        for (r = nkh; r > 0; --r) {
            const float *xq = xp;
            for (k = nkw; k > 0; --k) {
                const float f = *w0++;
                a0 = TT_FMAF(xq[0], f, a0);
                a1 = TT_FMAF(xq[sw], f, a1);
                a2 = TT_FMAF(xq[s2], f, a2);
                a3 = TT_FMAF(xq[s3], f, a3);
                ++xq;
            }
            xp += xrow;
            w0 += wrow;
        }
        xp += xch;
        w0 += wch;
    }
    y0[0] = a0;
    y0[1] = a1;
    y0[2] = a2;
    y0[3] = a3;
}

static TT_NOINLINE_ float fwd_1x1(const tt_cg_ *G, const tt_taps_ *T, float acc)
{
    const int nkh = T->nkh, nkw = T->nkw;
    const float *xp = T->x;
    const float *w0 = T->w;
    int c, r, k;
    for (c = G->cin_g; c > 0; --c) {
        for (r = nkh; r > 0; --r) {
            const float *xq = xp;
            for (k = nkw; k > 0; --k) {
                acc = TT_FMAF(*xq++, *w0++, acc);
            }
            xp += T->xrow;
            w0 += T->wrow;
        }
        xp += T->xch;
        w0 += T->wch;
    }
    return acc;
}

/* Kernel width 3 (the common case), interior blocks: a whole kernel row per iteration, the
 * input row segment loaded once and shared by the 3 taps (sliding window). */
static TT_NOINLINE_ void fwd_4x4_k3s1(const tt_cg_ *G, const tt_taps_ *T, const float *init,
                                      float *y0)
{
    const int nkh = T->nkh, xrow = T->xrow, xch = T->xch, wch = T->wch;
    const float *xp = T->x;
    const float *w0 = T->w, *w1 = w0 + G->wst, *w2 = w1 + G->wst, *w3 = w2 + G->wst;
    int c, r;
    TT_ACC4X4_(init[0], init[1], init[2], init[3]);
    for (c = G->cin_g; c > 0; --c) {
        for (r = nkh; r > 0; --r) {
            const float x0 = xp[0], x1 = xp[1], x2 = xp[2], x3 = xp[3], x4 = xp[4], x5 = xp[5];
            TT_TAP4X4_(w0[0], w1[0], w2[0], w3[0], x0, x1, x2, x3);
            TT_TAP4X4_(w0[1], w1[1], w2[1], w3[1], x1, x2, x3, x4);
            TT_TAP4X4_(w0[2], w1[2], w2[2], w3[2], x2, x3, x4, x5);
            xp += xrow;
            w0 += 3;
            w1 += 3;
            w2 += 3;
            w3 += 3;
        }
        xp += xch;
        w0 += wch;
        w1 += wch;
        w2 += wch;
        w3 += wch;
    }
    TT_ACC4X4_STORE_(y0, G->out_hw, 1, 2, 3);
}

static TT_NOINLINE_ void fwd_4x4_k3s2(const tt_cg_ *G, const tt_taps_ *T, const float *init,
                                      float *y0)
{
    const int nkh = T->nkh, xrow = T->xrow, xch = T->xch, wch = T->wch;
    const float *xp = T->x;
    const float *w0 = T->w, *w1 = w0 + G->wst, *w2 = w1 + G->wst, *w3 = w2 + G->wst;
    int c, r;
    TT_ACC4X4_(init[0], init[1], init[2], init[3]);
    for (c = G->cin_g; c > 0; --c) {
        for (r = nkh; r > 0; --r) {
            const float x0 = xp[0], x1 = xp[1], x2 = xp[2], x3 = xp[3], x4 = xp[4];
            const float x5 = xp[5], x6 = xp[6], x7 = xp[7], x8 = xp[8];
            TT_TAP4X4_(w0[0], w1[0], w2[0], w3[0], x0, x2, x4, x6);
            TT_TAP4X4_(w0[1], w1[1], w2[1], w3[1], x1, x3, x5, x7);
            TT_TAP4X4_(w0[2], w1[2], w2[2], w3[2], x2, x4, x6, x8);
            xp += xrow;
            w0 += 3;
            w1 += 3;
            w2 += 3;
            w3 += 3;
        }
        xp += xch;
        w0 += wch;
        w1 += wch;
        w2 += wch;
        w3 += wch;
    }
    TT_ACC4X4_STORE_(y0, G->out_hw, 1, 2, 3);
}

/* 1 channel x 8 columns, kernel width 3, stride 1 (depthwise, channel tails). */
static TT_NOINLINE_ void fwd_1x8_k3s1(const tt_cg_ *G, const tt_taps_ *T, float init, float *y)
{
    const int nkh = T->nkh, xrow = T->xrow, xch = T->xch, wch = T->wch;
    const float *xp = T->x;
    const float *w0 = T->w;
    float b0 = init, b1 = init, b2 = init, b3 = init, b4 = init, b5 = init, b6 = init, b7 = init;
    int c, r;
    for (c = G->cin_g; c > 0; --c) {
        for (r = nkh; r > 0; --r) {
            const float x0 = xp[0], x1 = xp[1], x2 = xp[2], x3 = xp[3], x4 = xp[4];
            const float x5 = xp[5], x6 = xp[6], x7 = xp[7], x8 = xp[8], x9 = xp[9];
            TT_TAP1X8_(w0[0], x0, x1, x2, x3, x4, x5, x6, x7);
            TT_TAP1X8_(w0[1], x1, x2, x3, x4, x5, x6, x7, x8);
            TT_TAP1X8_(w0[2], x2, x3, x4, x5, x6, x7, x8, x9);
            xp += xrow;
            w0 += 3;
        }
        xp += xch;
        w0 += wch;
    }
    y[0] = b0;
    y[1] = b1;
    y[2] = b2;
    y[3] = b3;
    y[4] = b4;
    y[5] = b5;
    y[6] = b6;
    y[7] = b7;
}

/* 1 channel x 4 columns, kernel width 3, stride 2. */
static TT_NOINLINE_ void fwd_1x4_k3s2(const tt_cg_ *G, const tt_taps_ *T, float init, float *y)
{
    const int nkh = T->nkh, xrow = T->xrow, xch = T->xch, wch = T->wch;
    const float *xp = T->x;
    const float *w0 = T->w;
    float b0 = init, b1 = init, b2 = init, b3 = init;
    int c, r;
    for (c = G->cin_g; c > 0; --c) {
        for (r = nkh; r > 0; --r) {
            const float x0 = xp[0], x1 = xp[1], x2 = xp[2], x3 = xp[3], x4 = xp[4];
            const float x5 = xp[5], x6 = xp[6], x7 = xp[7], x8 = xp[8];
            float f = w0[0];
            b0 = TT_FMAF(x0, f, b0);
            b1 = TT_FMAF(x2, f, b1);
            b2 = TT_FMAF(x4, f, b2);
            b3 = TT_FMAF(x6, f, b3);
            f = w0[1];
            b0 = TT_FMAF(x1, f, b0);
            b1 = TT_FMAF(x3, f, b1);
            b2 = TT_FMAF(x5, f, b2);
            b3 = TT_FMAF(x7, f, b3);
            f = w0[2];
            b0 = TT_FMAF(x2, f, b0);
            b1 = TT_FMAF(x4, f, b1);
            b2 = TT_FMAF(x6, f, b2);
            b3 = TT_FMAF(x8, f, b3);
            xp += xrow;
            w0 += 3;
        }
        xp += xch;
        w0 += wch;
    }
    y[0] = b0;
    y[1] = b1;
    y[2] = b2;
    y[3] = b3;
}

static void conv_fwd_general(const tt_cg_ *G, const float *x, const float *w, const float *b,
                             float *y)
{
    const int k3 = G->k_w == 3;
    int g, oc, oh, ow, ow_lo, ow_hi, nb, o;
    float init[4];
    tt_taps_ T;
    range_full(G->out_w, G->sw, G->pl, 0, G->k_w, G->in_w, &ow_lo, &ow_hi);
    T.xrow = G->in_w;
    for (g = 0; g < G->groups; ++g) {
        const float *xg = x + (size_t)g * (size_t)G->cin_g * (size_t)G->in_hw;
        const int oc_end = (g + 1) * G->cout_g;
        for (oc = g * G->cout_g; oc < oc_end; oc += nb) {
            nb = (oc_end - oc >= 4) ? 4 : 1;
            for (o = 0; o < nb; ++o) {
                init[o] = (b != NULL) ? b[oc + o] : 0.0f;
            }
            for (oh = 0; oh < G->out_h; ++oh) {
                const int ih0 = oh * G->sh - G->pt;
                const int kh_lo = imax(0, -ih0), kh_hi = imin(G->k_h, G->in_h - ih0);
                float *yr = y + (size_t)oc * (size_t)G->out_hw + (size_t)oh * (size_t)G->out_w;
                if (kh_hi <= kh_lo) { /* the window misses the input: bias only */
                    for (o = 0; o < nb; ++o) {
                        for (ow = 0; ow < G->out_w; ++ow) {
                            yr[o * G->out_hw + ow] = init[o];
                        }
                    }
                    continue;
                }
                T.nkh = kh_hi - kh_lo;
                T.xch = G->in_hw - T.nkh * G->in_w;
                T.wch = (G->k_h - T.nkh) * G->k_w;
                for (ow = 0; ow < G->out_w;) {
                    const int iw0 = ow * G->sw - G->pl;
                    const float *xr = xg + (ih0 + kh_lo) * G->in_w;
                    const float *wr = w + (size_t)oc * (size_t)G->wst + kh_lo * G->k_w;
                    if (ow >= ow_lo && ow + 4 <= ow_hi) {
                        T.x = xr + iw0;
                        T.w = wr;
                        T.nkw = G->k_w;
                        T.wrow = 0;
                        if (nb == 4) {
                            if (k3 && G->sw == 1) {
                                fwd_4x4_k3s1(G, &T, init, yr + ow);
                            } else if (k3 && G->sw == 2) {
                                fwd_4x4_k3s2(G, &T, init, yr + ow);
                            } else {
                                fwd_4x4(G, &T, init, yr + ow);
                            }
                        } else if (k3 && G->sw == 1 && ow + 8 <= ow_hi) {
                            fwd_1x8_k3s1(G, &T, init[0], yr + ow);
                            ow += 4;
                        } else if (k3 && G->sw == 2) {
                            fwd_1x4_k3s2(G, &T, init[0], yr + ow);
                        } else {
                            fwd_1x4(G, &T, init[0], yr + ow);
                        }
                        ow += 4;
                    } else {
                        const int kw_lo = imax(0, -iw0), kw_hi = imin(G->k_w, G->in_w - iw0);
                        if (kw_hi <= kw_lo) {
                            for (o = 0; o < nb; ++o) {
                                yr[o * G->out_hw + ow] = init[o];
                            }
                        } else {
                            T.x = xr + iw0 + kw_lo;
                            T.w = wr + kw_lo;
                            T.nkw = kw_hi - kw_lo;
                            T.wrow = G->k_w - T.nkw;
                            if (nb == 4) {
                                fwd_4x1(G, &T, init, yr + ow);
                            } else {
                                yr[ow] = fwd_1x1(G, &T, init[0]);
                            }
                        }
                        ow += 1;
                    }
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- depthwise 3 x 3
 * One input and one output channel per group, 3 x 3 kernel: the 9 weights stay in registers
 * for a whole output row; rows whose 3 kernel rows are all inside the input run 4 columns at
 * a time with no tap bookkeeping, everything else goes through a plain checked loop. Same
 * chains as everywhere: (kh, kw) ascending. */
static int is_dw3(const tt_cg_ *G)
{
    return G->cin_g == 1 && G->cout_g == 1 && G->k_h == 3 && G->k_w == 3;
}

#define TT_DW3_TAP4_(f, xa, xb, xc, xd)                                                         \
    do {                                                                                        \
        b0 = TT_FMAF(xa, f, b0);                                                                   \
        b1 = TT_FMAF(xb, f, b1);                                                                   \
        b2 = TT_FMAF(xc, f, b2);                                                                   \
        b3 = TT_FMAF(xd, f, b3);                                                                   \
    } while (0)

/* n outputs whose windows are fully inside the input; rK points at input column
 * ow*sw - pad_left of kernel row K for the first output. sw is 1 or 2. */
static TT_NOINLINE_ void dw3_fwd_run(const float *r0, const float *r1, const float *r2,
                                     const float *w, float bias, float *y, int n, int sw)
{
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6],
                w7 = w[7], w8 = w[8];
    const int step = 4 * sw;
    int t;
    if (sw == 1) {
        for (t = n >> 2; t > 0; --t) {
            float b0 = bias, b1 = bias, b2 = bias, b3 = bias, x0, x1, x2, x3, x4, x5;
            x0 = r0[0], x1 = r0[1], x2 = r0[2], x3 = r0[3], x4 = r0[4], x5 = r0[5];
            TT_DW3_TAP4_(w0, x0, x1, x2, x3);
            TT_DW3_TAP4_(w1, x1, x2, x3, x4);
            TT_DW3_TAP4_(w2, x2, x3, x4, x5);
            x0 = r1[0], x1 = r1[1], x2 = r1[2], x3 = r1[3], x4 = r1[4], x5 = r1[5];
            TT_DW3_TAP4_(w3, x0, x1, x2, x3);
            TT_DW3_TAP4_(w4, x1, x2, x3, x4);
            TT_DW3_TAP4_(w5, x2, x3, x4, x5);
            x0 = r2[0], x1 = r2[1], x2 = r2[2], x3 = r2[3], x4 = r2[4], x5 = r2[5];
            TT_DW3_TAP4_(w6, x0, x1, x2, x3);
            TT_DW3_TAP4_(w7, x1, x2, x3, x4);
            TT_DW3_TAP4_(w8, x2, x3, x4, x5);
            y[0] = b0;
            y[1] = b1;
            y[2] = b2;
            y[3] = b3;
            y += 4;
            r0 += 4;
            r1 += 4;
            r2 += 4;
        }
    } else {
        for (t = n >> 2; t > 0; --t) {
            float b0 = bias, b1 = bias, b2 = bias, b3 = bias;
            const float *r = r0;
            int k;
            for (k = 0; k < 3; ++k) { /* kernel rows; the weights are picked by k below */
                const float x0 = r[0], x1 = r[1], x2 = r[2], x3 = r[3], x4 = r[4], x5 = r[5],
                            x6 = r[6], x7 = r[7], x8 = r[8];
                const float fa = (k == 0) ? w0 : (k == 1) ? w3 : w6;
                const float fb = (k == 0) ? w1 : (k == 1) ? w4 : w7;
                const float fc = (k == 0) ? w2 : (k == 1) ? w5 : w8;
                TT_DW3_TAP4_(fa, x0, x2, x4, x6);
                TT_DW3_TAP4_(fb, x1, x3, x5, x7);
                TT_DW3_TAP4_(fc, x2, x4, x6, x8);
                r = (k == 0) ? r1 : r2;
            }
            y[0] = b0;
            y[1] = b1;
            y[2] = b2;
            y[3] = b3;
            y += 4;
            r0 += step;
            r1 += step;
            r2 += step;
        }
    }
    for (t = n & 3; t > 0; --t) {
        float a = bias;
        a = TT_FMAF(r0[0], w0, a);
        a = TT_FMAF(r0[1], w1, a);
        a = TT_FMAF(r0[2], w2, a);
        a = TT_FMAF(r1[0], w3, a);
        a = TT_FMAF(r1[1], w4, a);
        a = TT_FMAF(r1[2], w5, a);
        a = TT_FMAF(r2[0], w6, a);
        a = TT_FMAF(r2[1], w7, a);
        a = TT_FMAF(r2[2], w8, a);
        *y++ = a;
        r0 += sw;
        r1 += sw;
        r2 += sw;
    }
}

/* Outputs whose windows lose kernel rows (top / bottom) but keep all 3 columns: kernel rows
 * k0 .. k1-1, rK = r + K*in_w. */
static TT_NOINLINE_ void dw3_fwd_run_rows(const float *r, int in_w, int k0, int k1,
                                          const float *w, float bias, float *y, int n, int sw)
{
    int t, k;
    for (t = n; t > 0; --t) {
        float a = bias;
        const float *rk = r + k0 * in_w;
        for (k = k0; k < k1; ++k) {
            a = TT_FMAF(rk[0], w[3 * k], a);
            a = TT_FMAF(rk[1], w[3 * k + 1], a);
            a = TT_FMAF(rk[2], w[3 * k + 2], a);
            rk += in_w;
        }
        *y++ = a;
        r += sw;
    }
}

/* One output of a depthwise 3 x 3 convolution, taps clipped to the input. */
static float dw3_fwd_point(const tt_cg_ *G, const float *xc, const float *w, float acc, int oh,
                           int ow)
{
    const int ih0 = oh * G->sh - G->pt, iw0 = ow * G->sw - G->pl;
    const int kh0 = imax(0, -ih0), kh1 = imin(3, G->in_h - ih0);
    const int kw0 = imax(0, -iw0), kw1 = imin(3, G->in_w - iw0);
    int kh, kw;
    for (kh = kh0; kh < kh1; ++kh) {
        const float *xr = xc + (ih0 + kh) * G->in_w + iw0;
        const float *wr = w + 3 * kh;
        for (kw = kw0; kw < kw1; ++kw) {
            acc = TT_FMAF(xr[kw], wr[kw], acc);
        }
    }
    return acc;
}

static void conv_fwd_dw3(const tt_cg_ *G, const float *x, const float *w, const float *b,
                         float *y)
{
    int c, oh, ow, ow_lo, ow_hi;
    range_full(G->out_w, G->sw, G->pl, 0, 3, G->in_w, &ow_lo, &ow_hi);
    for (c = 0; c < G->groups; ++c) {
        const float *xc = x + (size_t)c * (size_t)G->in_hw;
        const float *wc = w + (size_t)c * 9u;
        const float bias = (b != NULL) ? b[c] : 0.0f;
        float *yc = y + (size_t)c * (size_t)G->out_hw;
        for (oh = 0; oh < G->out_h; ++oh) {
            const int ih0 = oh * G->sh - G->pt;
            const int kh0 = imax(0, -ih0), kh1 = imin(3, G->in_h - ih0);
            float *yr = yc + oh * G->out_w;
            for (ow = 0; ow < ow_lo; ++ow) {
                yr[ow] = dw3_fwd_point(G, xc, wc, bias, oh, ow);
            }
            if (ow_hi > ow_lo) {
                const int col = ow_lo * G->sw - G->pl;
                if (kh0 == 0 && kh1 == 3 && G->sw <= 2) {
                    const float *r0 = xc + ih0 * G->in_w + col;
                    dw3_fwd_run(r0, r0 + G->in_w, r0 + 2 * G->in_w, wc, bias, yr + ow_lo,
                                ow_hi - ow_lo, G->sw);
                } else if (kh1 > kh0) {
                    const float *rk = xc + (ih0 + kh0) * G->in_w + col;
                    dw3_fwd_run_rows(rk, G->in_w, 0, kh1 - kh0, wc + 3 * kh0, bias, yr + ow_lo,
                                     ow_hi - ow_lo, G->sw);
                } else {
                    for (ow = ow_lo; ow < ow_hi; ++ow) {
                        yr[ow] = bias;
                    }
                }
            }
            for (ow = ow_hi; ow < G->out_w; ++ow) {
                yr[ow] = dw3_fwd_point(G, xc, wc, bias, oh, ow);
            }
        }
    }
}

/* Input gradient, stride 1: gx[ih][iw] = sum over (kh, kw) ascending of
 * gy[ih + pad_top - kh][iw + pad_left - kw] * w[kh][kw]. gK points at gy column
 * iw + pad_left of output row ih + pad_top - K for the first of n interior inputs. */
static TT_NOINLINE_ void dw3_bwdx_run_s1(const float *g0, const float *g1, const float *g2,
                                         const float *w, float *gx, int n, int accumulate)
{
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6],
                w7 = w[7], w8 = w[8];
    int t;
    for (t = n >> 2; t > 0; --t) {
        float b0 = 0.0f, b1 = 0.0f, b2 = 0.0f, b3 = 0.0f, x0, x1, x2, x3, x4, x5;
        if (accumulate) {
            b0 = gx[0];
            b1 = gx[1];
            b2 = gx[2];
            b3 = gx[3];
        }
        x0 = g0[-2], x1 = g0[-1], x2 = g0[0], x3 = g0[1], x4 = g0[2], x5 = g0[3];
        TT_DW3_TAP4_(w0, x2, x3, x4, x5);
        TT_DW3_TAP4_(w1, x1, x2, x3, x4);
        TT_DW3_TAP4_(w2, x0, x1, x2, x3);
        x0 = g1[-2], x1 = g1[-1], x2 = g1[0], x3 = g1[1], x4 = g1[2], x5 = g1[3];
        TT_DW3_TAP4_(w3, x2, x3, x4, x5);
        TT_DW3_TAP4_(w4, x1, x2, x3, x4);
        TT_DW3_TAP4_(w5, x0, x1, x2, x3);
        x0 = g2[-2], x1 = g2[-1], x2 = g2[0], x3 = g2[1], x4 = g2[2], x5 = g2[3];
        TT_DW3_TAP4_(w6, x2, x3, x4, x5);
        TT_DW3_TAP4_(w7, x1, x2, x3, x4);
        TT_DW3_TAP4_(w8, x0, x1, x2, x3);
        gx[0] = b0;
        gx[1] = b1;
        gx[2] = b2;
        gx[3] = b3;
        gx += 4;
        g0 += 4;
        g1 += 4;
        g2 += 4;
    }
    for (t = n & 3; t > 0; --t) {
        float a = accumulate ? gx[0] : 0.0f;
        a = TT_FMAF(g0[0], w0, a);
        a = TT_FMAF(g0[-1], w1, a);
        a = TT_FMAF(g0[-2], w2, a);
        a = TT_FMAF(g1[0], w3, a);
        a = TT_FMAF(g1[-1], w4, a);
        a = TT_FMAF(g1[-2], w5, a);
        a = TT_FMAF(g2[0], w6, a);
        a = TT_FMAF(g2[-1], w7, a);
        a = TT_FMAF(g2[-2], w8, a);
        *gx++ = a;
        ++g0;
        ++g1;
        ++g2;
    }
}

/* Interior columns of an input row that reaches only kernel rows k0 .. k1-1 (top / bottom):
 * gK = g + K*(-out_w) is the gy row of kernel row K, at column iw + pad_left. */
static TT_NOINLINE_ void dw3_bwdx_run_rows_s1(const float *g, int out_w, int k0, int k1,
                                              const float *w, float *gx, int n, int accumulate)
{
    int t, k;
    for (t = n; t > 0; --t) {
        float a = accumulate ? *gx : 0.0f;
        const float *gk = g - k0 * out_w;
        for (k = k0; k < k1; ++k) {
            a = TT_FMAF(gk[0], w[3 * k], a);
            a = TT_FMAF(gk[-1], w[3 * k + 1], a);
            a = TT_FMAF(gk[-2], w[3 * k + 2], a);
            gk -= out_w;
        }
        *gx++ = a;
        ++g;
    }
}

static float dw3_bwdx_point_s1(const tt_cg_ *G, const float *gc, const float *w, float acc,
                               int ih, int iw)
{
    const int th = ih + G->pt, tw = iw + G->pl; /* kernel tap k reads gy[th - kh][tw - kw] */
    const int kh0 = imax(0, th - (G->out_h - 1)), kh1 = imin(3, th + 1);
    const int kw0 = imax(0, tw - (G->out_w - 1)), kw1 = imin(3, tw + 1);
    int kh, kw;
    for (kh = kh0; kh < kh1; ++kh) {
        const float *gr = gc + (th - kh) * G->out_w + tw;
        const float *wr = w + 3 * kh;
        for (kw = kw0; kw < kw1; ++kw) {
            acc = TT_FMAF(gr[-kw], wr[kw], acc);
        }
    }
    return acc;
}

static void conv_bwdx_dw3s1(const tt_cg_ *G, const float *gy, const float *w, float *gx,
                            int accumulate)
{
    /* inputs whose 3 kernel columns all map to outputs: iw + pl - 2 >= 0, iw + pl <= out_w - 1 */
    const int iw_lo = imin(G->in_w, imax(0, 2 - G->pl));
    const int iw_hi = imax(iw_lo, imin(G->in_w, G->out_w - G->pl)); /* exclusive */
    int c, ih, iw;
    for (c = 0; c < G->groups; ++c) {
        const float *gc = gy + (size_t)c * (size_t)G->out_hw;
        const float *wc = w + (size_t)c * 9u;
        float *xc = gx + (size_t)c * (size_t)G->in_hw;
        for (ih = 0; ih < G->in_h; ++ih) {
            const int th = ih + G->pt;
            const int kh0 = imax(0, th - (G->out_h - 1)), kh1 = imin(3, th + 1);
            float *xr = xc + ih * G->in_w;
            for (iw = 0; iw < iw_lo; ++iw) {
                xr[iw] = dw3_bwdx_point_s1(G, gc, wc, accumulate ? xr[iw] : 0.0f, ih, iw);
            }
            if (iw_hi > iw_lo) {
                const int col = iw_lo + G->pl;
                if (kh0 == 0 && kh1 == 3) {
                    const float *g0 = gc + th * G->out_w + col;
                    dw3_bwdx_run_s1(g0, g0 - G->out_w, g0 - 2 * G->out_w, wc, xr + iw_lo,
                                    iw_hi - iw_lo, accumulate);
                } else if (kh1 > kh0) {
                    const float *gk = gc + (th - kh0) * G->out_w + col;
                    dw3_bwdx_run_rows_s1(gk, G->out_w, 0, kh1 - kh0, wc + 3 * kh0, xr + iw_lo,
                                         iw_hi - iw_lo, accumulate);
                } else if (!accumulate) {
                    for (iw = iw_lo; iw < iw_hi; ++iw) {
                        xr[iw] = 0.0f;
                    }
                }
            }
            for (iw = iw_hi; iw < G->in_w; ++iw) {
                xr[iw] = dw3_bwdx_point_s1(G, gc, wc, accumulate ? xr[iw] : 0.0f, ih, iw);
            }
        }
    }
}

/* Input gradient, stride 2 x 2: an input at padded position (th, tw) is reached by the kernel
 * rows kh = th mod 2, th mod 2 + 2 (output row (th - kh)/2) and likewise for columns, so even
 * padded columns take taps kw = 0, 2 (outputs tw/2, tw/2 - 1) and odd ones kw = 1. The run
 * below walks interior columns in (even, odd) pairs; g[r] is the gy row of kernel row kr[r]
 * (ascending), at output column j = tw/2 of the pair's even member. */
static TT_NOINLINE_ void dw3_bwdx_run_s2(const float *const *g, const int *kr, int nr,
                                         const float *w, float *gx, int npairs, int accumulate)
{
    const float *ga = g[0], *gb = (nr > 1) ? g[1] : g[0];
    const float *wa = w + 3 * kr[0], *wb = w + 3 * ((nr > 1) ? kr[1] : kr[0]);
    const float a0 = wa[0], a1 = wa[1], a2 = wa[2], b0 = wb[0], b1 = wb[1], b2 = wb[2];
    int t;
    for (t = npairs; t > 0; --t) {
        float e = 0.0f, o = 0.0f;
        if (accumulate) {
            e = gx[0];
            o = gx[1];
        }
        e = TT_FMAF(ga[0], a0, e);
        e = TT_FMAF(ga[-1], a2, e);
        o = TT_FMAF(ga[0], a1, o);
        if (nr > 1) {
            e = TT_FMAF(gb[0], b0, e);
            e = TT_FMAF(gb[-1], b2, e);
            o = TT_FMAF(gb[0], b1, o);
        }
        gx[0] = e;
        gx[1] = o;
        gx += 2;
        ++ga;
        ++gb;
    }
}

/* One input gradient of a depthwise 3 x 3 convolution, any stride, taps clipped. */
static float dw3_bwdx_point(const tt_cg_ *G, const float *gc, const float *w, float acc, int ih,
                            int iw)
{
    int kh0, nkh, oh0, kw0, nkw, ow0, r, k;
    gather_taps(ih, G->pt, G->sh, 3, G->out_h, &kh0, &nkh, &oh0);
    gather_taps(iw, G->pl, G->sw, 3, G->out_w, &kw0, &nkw, &ow0);
    for (r = 0; r < nkh; ++r) {
        const float *gr = gc + (oh0 - r) * G->out_w + ow0;
        const float *wr = w + 3 * (kh0 + r * G->sh) + kw0;
        for (k = 0; k < nkw; ++k) {
            acc = TT_FMAF(gr[-k], wr[k * G->sw], acc);
        }
    }
    return acc;
}

static void conv_bwdx_dw3s2(const tt_cg_ *G, const float *gy, const float *w, float *gx,
                            int accumulate)
{
    /* columns whose phase taps are all valid: tw - 2 >= 0 (even) and tw/2 <= out_w - 1;
     * pairs start at an even padded column */
    int lo = imax(0, 2 - G->pl), hi = imin(G->in_w, 2 * (G->out_w - 1) - G->pl + 2);
    int c, ih, iw, npairs;
    if ((lo + G->pl) & 1) {
        ++lo;
    }
    npairs = (hi > lo) ? (hi - lo) / 2 : 0;
    hi = lo + 2 * npairs; /* exclusive */
    for (c = 0; c < G->groups; ++c) {
        const float *gc = gy + (size_t)c * (size_t)G->out_hw;
        const float *wc = w + (size_t)c * 9u;
        float *xc = gx + (size_t)c * (size_t)G->in_hw;
        for (ih = 0; ih < G->in_h; ++ih) {
            float *xr = xc + ih * G->in_w;
            const float *g[2];
            int kr[2], kh0, nkh, oh0, r;
            gather_taps(ih, G->pt, 2, 3, G->out_h, &kh0, &nkh, &oh0);
            for (r = 0; r < nkh; ++r) {
                kr[r] = kh0 + 2 * r;
                g[r] = gc + (oh0 - r) * G->out_w + (lo + G->pl) / 2;
            }
            for (iw = 0; iw < (npairs > 0 ? lo : G->in_w); ++iw) {
                xr[iw] = dw3_bwdx_point(G, gc, wc, accumulate ? xr[iw] : 0.0f, ih, iw);
            }
            if (npairs > 0) {
                if (nkh > 0) {
                    dw3_bwdx_run_s2(g, kr, nkh, wc, xr + lo, npairs, accumulate);
                } else if (!accumulate) {
                    for (iw = lo; iw < hi; ++iw) {
                        xr[iw] = 0.0f;
                    }
                }
                for (iw = hi; iw < G->in_w; ++iw) {
                    xr[iw] = dw3_bwdx_point(G, gc, wc, accumulate ? xr[iw] : 0.0f, ih, iw);
                }
            }
        }
    }
}

/* Pointwise: y[oc][p] = b[oc] + sum_ic w[oc][ic] * x[ic][p] over the flattened p = H*W. */
static TT_NOINLINE_ void pw_fwd_4x4(const float *xp, const float *w0, int cin_g, int hw,
                                    const float *init, float *y)
{
    const float *w1 = w0 + cin_g, *w2 = w1 + cin_g, *w3 = w2 + cin_g;
    const float *xq = xp + hw;
    const int hw2 = 2 * hw;
    int c;
    TT_ACC4X4_(init[0], init[1], init[2], init[3]);
    /* two input channels per iteration on RV32 (see TT_CONV_PAIRS) */
    for (c = TT_CONV_PAIRS ? cin_g >> 1 : 0; c > 0; --c) {
        TT_TAP4X4_(w0[0], w1[0], w2[0], w3[0], xp[0], xp[1], xp[2], xp[3]);
        TT_TAP4X4_(w0[1], w1[1], w2[1], w3[1], xq[0], xq[1], xq[2], xq[3]);
        w0 += 2;
        w1 += 2;
        w2 += 2;
        w3 += 2;
        xp += hw2;
        xq += hw2;
    }
    for (c = TT_CONV_PAIRS ? cin_g & 1 : cin_g; c > 0; --c) {
        TT_TAP4X4_(*w0++, *w1++, *w2++, *w3++, xp[0], xp[1], xp[2], xp[3]);
        xp += hw;
    }
    TT_ACC4X4_STORE_(y, hw, 1, 2, 3);
}

static TT_NOINLINE_ void pw_fwd_1x4(const float *xp, const float *w0, int cin_g, int hw,
                                    float init, float *y)
{
    float a0 = init, a1 = init, a2 = init, a3 = init;
    int c;
    for (c = cin_g; c > 0; --c) {
        const float f = *w0++;
        a0 = TT_FMAF(xp[0], f, a0);
        a1 = TT_FMAF(xp[1], f, a1);
        a2 = TT_FMAF(xp[2], f, a2);
        a3 = TT_FMAF(xp[3], f, a3);
        xp += hw;
    }
    y[0] = a0;
    y[1] = a1;
    y[2] = a2;
    y[3] = a3;
}

static void conv_fwd_pointwise(const tt_cg_ *G, const float *x, const float *w, const float *b,
                               float *y)
{
    const int hw = G->in_hw, cin_g = G->cin_g;
    int g, oc, pp, nb, o, c;
    float init[4];
    for (g = 0; g < G->groups; ++g) {
        const float *xg = x + (size_t)g * (size_t)cin_g * (size_t)hw;
        const int oc_end = (g + 1) * G->cout_g;
        for (oc = g * G->cout_g; oc < oc_end; oc += nb) {
            const float *wr = w + (size_t)oc * (size_t)cin_g;
            float *yr = y + (size_t)oc * (size_t)hw;
            nb = (oc_end - oc >= 4) ? 4 : 1;
            for (o = 0; o < nb; ++o) {
                init[o] = (b != NULL) ? b[oc + o] : 0.0f;
            }
            for (pp = 0; pp + 4 <= hw; pp += 4) {
                if (nb == 4) {
                    pw_fwd_4x4(xg + pp, wr, cin_g, hw, init, yr + pp);
                } else {
                    pw_fwd_1x4(xg + pp, wr, cin_g, hw, init[0], yr + pp);
                }
            }
            for (; pp < hw; ++pp) {
                for (o = 0; o < nb; ++o) {
                    const float *wo = wr + o * cin_g;
                    const float *xq = xg + pp;
                    float a = init[o];
                    for (c = 0; c < cin_g; ++c) {
                        a = TT_FMAF(*xq, wo[c], a);
                        xq += hw;
                    }
                    yr[o * hw + pp] = a;
                }
            }
        }
    }
}

tt_status tt_conv2d_fwd_f32(const tt_conv2d_params *p, const float *x, const float *w,
                            const float *b, float *TT_RESTRICT y)
{
    tt_cg_ G;
    const tt_status st = conv_setup(p, &G);
    if (st != TT_OK) {
        return st;
    }
    if (x == NULL || w == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    if (is_pointwise(&G)) {
        conv_fwd_pointwise(&G, x, w, b, y);
    } else if (is_dw3(&G) && G.sw <= 2) {
        conv_fwd_dw3(&G, x, w, b, y);
    } else {
        conv_fwd_general(&G, x, w, b, y);
    }
    return TT_OK;
}

/* ====================================================================== input gradient */

typedef struct {
    int kh0, nkh, oh0;
    int kw0, nkw, ow0;
} tt_gather_;

/* 4 input channels (weights khw apart, gx in_hw apart) x 4 input columns of one stride phase
 * (gx sw apart; they read 4 consecutive gy columns). Chains over (oc, kh, kw) ascending. */
static TT_NOINLINE_ void bwdx_4x4(const tt_cg_ *G, const float *gyg, const float *wg,
                                  const tt_gather_ *T, float *gx0, int accumulate)
{
    const int sw = G->sw, khw = G->khw, out_w = G->out_w, nkh = T->nkh, nkw = T->nkw;
    const int s2 = 2 * sw, s3 = 3 * sw, ihw = G->in_hw, wkh = G->sh * G->k_w;
    float a00 = 0.0f, a01 = 0.0f, a02 = 0.0f, a03 = 0.0f;
    float a10 = 0.0f, a11 = 0.0f, a12 = 0.0f, a13 = 0.0f;
    float a20 = 0.0f, a21 = 0.0f, a22 = 0.0f, a23 = 0.0f;
    float a30 = 0.0f, a31 = 0.0f, a32 = 0.0f, a33 = 0.0f;
    float *g;
    int oc, r, k;
    if (accumulate) {
        g = gx0;
        a00 = g[0];
        a01 = g[sw];
        a02 = g[s2];
        a03 = g[s3];
        g += ihw;
        a10 = g[0];
        a11 = g[sw];
        a12 = g[s2];
        a13 = g[s3];
        g += ihw;
        a20 = g[0];
        a21 = g[sw];
        a22 = g[s2];
        a23 = g[s3];
        g += ihw;
        a30 = g[0];
        a31 = g[sw];
        a32 = g[s2];
        a33 = g[s3];
    }
    for (oc = 0; oc < G->cout_g; ++oc) {
        const float *gyr = gyg + (size_t)oc * (size_t)G->out_hw + T->oh0 * out_w + T->ow0;
        const float *wk = wg + (size_t)oc * (size_t)G->wst + T->kh0 * G->k_w + T->kw0;
        for (r = nkh; r > 0; --r) {
            const float *gq = gyr;
            const float *w0 = wk, *w1 = wk + khw, *w2 = w1 + khw, *w3 = w2 + khw;
            for (k = nkw; k > 0; --k) {
                const float g0 = gq[0], g1 = gq[1], g2 = gq[2], g3 = gq[3];
                float f = *w0;
                a00 = TT_FMAF(g0, f, a00);
                a01 = TT_FMAF(g1, f, a01);
                a02 = TT_FMAF(g2, f, a02);
                a03 = TT_FMAF(g3, f, a03);
                f = *w1;
                a10 = TT_FMAF(g0, f, a10);
                a11 = TT_FMAF(g1, f, a11);
                a12 = TT_FMAF(g2, f, a12);
                a13 = TT_FMAF(g3, f, a13);
                f = *w2;
                a20 = TT_FMAF(g0, f, a20);
                a21 = TT_FMAF(g1, f, a21);
                a22 = TT_FMAF(g2, f, a22);
                a23 = TT_FMAF(g3, f, a23);
                f = *w3;
                a30 = TT_FMAF(g0, f, a30);
                a31 = TT_FMAF(g1, f, a31);
                a32 = TT_FMAF(g2, f, a32);
                a33 = TT_FMAF(g3, f, a33);
                --gq;
                w0 += sw;
                w1 += sw;
                w2 += sw;
                w3 += sw;
            }
            gyr -= out_w;
            wk += wkh;
        }
    }
    g = gx0;
    g[0] = a00;
    g[sw] = a01;
    g[s2] = a02;
    g[s3] = a03;
    g += ihw;
    g[0] = a10;
    g[sw] = a11;
    g[s2] = a12;
    g[s3] = a13;
    g += ihw;
    g[0] = a20;
    g[sw] = a21;
    g[s2] = a22;
    g[s3] = a23;
    g += ihw;
    g[0] = a30;
    g[sw] = a31;
    g[s2] = a32;
    g[s3] = a33;
}

static TT_NOINLINE_ void bwdx_1x4(const tt_cg_ *G, const float *gyg, const float *wg,
                                  const tt_gather_ *T, float *gx0, int accumulate)
{
    const int sw = G->sw, out_w = G->out_w, nkh = T->nkh, nkw = T->nkw;
    const int s2 = 2 * sw, s3 = 3 * sw, wkh = G->sh * G->k_w;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int oc, r, k;
    if (accumulate) {
        a0 = gx0[0];
        a1 = gx0[sw];
        a2 = gx0[s2];
        a3 = gx0[s3];
    }
    for (oc = 0; oc < G->cout_g; ++oc) {
        const float *gyr = gyg + (size_t)oc * (size_t)G->out_hw + T->oh0 * out_w + T->ow0;
        const float *wk = wg + (size_t)oc * (size_t)G->wst + T->kh0 * G->k_w + T->kw0;
        for (r = nkh; r > 0; --r) {
            const float *gq = gyr;
            const float *w0 = wk;
            for (k = nkw; k > 0; --k) {
                const float f = *w0;
                a0 = TT_FMAF(gq[0], f, a0);
                a1 = TT_FMAF(gq[1], f, a1);
                a2 = TT_FMAF(gq[2], f, a2);
                a3 = TT_FMAF(gq[3], f, a3);
                --gq;
                w0 += sw;
            }
            gyr -= out_w;
            wk += wkh;
        }
    }
    gx0[0] = a0;
    gx0[sw] = a1;
    gx0[s2] = a2;
    gx0[s3] = a3;
}

/* nic (1..4) input channels x 1 column: borders and tails. */
static TT_NOINLINE_ void bwdx_nx1(const tt_cg_ *G, const float *gyg, const float *wg,
                                  const tt_gather_ *T, float *gx0, int nic, int accumulate)
{
    const int sw = G->sw, out_w = G->out_w, khw = G->khw, wkh = G->sh * G->k_w;
    const int ihw = G->in_hw;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int oc, r, k;
    if (accumulate) {
        a0 = gx0[0];
        if (nic > 1) {
            a1 = gx0[ihw];
        }
        if (nic > 2) {
            a2 = gx0[2 * ihw];
        }
        if (nic > 3) {
            a3 = gx0[3 * ihw];
        }
    }
    for (oc = 0; oc < G->cout_g; ++oc) {
        const float *gyr = gyg + (size_t)oc * (size_t)G->out_hw + T->oh0 * out_w + T->ow0;
        const float *wk = wg + (size_t)oc * (size_t)G->wst + T->kh0 * G->k_w + T->kw0;
        for (r = T->nkh; r > 0; --r) {
            const float *gq = gyr;
            const float *w0 = wk;
            if (nic == 4) {
                for (k = T->nkw; k > 0; --k) {
                    const float g0 = *gq--;
                    a0 = TT_FMAF(g0, w0[0], a0);
                    a1 = TT_FMAF(g0, w0[khw], a1);
                    a2 = TT_FMAF(g0, w0[2 * khw], a2);
                    a3 = TT_FMAF(g0, w0[3 * khw], a3);
                    w0 += sw;
                }
            } else {
                for (k = T->nkw; k > 0; --k) {
                    const float g0 = *gq--;
                    a0 = TT_FMAF(g0, w0[0], a0);
                    if (nic > 1) {
                        a1 = TT_FMAF(g0, w0[khw], a1);
                    }
                    if (nic > 2) {
                        a2 = TT_FMAF(g0, w0[2 * khw], a2);
                    }
                    w0 += sw;
                }
            }
            gyr -= out_w;
            wk += wkh;
        }
    }
    gx0[0] = a0;
    if (nic > 1) {
        gx0[ihw] = a1;
    }
    if (nic > 2) {
        gx0[2 * ihw] = a2;
    }
    if (nic > 3) {
        gx0[3 * ihw] = a3;
    }
}

/* Kernel width 3, stride_w 1 (any stride_h), interior columns: lanes iw0 .. iw0+3 (or +7)
 * read gy columns ow0 + q - kw; the 6 (10) gy values of a kernel row are loaded once for the
 * 3 taps. */
static TT_NOINLINE_ void bwdx_4x4_k3s1(const tt_cg_ *G, const float *gyg, const float *wg,
                                       const tt_gather_ *T, float *gx0, int accumulate)
{
    const int khw = G->khw, out_w = G->out_w, nkh = T->nkh, ihw = G->in_hw, wkh = 3 * G->sh;
    int oc, r;
    TT_ACC4X4_(0.0f, 0.0f, 0.0f, 0.0f);
    if (accumulate) {
        TT_ACC4X4_LOAD_(gx0, ihw, 1, 2, 3);
    }
    for (oc = 0; oc < G->cout_g; ++oc) {
        const float *gq = gyg + (size_t)oc * (size_t)G->out_hw + T->oh0 * out_w + T->ow0 - 2;
        const float *w0 = wg + (size_t)oc * (size_t)G->wst + T->kh0 * 3;
        const float *w1 = w0 + khw, *w2 = w1 + khw, *w3 = w2 + khw;
        for (r = nkh; r > 0; --r) {
            const float g0 = gq[0], g1 = gq[1], g2 = gq[2], g3 = gq[3], g4 = gq[4], g5 = gq[5];
            TT_TAP4X4_(w0[0], w1[0], w2[0], w3[0], g2, g3, g4, g5);
            TT_TAP4X4_(w0[1], w1[1], w2[1], w3[1], g1, g2, g3, g4);
            TT_TAP4X4_(w0[2], w1[2], w2[2], w3[2], g0, g1, g2, g3);
            gq -= out_w; /* next kernel row reached: kh + stride_h, one output row up */
            w0 += wkh;
            w1 += wkh;
            w2 += wkh;
            w3 += wkh;
        }
    }
    TT_ACC4X4_STORE_(gx0, ihw, 1, 2, 3);
}

static TT_NOINLINE_ void bwdx_1x8_k3s1(const tt_cg_ *G, const float *gyg, const float *wg,
                                       const tt_gather_ *T, float *gx, int accumulate)
{
    const int out_w = G->out_w, nkh = T->nkh, wkh = 3 * G->sh;
    float b0 = 0.0f, b1 = 0.0f, b2 = 0.0f, b3 = 0.0f, b4 = 0.0f, b5 = 0.0f, b6 = 0.0f, b7 = 0.0f;
    int oc, r;
    if (accumulate) {
        b0 = gx[0];
        b1 = gx[1];
        b2 = gx[2];
        b3 = gx[3];
        b4 = gx[4];
        b5 = gx[5];
        b6 = gx[6];
        b7 = gx[7];
    }
    for (oc = 0; oc < G->cout_g; ++oc) {
        const float *gq = gyg + (size_t)oc * (size_t)G->out_hw + T->oh0 * out_w + T->ow0 - 2;
        const float *w0 = wg + (size_t)oc * (size_t)G->wst + T->kh0 * 3;
        for (r = nkh; r > 0; --r) {
            const float g0 = gq[0], g1 = gq[1], g2 = gq[2], g3 = gq[3], g4 = gq[4];
            const float g5 = gq[5], g6 = gq[6], g7 = gq[7], g8 = gq[8], g9 = gq[9];
            TT_TAP1X8_(w0[0], g2, g3, g4, g5, g6, g7, g8, g9);
            TT_TAP1X8_(w0[1], g1, g2, g3, g4, g5, g6, g7, g8);
            TT_TAP1X8_(w0[2], g0, g1, g2, g3, g4, g5, g6, g7);
            gq -= out_w;
            w0 += wkh;
        }
    }
    gx[0] = b0;
    gx[1] = b1;
    gx[2] = b2;
    gx[3] = b3;
    gx[4] = b4;
    gx[5] = b5;
    gx[6] = b6;
    gx[7] = b7;
}

static void conv_bwdx_general(const tt_cg_ *G, const float *gy, const float *w, float *gx,
                              int accumulate)
{
    /* input columns whose every kernel column (of their phase) maps to a valid output */
    const int iw_lo = imax(0, G->k_w - 1 - G->pl);
    const int iw_hi = imin(G->in_w - 1, (G->out_w - 1) * G->sw - G->pl); /* inclusive */
    const int s3 = 3 * G->sw;
    const int k3s1 = G->k_w == 3 && G->sw == 1;
    int g, ic, nb, ih, iw, ph;
    tt_gather_ T;
    for (g = 0; g < G->groups; ++g) {
        const float *gyg = gy + (size_t)g * (size_t)G->cout_g * (size_t)G->out_hw;
        const int ic_end = (g + 1) * G->cin_g;
        for (ic = g * G->cin_g; ic < ic_end; ic += nb) {
            const int icg = ic - g * G->cin_g;
            const float *wg = w + (size_t)g * (size_t)G->cout_g * (size_t)G->wst +
                              (size_t)icg * (size_t)G->khw;
            nb = imin(4, ic_end - ic);
            for (ih = 0; ih < G->in_h; ++ih) {
                float *gr = gx + (size_t)ic * (size_t)G->in_hw + (size_t)ih * (size_t)G->in_w;
                gather_taps(ih, G->pt, G->sh, G->k_h, G->out_h, &T.kh0, &T.nkh, &T.oh0);
                for (ph = 0; ph < G->sw && ph < G->in_w; ++ph) {
                    for (iw = ph; iw < G->in_w;) {
                        gather_taps(iw, G->pl, G->sw, G->k_w, G->out_w, &T.kw0, &T.nkw, &T.ow0);
                        if (iw >= iw_lo && iw + s3 <= iw_hi && (nb == 4 || nb == 1)) {
                            if (nb == 4) {
                                if (k3s1) {
                                    bwdx_4x4_k3s1(G, gyg, wg, &T, gr + iw, accumulate);
                                } else {
                                    bwdx_4x4(G, gyg, wg, &T, gr + iw, accumulate);
                                }
                            } else if (k3s1 && iw + 7 <= iw_hi) {
                                bwdx_1x8_k3s1(G, gyg, wg, &T, gr + iw, accumulate);
                                iw += 4;
                            } else {
                                bwdx_1x4(G, gyg, wg, &T, gr + iw, accumulate);
                            }
                            iw += 4 * G->sw;
                        } else {
                            bwdx_nx1(G, gyg, wg, &T, gr + iw, nb, accumulate);
                            iw += G->sw;
                        }
                    }
                }
            }
        }
    }
}

/* Pointwise: gx[ic][p] = sum_oc w[oc][ic] * gy[oc][p]; w[oc][ic..ic+3] is contiguous. */
static TT_NOINLINE_ void pw_bwdx_4x4(const float *gp, const float *wp, int cin_g, int cout_g,
                                     int hw, float *gx, int accumulate)
{
    const float *gq = gp + hw, *wq = wp + cin_g;
    const int hw2 = 2 * hw, cin2 = 2 * cin_g;
    int oc;
    TT_ACC4X4_(0.0f, 0.0f, 0.0f, 0.0f);
    if (accumulate) {
        TT_ACC4X4_LOAD_(gx, hw, 1, 2, 3);
    }
    /* two output channels per iteration on RV32 (see TT_CONV_PAIRS) */
    for (oc = TT_CONV_PAIRS ? cout_g >> 1 : 0; oc > 0; --oc) {
        TT_TAP4X4_(wp[0], wp[1], wp[2], wp[3], gp[0], gp[1], gp[2], gp[3]);
        TT_TAP4X4_(wq[0], wq[1], wq[2], wq[3], gq[0], gq[1], gq[2], gq[3]);
        gp += hw2;
        gq += hw2;
        wp += cin2;
        wq += cin2;
    }
    for (oc = TT_CONV_PAIRS ? cout_g & 1 : cout_g; oc > 0; --oc) {
        TT_TAP4X4_(wp[0], wp[1], wp[2], wp[3], gp[0], gp[1], gp[2], gp[3]);
        gp += hw;
        wp += cin_g;
    }
    TT_ACC4X4_STORE_(gx, hw, 1, 2, 3);
}

static TT_NOINLINE_ void pw_bwdx_1x4(const float *gp, const float *wp, int cin_g, int cout_g,
                                     int hw, float *gx, int accumulate)
{
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int oc;
    if (accumulate) {
        a0 = gx[0];
        a1 = gx[1];
        a2 = gx[2];
        a3 = gx[3];
    }
    for (oc = cout_g; oc > 0; --oc) {
        const float f = *wp;
        a0 = TT_FMAF(gp[0], f, a0);
        a1 = TT_FMAF(gp[1], f, a1);
        a2 = TT_FMAF(gp[2], f, a2);
        a3 = TT_FMAF(gp[3], f, a3);
        gp += hw;
        wp += cin_g;
    }
    gx[0] = a0;
    gx[1] = a1;
    gx[2] = a2;
    gx[3] = a3;
}

static void conv_bwdx_pointwise(const tt_cg_ *G, const float *gy, const float *w, float *gx,
                                int accumulate)
{
    const int hw = G->in_hw, cin_g = G->cin_g, cout_g = G->cout_g;
    int g, ic, pp, nb, i, oc;
    for (g = 0; g < G->groups; ++g) {
        const float *gyg = gy + (size_t)g * (size_t)cout_g * (size_t)hw;
        const float *wg = w + (size_t)g * (size_t)cout_g * (size_t)cin_g;
        const int ic_end = (g + 1) * cin_g;
        for (ic = g * cin_g; ic < ic_end; ic += nb) {
            const int icg = ic - g * cin_g;
            float *gr = gx + (size_t)ic * (size_t)hw;
            nb = (ic_end - ic >= 4) ? 4 : 1;
            for (pp = 0; pp + 4 <= hw; pp += 4) {
                if (nb == 4) {
                    pw_bwdx_4x4(gyg + pp, wg + icg, cin_g, cout_g, hw, gr + pp, accumulate);
                } else {
                    pw_bwdx_1x4(gyg + pp, wg + icg, cin_g, cout_g, hw, gr + pp, accumulate);
                }
            }
            for (; pp < hw; ++pp) {
                for (i = 0; i < nb; ++i) {
                    const float *gq = gyg + pp;
                    const float *wq = wg + icg + i;
                    float a = accumulate ? gr[i * hw + pp] : 0.0f;
                    for (oc = 0; oc < cout_g; ++oc) {
                        a = TT_FMAF(*gq, *wq, a);
                        gq += hw;
                        wq += cin_g;
                    }
                    gr[i * hw + pp] = a;
                }
            }
        }
    }
}

static int bad_flag(int f)
{
    return f != 0 && f != 1;
}

tt_status tt_conv2d_bwd_x_f32(const tt_conv2d_params *p, const float *gy, const float *w,
                              float *TT_RESTRICT gx, int accumulate)
{
    tt_cg_ G;
    const tt_status st = conv_setup(p, &G);
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || w == NULL || gx == NULL || bad_flag(accumulate)) {
        return TT_ERR_ARG;
    }
    if (is_pointwise(&G)) {
        conv_bwdx_pointwise(&G, gy, w, gx, accumulate);
    } else if (is_dw3(&G) && G.sh == 1 && G.sw == 1) {
        conv_bwdx_dw3s1(&G, gy, w, gx, accumulate);
    } else if (is_dw3(&G) && G.sh == 2 && G.sw == 2) {
        conv_bwdx_dw3s2(&G, gy, w, gx, accumulate);
    } else {
        conv_bwdx_general(&G, gy, w, gx, accumulate);
    }
    return TT_OK;
}

/* ====================================================================== weight gradient */

/* Weight-gradient blocks: NOC output channels (1 or 4) x KB neighbouring kernel columns
 * kw0 .. kw0+KB-1 (1..4) of kernel row kh and input channel ic. The NOC*KB chains each run
 * over (oh, ow) ascending; in the interior of an output row all KB taps are valid and the loop
 * is branch-free; at the borders each lane checks its input column. Generated by a macro so
 * that KB is a compile-time constant in each instance (the `if (KB > l)` tests fold away). */

#define TT_LANE_OK_(iw, l) ((unsigned)((iw) + (l)) < (unsigned)G->in_w)

/* Interior steps of the weight-gradient blocks. One output column: lanes l take x[l]. Two
 * neighbouring columns at stride 1: the first takes x[l], the second x[l + 1] (KB + 1 loads
 * for 2*KB*NOC fmaf), each chain still in ascending column order. */
#define TT_BWW_STEP4_(KB, G0, G1, G2, G3, x0, x1, x2, x3)                                     \
    do {                                                                                        \
        a00 = TT_FMAF(G0, x0, a00);                                                                \
        a10 = TT_FMAF(G1, x0, a10);                                                                \
        a20 = TT_FMAF(G2, x0, a20);                                                                \
        a30 = TT_FMAF(G3, x0, a30);                                                                \
        if (KB > 1) {                                                                           \
            a01 = TT_FMAF(G0, x1, a01);                                                            \
            a11 = TT_FMAF(G1, x1, a11);                                                            \
            a21 = TT_FMAF(G2, x1, a21);                                                            \
            a31 = TT_FMAF(G3, x1, a31);                                                            \
        }                                                                                       \
        if (KB > 2) {                                                                           \
            a02 = TT_FMAF(G0, x2, a02);                                                            \
            a12 = TT_FMAF(G1, x2, a12);                                                            \
            a22 = TT_FMAF(G2, x2, a22);                                                            \
            a32 = TT_FMAF(G3, x2, a32);                                                            \
        }                                                                                       \
        if (KB > 3) {                                                                           \
            a03 = TT_FMAF(G0, x3, a03);                                                            \
            a13 = TT_FMAF(G1, x3, a13);                                                            \
            a23 = TT_FMAF(G2, x3, a23);                                                            \
            a33 = TT_FMAF(G3, x3, a33);                                                            \
        }                                                                                       \
    } while (0)

#define TT_BWW_STEP1_(KB, G0, x0, x1, x2, x3)                                                   \
    do {                                                                                        \
        a0 = TT_FMAF(G0, x0, a0);                                                                  \
        if (KB > 1) {                                                                           \
            a1 = TT_FMAF(G0, x1, a1);                                                              \
        }                                                                                       \
        if (KB > 2) {                                                                           \
            a2 = TT_FMAF(G0, x2, a2);                                                              \
        }                                                                                       \
        if (KB > 3) {                                                                           \
            a3 = TT_FMAF(G0, x3, a3);                                                              \
        }                                                                                       \
    } while (0)

/* x[l] for lane l < KB (one column) or l <= KB (two columns), else 0 (never loaded) */
#define TT_XL_(KB, p, l) ((KB) > (l) ? (p)[l] : 0.0f)
#define TT_XL2_(KB, p, l) ((KB) >= (l) ? (p)[l] : 0.0f)

#define TT_DEF_BWW4_(NAME, KB)                                                                  \
    static TT_NOINLINE_ void NAME(const tt_cg_ *G, const float *gy0, const float *xc, int kh,   \
                                  int kw0, float *gw0, int accumulate)                          \
    {                                                                                           \
        const int sw = G->sw, ohw = G->out_hw, wst = G->wst;                                    \
        int oh_lo, oh_hi, ow_lo, ow_hi, oh, ow, t;                                              \
        float a00 = 0.0f, a01 = 0.0f, a02 = 0.0f, a03 = 0.0f;                                   \
        float a10 = 0.0f, a11 = 0.0f, a12 = 0.0f, a13 = 0.0f;                                   \
        float a20 = 0.0f, a21 = 0.0f, a22 = 0.0f, a23 = 0.0f;                                   \
        float a30 = 0.0f, a31 = 0.0f, a32 = 0.0f, a33 = 0.0f;                                   \
        if (accumulate) {                                                                       \
            a00 = gw0[0];                                                                       \
            a10 = gw0[wst];                                                                     \
            a20 = gw0[2 * wst];                                                                 \
            a30 = gw0[3 * wst];                                                                 \
            if (KB > 1) {                                                                       \
                a01 = gw0[1];                                                                   \
                a11 = gw0[wst + 1];                                                             \
                a21 = gw0[2 * wst + 1];                                                         \
                a31 = gw0[3 * wst + 1];                                                         \
            }                                                                                   \
            if (KB > 2) {                                                                       \
                a02 = gw0[2];                                                                   \
                a12 = gw0[wst + 2];                                                             \
                a22 = gw0[2 * wst + 2];                                                         \
                a32 = gw0[3 * wst + 2];                                                         \
            }                                                                                   \
            if (KB > 3) {                                                                       \
                a03 = gw0[3];                                                                   \
                a13 = gw0[wst + 3];                                                             \
                a23 = gw0[2 * wst + 3];                                                         \
                a33 = gw0[3 * wst + 3];                                                         \
            }                                                                                   \
        }                                                                                       \
        range_full(G->out_h, G->sh, G->pt, kh, 1, G->in_h, &oh_lo, &oh_hi);                     \
        range_full(G->out_w, sw, G->pl, kw0, KB, G->in_w, &ow_lo, &ow_hi);                      \
        for (oh = oh_lo; oh < oh_hi; ++oh) {                                                    \
            const float *xr = xc + (oh * G->sh - G->pt + kh) * G->in_w;                         \
            const float *g0 = gy0 + oh * G->out_w, *g1 = g0 + ohw, *g2 = g1 + ohw,              \
                        *g3 = g2 + ohw;                                                         \
            for (ow = 0; ow < G->out_w; ++ow) {                                                 \
                const int iw = ow * sw - G->pl + kw0;                                           \
                float G0, G1, G2, G3, v;                                                        \
                if (ow == ow_lo && ow_hi > ow_lo) {                                             \
                    const float *xp = xr + (ow_lo * sw - G->pl + kw0);                          \
                    const float *q0 = g0 + ow, *q1 = g1 + ow, *q2 = g2 + ow, *q3 = g3 + ow;     \
                    t = ow_hi - ow_lo;                                                          \
                    if (sw == 1 && TT_CONV_PAIRS) {                                             \
                        for (; t > 1; t -= 2) {                                                 \
                            const float x0 = xp[0], x1 = xp[1], x2 = TT_XL2_(KB, xp, 2);        \
                            const float x3 = TT_XL2_(KB, xp, 3), x4 = TT_XL2_(KB, xp, 4);       \
                            const float H0 = q0[1], H1 = q1[1], H2 = q2[1], H3 = q3[1];         \
                            G0 = q0[0], G1 = q1[0], G2 = q2[0], G3 = q3[0];                     \
                            TT_BWW_STEP4_(KB, G0, G1, G2, G3, x0, x1, x2, x3);                  \
                            TT_BWW_STEP4_(KB, H0, H1, H2, H3, x1, x2, x3, x4);                  \
                            q0 += 2;                                                            \
                            q1 += 2;                                                            \
                            q2 += 2;                                                            \
                            q3 += 2;                                                            \
                            xp += 2;                                                            \
                        }                                                                       \
                    }                                                                           \
                    for (; t > 0; --t) {                                                        \
                        const float x0 = xp[0], x1 = TT_XL_(KB, xp, 1);                         \
                        const float x2 = TT_XL_(KB, xp, 2), x3 = TT_XL_(KB, xp, 3);             \
                        G0 = *q0++;                                                             \
                        G1 = *q1++;                                                             \
                        G2 = *q2++;                                                             \
                        G3 = *q3++;                                                             \
                        TT_BWW_STEP4_(KB, G0, G1, G2, G3, x0, x1, x2, x3);                      \
                        xp += sw;                                                               \
                    }                                                                           \
                    ow = ow_hi - 1;                                                             \
                    continue;                                                                   \
                }                                                                               \
                G0 = g0[ow];                                                                    \
                G1 = g1[ow];                                                                    \
                G2 = g2[ow];                                                                    \
                G3 = g3[ow];                                                                    \
                if (TT_LANE_OK_(iw, 0)) {                                                       \
                    v = xr[iw];                                                                 \
                    a00 = TT_FMAF(G0, v, a00);                                                     \
                    a10 = TT_FMAF(G1, v, a10);                                                     \
                    a20 = TT_FMAF(G2, v, a20);                                                     \
                    a30 = TT_FMAF(G3, v, a30);                                                     \
                }                                                                               \
                if (KB > 1 && TT_LANE_OK_(iw, 1)) {                                             \
                    v = xr[iw + 1];                                                             \
                    a01 = TT_FMAF(G0, v, a01);                                                     \
                    a11 = TT_FMAF(G1, v, a11);                                                     \
                    a21 = TT_FMAF(G2, v, a21);                                                     \
                    a31 = TT_FMAF(G3, v, a31);                                                     \
                }                                                                               \
                if (KB > 2 && TT_LANE_OK_(iw, 2)) {                                             \
                    v = xr[iw + 2];                                                             \
                    a02 = TT_FMAF(G0, v, a02);                                                     \
                    a12 = TT_FMAF(G1, v, a12);                                                     \
                    a22 = TT_FMAF(G2, v, a22);                                                     \
                    a32 = TT_FMAF(G3, v, a32);                                                     \
                }                                                                               \
                if (KB > 3 && TT_LANE_OK_(iw, 3)) {                                             \
                    v = xr[iw + 3];                                                             \
                    a03 = TT_FMAF(G0, v, a03);                                                     \
                    a13 = TT_FMAF(G1, v, a13);                                                     \
                    a23 = TT_FMAF(G2, v, a23);                                                     \
                    a33 = TT_FMAF(G3, v, a33);                                                     \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        gw0[0] = a00;                                                                           \
        gw0[wst] = a10;                                                                         \
        gw0[2 * wst] = a20;                                                                     \
        gw0[3 * wst] = a30;                                                                     \
        if (KB > 1) {                                                                           \
            gw0[1] = a01;                                                                       \
            gw0[wst + 1] = a11;                                                                 \
            gw0[2 * wst + 1] = a21;                                                             \
            gw0[3 * wst + 1] = a31;                                                             \
        }                                                                                       \
        if (KB > 2) {                                                                           \
            gw0[2] = a02;                                                                       \
            gw0[wst + 2] = a12;                                                                 \
            gw0[2 * wst + 2] = a22;                                                             \
            gw0[3 * wst + 2] = a32;                                                             \
        }                                                                                       \
        if (KB > 3) {                                                                           \
            gw0[3] = a03;                                                                       \
            gw0[wst + 3] = a13;                                                                 \
            gw0[2 * wst + 3] = a23;                                                             \
            gw0[3 * wst + 3] = a33;                                                             \
        }                                                                                       \
    }

#define TT_DEF_BWW1_(NAME, KB)                                                                  \
    static TT_NOINLINE_ void NAME(const tt_cg_ *G, const float *gy0, const float *xc, int kh,   \
                                  int kw0, float *gw0, int accumulate)                          \
    {                                                                                           \
        const int sw = G->sw;                                                                   \
        int oh_lo, oh_hi, ow_lo, ow_hi, oh, ow, t;                                              \
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;                                       \
        if (accumulate) {                                                                       \
            a0 = gw0[0];                                                                        \
            if (KB > 1) {                                                                       \
                a1 = gw0[1];                                                                    \
            }                                                                                   \
            if (KB > 2) {                                                                       \
                a2 = gw0[2];                                                                    \
            }                                                                                   \
            if (KB > 3) {                                                                       \
                a3 = gw0[3];                                                                    \
            }                                                                                   \
        }                                                                                       \
        range_full(G->out_h, G->sh, G->pt, kh, 1, G->in_h, &oh_lo, &oh_hi);                     \
        range_full(G->out_w, sw, G->pl, kw0, KB, G->in_w, &ow_lo, &ow_hi);                      \
        for (oh = oh_lo; oh < oh_hi; ++oh) {                                                    \
            const float *xr = xc + (oh * G->sh - G->pt + kh) * G->in_w;                         \
            const float *g0 = gy0 + oh * G->out_w;                                              \
            for (ow = 0; ow < G->out_w; ++ow) {                                                 \
                const int iw = ow * sw - G->pl + kw0;                                           \
                float G0;                                                                       \
                if (ow == ow_lo && ow_hi > ow_lo) {                                             \
                    const float *xp = xr + (ow_lo * sw - G->pl + kw0);                          \
                    const float *q0 = g0 + ow;                                                  \
                    t = ow_hi - ow_lo;                                                          \
                    if (sw == 1 && TT_CONV_PAIRS) {                                             \
                        for (; t > 1; t -= 2) {                                                 \
                            const float x0 = xp[0], x1 = xp[1], x2 = TT_XL2_(KB, xp, 2);        \
                            const float x3 = TT_XL2_(KB, xp, 3), x4 = TT_XL2_(KB, xp, 4);       \
                            const float H0 = q0[1];                                             \
                            G0 = q0[0];                                                         \
                            TT_BWW_STEP1_(KB, G0, x0, x1, x2, x3);                              \
                            TT_BWW_STEP1_(KB, H0, x1, x2, x3, x4);                              \
                            q0 += 2;                                                            \
                            xp += 2;                                                            \
                        }                                                                       \
                    }                                                                           \
                    for (; t > 0; --t) {                                                        \
                        const float x0 = xp[0], x1 = TT_XL_(KB, xp, 1);                         \
                        const float x2 = TT_XL_(KB, xp, 2), x3 = TT_XL_(KB, xp, 3);             \
                        G0 = *q0++;                                                             \
                        TT_BWW_STEP1_(KB, G0, x0, x1, x2, x3);                                  \
                        xp += sw;                                                               \
                    }                                                                           \
                    ow = ow_hi - 1;                                                             \
                    continue;                                                                   \
                }                                                                               \
                G0 = g0[ow];                                                                    \
                if (TT_LANE_OK_(iw, 0)) {                                                       \
                    a0 = TT_FMAF(G0, xr[iw], a0);                                                  \
                }                                                                               \
                if (KB > 1 && TT_LANE_OK_(iw, 1)) {                                             \
                    a1 = TT_FMAF(G0, xr[iw + 1], a1);                                              \
                }                                                                               \
                if (KB > 2 && TT_LANE_OK_(iw, 2)) {                                             \
                    a2 = TT_FMAF(G0, xr[iw + 2], a2);                                              \
                }                                                                               \
                if (KB > 3 && TT_LANE_OK_(iw, 3)) {                                             \
                    a3 = TT_FMAF(G0, xr[iw + 3], a3);                                              \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        gw0[0] = a0;                                                                            \
        if (KB > 1) {                                                                           \
            gw0[1] = a1;                                                                        \
        }                                                                                       \
        if (KB > 2) {                                                                           \
            gw0[2] = a2;                                                                        \
        }                                                                                       \
        if (KB > 3) {                                                                           \
            gw0[3] = a3;                                                                        \
        }                                                                                       \
    }

TT_DEF_BWW4_(bww4_kb1, 1)
TT_DEF_BWW4_(bww4_kb2, 2)
TT_DEF_BWW4_(bww4_kb3, 3)
TT_DEF_BWW4_(bww4_kb4, 4)
TT_DEF_BWW1_(bww1_kb1, 1)
TT_DEF_BWW1_(bww1_kb2, 2)
TT_DEF_BWW1_(bww1_kb3, 3)
TT_DEF_BWW1_(bww1_kb4, 4)

static void bww_block(const tt_cg_ *G, int noc, int kb, const float *gy0, const float *xc, int kh,
                      int kw0, float *gw0, int accumulate)
{
    if (noc == 4) {
        switch (kb) {
        case 4:
            bww4_kb4(G, gy0, xc, kh, kw0, gw0, accumulate);
            break;
        case 3:
            bww4_kb3(G, gy0, xc, kh, kw0, gw0, accumulate);
            break;
        case 2:
            bww4_kb2(G, gy0, xc, kh, kw0, gw0, accumulate);
            break;
        default:
            bww4_kb1(G, gy0, xc, kh, kw0, gw0, accumulate);
            break;
        }
    } else {
        switch (kb) {
        case 4:
            bww1_kb4(G, gy0, xc, kh, kw0, gw0, accumulate);
            break;
        case 3:
            bww1_kb3(G, gy0, xc, kh, kw0, gw0, accumulate);
            break;
        case 2:
            bww1_kb2(G, gy0, xc, kh, kw0, gw0, accumulate);
            break;
        default:
            bww1_kb1(G, gy0, xc, kh, kw0, gw0, accumulate);
            break;
        }
    }
}

static void conv_bww_general(const tt_cg_ *G, const float *gy, const float *x, float *gw,
                             int accumulate)
{
    int g, oc, nb, icg, kh, kw0, kb;
    for (g = 0; g < G->groups; ++g) {
        const int oc_end = (g + 1) * G->cout_g;
        for (oc = g * G->cout_g; oc < oc_end; oc += nb) {
            const float *gy0 = gy + (size_t)oc * (size_t)G->out_hw;
            nb = (oc_end - oc >= 4) ? 4 : 1;
            for (icg = 0; icg < G->cin_g; ++icg) {
                const float *xc = x + (size_t)(g * G->cin_g + icg) * (size_t)G->in_hw;
                float *gwc = gw + (size_t)oc * (size_t)G->wst + (size_t)icg * (size_t)G->khw;
                for (kh = 0; kh < G->k_h; ++kh) {
                    for (kw0 = 0; kw0 < G->k_w; kw0 += kb) {
                        kb = imin(4, G->k_w - kw0);
                        bww_block(G, nb, kb, gy0, xc, kh, kw0, gwc + kh * G->k_w + kw0,
                                  accumulate);
                    }
                }
            }
        }
    }
}

/* Pointwise: gw[oc][ic] = sum_p gy[oc][p] * x[ic][p]; 4 x 4 dot products, p unrolled by 2. */
static TT_NOINLINE_ void pw_bww_4x4(const float *gp, const float *xp, int hw, float *gw, int cin_g,
                       int accumulate)
{
    const float *g0 = gp, *g1 = gp + hw, *g2 = g1 + hw, *g3 = g2 + hw;
    const float *x0 = xp, *x1 = xp + hw, *x2 = x1 + hw, *x3 = x2 + hw;
    float a00 = 0.0f, a01 = 0.0f, a02 = 0.0f, a03 = 0.0f;
    float a10 = 0.0f, a11 = 0.0f, a12 = 0.0f, a13 = 0.0f;
    float a20 = 0.0f, a21 = 0.0f, a22 = 0.0f, a23 = 0.0f;
    float a30 = 0.0f, a31 = 0.0f, a32 = 0.0f, a33 = 0.0f;
    float *w;
    int t;
    if (accumulate) {
        w = gw;
        a00 = w[0];
        a01 = w[1];
        a02 = w[2];
        a03 = w[3];
        w += cin_g;
        a10 = w[0];
        a11 = w[1];
        a12 = w[2];
        a13 = w[3];
        w += cin_g;
        a20 = w[0];
        a21 = w[1];
        a22 = w[2];
        a23 = w[3];
        w += cin_g;
        a30 = w[0];
        a31 = w[1];
        a32 = w[2];
        a33 = w[3];
    }
#define TT_PW_BWW_STEP_(j)                                                                      \
    do {                                                                                        \
        const float G0 = g0[j], G1 = g1[j], G2 = g2[j], G3 = g3[j];                             \
        const float X0 = x0[j], X1 = x1[j], X2 = x2[j], X3 = x3[j];                             \
        a00 = TT_FMAF(G0, X0, a00);                                                                \
        a01 = TT_FMAF(G0, X1, a01);                                                                \
        a02 = TT_FMAF(G0, X2, a02);                                                                \
        a03 = TT_FMAF(G0, X3, a03);                                                                \
        a10 = TT_FMAF(G1, X0, a10);                                                                \
        a11 = TT_FMAF(G1, X1, a11);                                                                \
        a12 = TT_FMAF(G1, X2, a12);                                                                \
        a13 = TT_FMAF(G1, X3, a13);                                                                \
        a20 = TT_FMAF(G2, X0, a20);                                                                \
        a21 = TT_FMAF(G2, X1, a21);                                                                \
        a22 = TT_FMAF(G2, X2, a22);                                                                \
        a23 = TT_FMAF(G2, X3, a23);                                                                \
        a30 = TT_FMAF(G3, X0, a30);                                                                \
        a31 = TT_FMAF(G3, X1, a31);                                                                \
        a32 = TT_FMAF(G3, X2, a32);                                                                \
        a33 = TT_FMAF(G3, X3, a33);                                                                \
    } while (0)
    for (t = hw >> 1; t > 0; --t) {
        TT_PW_BWW_STEP_(0);
        TT_PW_BWW_STEP_(1);
        g0 += 2;
        g1 += 2;
        g2 += 2;
        g3 += 2;
        x0 += 2;
        x1 += 2;
        x2 += 2;
        x3 += 2;
    }
    if (hw & 1) {
        TT_PW_BWW_STEP_(0);
    }
#undef TT_PW_BWW_STEP_
    w = gw;
    w[0] = a00;
    w[1] = a01;
    w[2] = a02;
    w[3] = a03;
    w += cin_g;
    w[0] = a10;
    w[1] = a11;
    w[2] = a12;
    w[3] = a13;
    w += cin_g;
    w[0] = a20;
    w[1] = a21;
    w[2] = a22;
    w[3] = a23;
    w += cin_g;
    w[0] = a30;
    w[1] = a31;
    w[2] = a32;
    w[3] = a33;
}

/* One chain gw[oc][icg] over p ascending (tails of the 4 x 4 blocking). */
static void pw_bww_1x1(const float *gp, const float *xp, int hw, float *gw, int accumulate)
{
    float a = accumulate ? *gw : 0.0f;
    int pp;
    for (pp = 0; pp < hw; ++pp) {
        a = TT_FMAF(gp[pp], xp[pp], a);
    }
    *gw = a;
}

static void conv_bww_pointwise(const tt_cg_ *G, const float *gy, const float *x, float *gw,
                               int accumulate)
{
    const int hw = G->in_hw, cin_g = G->cin_g, cout_g = G->cout_g;
    int g, oc, icg, nb, o;
    for (g = 0; g < G->groups; ++g) {
        const float *xg = x + (size_t)g * (size_t)cin_g * (size_t)hw;
        const int oc_end = (g + 1) * cout_g;
        for (oc = g * cout_g; oc < oc_end; oc += nb) {
            const float *gp = gy + (size_t)oc * (size_t)hw;
            float *gwr = gw + (size_t)oc * (size_t)cin_g;
            nb = (oc_end - oc >= 4) ? 4 : 1;
            icg = 0;
            if (nb == 4) {
                for (; icg + 4 <= cin_g; icg += 4) {
                    pw_bww_4x4(gp, xg + (size_t)icg * (size_t)hw, hw, gwr + icg, cin_g,
                               accumulate);
                }
            }
            for (; icg < cin_g; ++icg) {
                for (o = 0; o < nb; ++o) {
                    pw_bww_1x1(gp + (size_t)o * (size_t)hw, xg + (size_t)icg * (size_t)hw, hw,
                               gwr + (size_t)o * (size_t)cin_g + icg, accumulate);
                }
            }
        }
    }
}

tt_status tt_conv2d_bwd_w_f32(const tt_conv2d_params *p, const float *gy, const float *x,
                              float *TT_RESTRICT gw, int accumulate)
{
    tt_cg_ G;
    const tt_status st = conv_setup(p, &G);
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || x == NULL || gw == NULL || bad_flag(accumulate)) {
        return TT_ERR_ARG;
    }
    if (is_pointwise(&G)) {
        conv_bww_pointwise(&G, gy, x, gw, accumulate);
    } else {
        conv_bww_general(&G, gy, x, gw, accumulate);
    }
    return TT_OK;
}
