/* Zeroth-order training kernels (see tt_zo.h). */
#include <stddef.h>

#include "tt_zo.h"

/* float(1 / sqrt(21845)): scales the integer Irwin-Hall draw to unit variance */
#define TT_ZO_GAUSS_SCALE 0.00676587503f

tt_status tt_zo_axpy_f32(float *y, int n, float a, tt_prng *st, int dist)
{
    int i = 0;
    if (y == NULL || st == NULL || n < 0) {
        return TT_ERR_ARG;
    }
    if (dist == TT_ZO_RADEMACHER) {
        const float pos = a, neg = -a;
        while (i < n) {
            uint32_t u = tt_prng_u32(st);
            const int end = (n - i < 32) ? n : i + 32;
            for (; i < end; ++i) {
                y[i] = y[i] + ((u & 1U) ? neg : pos);
                u >>= 1;
            }
        }
        return TT_OK;
    }
    if (dist == TT_ZO_GAUSS) {
        for (; i < n; ++i) {
            const uint32_t u = tt_prng_u32(st);
            const int s = (int)(u & 0xFFU) + (int)((u >> 8) & 0xFFU) + (int)((u >> 16) & 0xFFU) +
                          (int)(u >> 24);
            const float z = (float)(s - 510) * TT_ZO_GAUSS_SCALE;
            y[i] = y[i] + a * z;
        }
        return TT_OK;
    }
    return TT_ERR_ARG;
}

tt_status tt_axpy_f32(float *y, const float *x, int n, float a)
{
    int i;
    if (y == NULL || x == NULL || n < 0) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        y[i] = y[i] + a * x[i];
    }
    return TT_OK;
}
