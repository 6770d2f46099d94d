/*
 * tt_eltwise_f32.c - broadcasting Add and Mul, forward and backward.
 *
 * The 4-D descriptor is first simplified: dimensions of extent 1 are dropped and neighbouring
 * dimensions that every stride array walks contiguously (stride[d] == stride[d+1]*ext[d+1],
 * which includes 0 == 0) are merged. A same-shape add becomes one loop over n, a per-channel
 * bias [C,1,1] + [C,H,W] becomes C rows of H*W with a scalar operand. Merging keeps row-major
 * order, so it does not change any summation order.
 *
 * Backward is a gather: for each element of the operand, sum over the output positions that
 * read it (the "reduced" dimensions: stride 0, extent > 1) in ascending row-major order, then
 * store once. No zeroing pass, and g may equal gy when nothing is reduced.
 */
#include "tt_kernels.h"

typedef struct {
    int nd;     /* number of dims left (0..4), outermost first */
    int ext[4];
    int sy[4];  /* contiguous output strides */
    int s1[4];  /* first operand (a, or the gradient's operand) */
    int s2[4];  /* second operand (b, or the other operand of a product) */
} tt_dims_;

/* TT_OK, or TT_ERR_SHAPE for non-positive extents / negative strides. */
static tt_status simplify(const int shape[4], const int s1[4], const int s2[4], tt_dims_ *d,
                          long *n_out)
{
    int i, nd = 0;
    long n = 1;
    int ext[4], a[4], b[4], y[4];
    for (i = 0; i < 4; ++i) {
        if (shape[i] <= 0 || s1[i] < 0 || s2[i] < 0) {
            return TT_ERR_SHAPE;
        }
    }
    for (i = 3; i >= 0; --i) { /* contiguous output strides */
        y[i] = (int)n;
        n *= shape[i];
    }
    for (i = 0; i < 4; ++i) { /* drop extent-1 dims */
        if (shape[i] > 1) {
            ext[nd] = shape[i];
            a[nd] = s1[i];
            b[nd] = s2[i];
            y[nd] = y[i];
            ++nd;
        }
    }
    d->nd = 0;
    for (i = 0; i < nd; ++i) { /* merge into the previous kept dim when contiguous */
        if (d->nd > 0) {
            const int k = d->nd - 1;
            if (d->sy[k] == y[i] * ext[i] && d->s1[k] == a[i] * ext[i] &&
                d->s2[k] == b[i] * ext[i]) {
                d->ext[k] *= ext[i];
                d->sy[k] = y[i];
                d->s1[k] = a[i];
                d->s2[k] = b[i];
                continue;
            }
        }
        d->ext[d->nd] = ext[i];
        d->sy[d->nd] = y[i];
        d->s1[d->nd] = a[i];
        d->s2[d->nd] = b[i];
        ++d->nd;
    }
    *n_out = n;
    return TT_OK;
}

/* Left-pad to exactly 4 dims (extent 1, stride 0) so loops can be written 4 deep. */
static void pad4(tt_dims_ *d)
{
    int i, sh = 4 - d->nd;
    if (sh == 0) {
        return;
    }
    for (i = 3; i >= 0; --i) {
        if (i >= sh) {
            d->ext[i] = d->ext[i - sh];
            d->sy[i] = d->sy[i - sh];
            d->s1[i] = d->s1[i - sh];
            d->s2[i] = d->s2[i - sh];
        } else {
            d->ext[i] = 1;
            d->sy[i] = 0;
            d->s1[i] = 0;
            d->s2[i] = 0;
        }
    }
    d->nd = 4;
}

enum { TT_OP_ADD_, TT_OP_MUL_ };

