/*
 * tt_zo_f16.c - zeroth-order (SPSA) training on half weights with fp32 master weights.
 * Specification in tt_fp16.h; numpy twins: tinytrain/numerics/fp16_kernels.py (zo_*).
 *
 * z is drawn exactly as tt_zo_axpy_f32 (tt_zo_f32.c) draws it, per call (per tensor):
 * rademacher value i from bit i % 32 of draw i / 32 (+1 for a 0 bit), gaussian one draw per
 * value, (b0 + b1 + b2 + b3 - 510) * TT_ZO_GAUSS_SCALE. The fp32 kernel adds +-a for a
 * rademacher z; a * (+-1.0f) is exactly +-a, so `a * z` below gives the same bits for both
 * distributions, and the masters follow the fp32 zo path operation for operation.
 */
#include <stddef.h>

#include "tt_fp16.h"

#define H2F(h) tt_f16_to_f32_inl(h)
#define F2H(f) tt_f32_to_f16_inl(f)

/* float(1 / sqrt(21845)): scales the integer Irwin-Hall draw to unit variance (tt_zo_f32.c) */
#define TT_ZO_GAUSS_SCALE 0.00676587503f

/* The z stream of one tensor: a fresh rademacher word every 32 values. */
typedef struct {
    tt_prng *st;
    uint32_t bits;
    int left;
    int dist;
} tt_zo_z;

static void z_begin(tt_zo_z *z, tt_prng *st, int dist)
{
    z->st = st;
    z->bits = 0U;
    z->left = 0;
    z->dist = dist;
}

static float z_next(tt_zo_z *z)
{
    if (z->dist == TT_ZO_RADEMACHER) {
        float v;
        if (z->left == 0) {
            z->bits = tt_prng_u32(z->st);
            z->left = 32;
        }
        v = (z->bits & 1U) ? -1.0f : 1.0f;
        z->bits >>= 1;
        z->left--;
        return v;
    } else {
        const uint32_t u = tt_prng_u32(z->st);
        const int s = (int)(u & 0xFFU) + (int)((u >> 8) & 0xFFU) + (int)((u >> 16) & 0xFFU) +
                      (int)(u >> 24);
        return (float)(s - 510) * TT_ZO_GAUSS_SCALE;
    }
}

static int bad_dist(int dist)
{
    return dist != TT_ZO_RADEMACHER && dist != TT_ZO_GAUSS;
}

tt_status tt_zo_perturb_f16(const float *master, uint16_t *TT_RESTRICT w, int n, tt_prng *st,
                            float a, int dist)
{
    tt_zo_z z;
    int i;
    if (n < 0 || st == NULL || bad_dist(dist) || (n > 0 && (master == NULL || w == NULL))) {
        return TT_ERR_ARG;
    }
    z_begin(&z, st, dist);
    for (i = 0; i < n; ++i) {
        const float t = a * z_next(&z);
        w[i] = F2H(master[i] + t); /* one rounding: the restore is half(master), exact */
    }
    return TT_OK;
}

tt_status tt_zo_update_f16(float *TT_RESTRICT master, uint16_t *TT_RESTRICT w, int n, tt_prng *st,
                           float a, int dist)
{
    tt_zo_z z;
    int i;
    if (n < 0 || st == NULL || bad_dist(dist) || (n > 0 && (master == NULL || w == NULL))) {
        return TT_ERR_ARG;
    }
    z_begin(&z, st, dist);
    for (i = 0; i < n; ++i) {
        const float t = a * z_next(&z);
        master[i] = master[i] + t;
        w[i] = F2H(master[i]);
    }
    return TT_OK;
}

tt_status tt_zo_mom_acc_f16_v32(float *v, int n, tt_prng *st, float mu, float a, int dist)
{
    tt_zo_z z;
    int i;
    if (n < 0 || st == NULL || bad_dist(dist) || (n > 0 && v == NULL)) {
        return TT_ERR_ARG;
    }
    z_begin(&z, st, dist);
    for (i = 0; i < n; ++i) {
        const float d = mu * v[i];
        const float t = a * z_next(&z);
        v[i] = d + t;
    }
    return TT_OK;
}

tt_status tt_zo_mom_acc_f16(uint16_t *v, int n, tt_prng *st, float mu, float a, int dist)
{
    tt_zo_z z;
    int i;
    if (n < 0 || st == NULL || bad_dist(dist) || (n > 0 && v == NULL)) {
        return TT_ERR_ARG;
    }
    z_begin(&z, st, dist);
    for (i = 0; i < n; ++i) {
        const float d = mu * H2F(v[i]);
        const float t = a * z_next(&z);
        v[i] = F2H(d + t);
    }
    return TT_OK;
}

tt_status tt_zo_mom_upd_f16_v32(float *TT_RESTRICT master, uint16_t *TT_RESTRICT w,
                                const float *v, int n, float a)
{
    int i;
    if (n < 0 || (n > 0 && (master == NULL || w == NULL || v == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const float t = a * v[i];
        master[i] = master[i] + t;
        w[i] = F2H(master[i]);
    }
    return TT_OK;
}

tt_status tt_zo_mom_upd_f16(float *TT_RESTRICT master, uint16_t *TT_RESTRICT w,
                            const uint16_t *v, int n, float a)
{
    int i;
    if (n < 0 || (n > 0 && (master == NULL || w == NULL || v == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const float t = a * H2F(v[i]);
        master[i] = master[i] + t;
        w[i] = F2H(master[i]);
    }
    return TT_OK;
}
