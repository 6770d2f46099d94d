/*
 * tt_eltwise_f16.c - FP16-storage broadcasting Add, forward and backward (tt_bcast4 shapes).
 * Backward is a gather: for each element of the operand, one float chain over the output
 * positions that read it (the broadcast dimensions), ascending row-major, stored once.
 */
#include <stddef.h>

#include "tt_fp16.h"

#define H2F(h) tt_f16_to_f32_inl(h)
#define F2H(f) tt_f32_to_f16_inl(f)

static tt_status bcast_check(const tt_bcast4 *p)
{
    int d;
    if (p == NULL) {
        return TT_ERR_ARG;
    }
    for (d = 0; d < 4; ++d) {
        if (p->shape[d] <= 0 || p->a_stride[d] < 0 || p->b_stride[d] < 0) {
            return TT_ERR_SHAPE;
        }
    }
    return TT_OK;
}

tt_status tt_add_fwd_f16(const tt_bcast4 *p, const uint16_t *a, const uint16_t *b, uint16_t *y)
{
    const tt_status st = bcast_check(p);
    int i0, i1, i2, i3;
    if (st != TT_OK) {
        return st;
    }
    if (a == NULL || b == NULL || y == NULL) {
        return TT_ERR_ARG;
    }
    for (i0 = 0; i0 < p->shape[0]; ++i0) {
        for (i1 = 0; i1 < p->shape[1]; ++i1) {
            for (i2 = 0; i2 < p->shape[2]; ++i2) {
                const size_t oa = (size_t)i0 * (size_t)p->a_stride[0] +
                                  (size_t)i1 * (size_t)p->a_stride[1] +
                                  (size_t)i2 * (size_t)p->a_stride[2];
                const size_t ob = (size_t)i0 * (size_t)p->b_stride[0] +
                                  (size_t)i1 * (size_t)p->b_stride[1] +
                                  (size_t)i2 * (size_t)p->b_stride[2];
                for (i3 = 0; i3 < p->shape[3]; ++i3) {
                    const float va = H2F(a[oa + (size_t)i3 * (size_t)p->a_stride[3]]);
                    const float vb = H2F(b[ob + (size_t)i3 * (size_t)p->b_stride[3]]);
                    *y++ = F2H(va + vb);
                }
            }
        }
    }
    return TT_OK;
}

tt_status tt_add_bwd_f16(const tt_bcast4 *p, const uint16_t *gy, uint16_t *g, int which,
                         int accumulate)
{
    const tt_status st = bcast_check(p);
    const int *s;
    int red[4], kext[4], rext[4], ys[4], d;
    int i0, i1, i2, i3, j0, j1, j2, j3;
    if (st != TT_OK) {
        return st;
    }
    if (gy == NULL || g == NULL || (which != 0 && which != 1) ||
        (accumulate != 0 && accumulate != 1)) {
        return TT_ERR_ARG;
    }
    s = which ? p->b_stride : p->a_stride;
    ys[3] = 1;
    for (d = 2; d >= 0; --d) {
        ys[d] = ys[d + 1] * p->shape[d + 1];
    }
    for (d = 0; d < 4; ++d) {
        red[d] = (s[d] == 0 && p->shape[d] > 1);
        kext[d] = red[d] ? 1 : p->shape[d];
        rext[d] = red[d] ? p->shape[d] : 1;
    }
    for (i0 = 0; i0 < kext[0]; ++i0) {
        for (i1 = 0; i1 < kext[1]; ++i1) {
            for (i2 = 0; i2 < kext[2]; ++i2) {
                for (i3 = 0; i3 < kext[3]; ++i3) {
                    const size_t off = (size_t)i0 * (size_t)s[0] + (size_t)i1 * (size_t)s[1] +
                                       (size_t)i2 * (size_t)s[2] + (size_t)i3 * (size_t)s[3];
                    float acc = accumulate ? H2F(g[off]) : 0.0f;
                    for (j0 = 0; j0 < rext[0]; ++j0) {
                        for (j1 = 0; j1 < rext[1]; ++j1) {
                            for (j2 = 0; j2 < rext[2]; ++j2) {
                                for (j3 = 0; j3 < rext[3]; ++j3) {
                                    acc = acc + H2F(gy[(size_t)(i0 + j0) * (size_t)ys[0] +
                                                       (size_t)(i1 + j1) * (size_t)ys[1] +
                                                       (size_t)(i2 + j2) * (size_t)ys[2] +
                                                       (size_t)(i3 + j3) * (size_t)ys[3]]);
                                }
                            }
                        }
                    }
                    g[off] = F2H(acc);
                }
            }
        }
    }
    return TT_OK;
}