static tt_status binary_fwd(const tt_bcast4 *p, const float *a, const float *b, float *y, int op)
{
    tt_dims_ d;
    long n;
    int i0, i1, i2, i3;
    tt_status st;
    if (p == NULL || a == NULL || b == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    st = simplify(p->shape, p->a_stride, p->b_stride, &d, &n);
    if (st != TT_OK) {
        return st;
    }
    pad4(&d);
    {
        const int e3 = d.ext[3], as = d.s1[3], bs = d.s2[3];
        for (i0 = 0; i0 < d.ext[0]; ++i0) {
            for (i1 = 0; i1 < d.ext[1]; ++i1) {
                for (i2 = 0; i2 < d.ext[2]; ++i2) {
                    const float *pa = a + (i0 * d.s1[0] + i1 * d.s1[1] + i2 * d.s1[2]);
                    const float *pb = b + (i0 * d.s2[0] + i1 * d.s2[1] + i2 * d.s2[2]);
                    float *py = y + (i0 * d.sy[0] + i1 * d.sy[1] + i2 * d.sy[2]);
                    if (op == TT_OP_ADD_) {
                        if (as == 1 && bs == 1) {
                            for (i3 = 0; i3 < e3; ++i3) {
                                py[i3] = pa[i3] + pb[i3];
                            }
                        } else if (as == 1 && bs == 0) {
                            const float bv = *pb;
                            for (i3 = 0; i3 < e3; ++i3) {
                                py[i3] = pa[i3] + bv;
                            }
                        } else {
                            for (i3 = 0; i3 < e3; ++i3) {
                                py[i3] = *pa + *pb;
                                pa += as;
                                pb += bs;
                            }
                        }
                    } else {
                        if (as == 1 && bs == 1) {
                            for (i3 = 0; i3 < e3; ++i3) {
                                py[i3] = pa[i3] * pb[i3];
                            }
                        } else if (as == 1 && bs == 0) {
                            const float bv = *pb;
                            for (i3 = 0; i3 < e3; ++i3) {
                                py[i3] = pa[i3] * bv;
                            }
                        } else {
                            for (i3 = 0; i3 < e3; ++i3) {
                                py[i3] = *pa * *pb;
                                pa += as;
                                pb += bs;
                            }
                        }
                    }
                }
            }
        }
    }
    (void)n;
    return TT_OK;
}

tt_status tt_add_fwd_f32(const tt_bcast4 *p, const float *a, const float *b, float *y)
{
    return binary_fwd(p, a, b, y, TT_OP_ADD_);
}

tt_status tt_mul_fwd_f32(const tt_bcast4 *p, const float *a, const float *b, float *y)
{
    return binary_fwd(p, a, b, y, TT_OP_MUL_);
}

/* g[e] (+)= sum over reduced positions of gy (other == NULL) or TT_FMAF(gy, other, .). */
static tt_status binary_bwd(const tt_bcast4 *p, const float *gy, const float *other, float *g,
                            int which, int accumulate)
{
    tt_dims_ d, kd, rd;
    long n;
    int i, j0, j1, j2, j3, k0, k1, k2, k3;
    tt_status st;
    const int zeros[4] = {0, 0, 0, 0};
    if (p == NULL || gy == NULL || g == NULL || (which != 0 && which != 1) ||
        (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    st = simplify(p->shape, which == 0 ? p->a_stride : p->b_stride,
                  other == NULL ? zeros : (which == 0 ? p->b_stride : p->a_stride), &d, &n);
    if (st != TT_OK) {
        return st;
    }
    /* split into kept dims (the operand walks them) and reduced dims (stride 0) */
    kd.nd = 0;
    rd.nd = 0;
    for (i = 0; i < d.nd; ++i) {
        tt_dims_ *t = (d.s1[i] == 0) ? &rd : &kd;
        t->ext[t->nd] = d.ext[i];
        t->sy[t->nd] = d.sy[i];
        t->s1[t->nd] = d.s1[i];
        t->s2[t->nd] = d.s2[i];
        ++t->nd;
    }
    pad4(&kd);
    pad4(&rd);
    for (k0 = 0; k0 < kd.ext[0]; ++k0) {
        for (k1 = 0; k1 < kd.ext[1]; ++k1) {
            for (k2 = 0; k2 < kd.ext[2]; ++k2) {
                const int yk = k0 * kd.sy[0] + k1 * kd.sy[1] + k2 * kd.sy[2];
                const int gk = k0 * kd.s1[0] + k1 * kd.s1[1] + k2 * kd.s1[2];
                const int ok = k0 * kd.s2[0] + k1 * kd.s2[1] + k2 * kd.s2[2];
                if (rd.ext[3] == 1) {
                    /* nothing reduced: elementwise over the innermost kept dim */
                    const float *py = gy + yk;
                    float *pg = g + gk;
                    const int ys = kd.sy[3], gs = kd.s1[3];
                    if (other == NULL) {
                        for (k3 = 0; k3 < kd.ext[3]; ++k3) {
                            pg[k3 * gs] = accumulate ? pg[k3 * gs] + py[k3 * ys] : py[k3 * ys];
                        }
                    } else {
                        const float *po = other + ok;
                        const int os = kd.s2[3];
                        for (k3 = 0; k3 < kd.ext[3]; ++k3) {
                            const float t = py[k3 * ys];
                            const float o = po[k3 * os];
                            pg[k3 * gs] = accumulate ? TT_FMAF(t, o, pg[k3 * gs]) : t * o;
                        }
                    }
                    continue;
                }
                for (k3 = 0; k3 < kd.ext[3]; ++k3) {
                    const int yb = yk + k3 * kd.sy[3];
                    const int ob = ok + k3 * kd.s2[3];
                    float *pg = g + gk + k3 * kd.s1[3];
                    float acc = accumulate ? *pg : 0.0f;
                    for (j0 = 0; j0 < rd.ext[0]; ++j0) {
                        for (j1 = 0; j1 < rd.ext[1]; ++j1) {
                            for (j2 = 0; j2 < rd.ext[2]; ++j2) {
                                const float *py = gy + yb + j0 * rd.sy[0] + j1 * rd.sy[1] +
                                                  j2 * rd.sy[2];
                                const int ys = rd.sy[3];
                                if (other == NULL) {
                                    for (j3 = 0; j3 < rd.ext[3]; ++j3) {
                                        acc = acc + *py;
                                        py += ys;
                                    }
                                } else {
                                    const float *po = other + ob + j0 * rd.s2[0] +
                                                      j1 * rd.s2[1] + j2 * rd.s2[2];
                                    const int os = rd.s2[3];
                                    for (j3 = 0; j3 < rd.ext[3]; ++j3) {
                                        acc = TT_FMAF(*py, *po, acc);
                                        py += ys;
                                        po += os;
                                    }
                                }
                            }
                        }
                    }
                    *pg = acc;
                }
            }
        }
    }
    (void)n;
    return TT_OK;
}

tt_status tt_add_bwd_f32(const tt_bcast4 *p, const float *gy, float *ga, int which, int accumulate)
{
    return binary_bwd(p, gy, NULL, ga, which, accumulate);
}

tt_status tt_mul_bwd_f32(const tt_bcast4 *p, const float *gy, const float *other, float *g,
                         int which, int accumulate)
{
    if (other == NULL) {
        return TT_ERR_ARG;
    }
    return binary_bwd(p, gy, other, g, which, accumulate);
}

tt_status tt_scale_f32(const float *x, float *y, int n, float a)
{
    /* x*0 is 0 for every finite x and NaN otherwise: one accumulator finds any Inf/NaN. */
    float probe = 0.0f;
    int i;
    if (x == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    if (n < 0) {
        return TT_ERR_SHAPE;
    }
    for (i = 0; i < n; ++i) {
        const float v = a * x[i];
        y[i] = v;
        probe = probe + v * 0.0f;
    }
    return probe == 0.0f ? TT_OK : TT_ERR_NAN;
}
